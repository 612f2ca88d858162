import { describe, expect, it } from 'vitest';
import { secureRandomBytes } from '../../src/core/random-pool.js';

describe('secureRandomBytes (src/core/random-pool.ts)', () => {
  it('random pool - hands out each byte once: 2,000 draws across several refills are all distinct and of the size asked', () => {
    const seen = new Set<string>();
    // 2,000 x 16 bytes is ~8 refills of the 4 KiB pool, with draws straddling each refill point.
    for (let i = 0; i < 2_000; i++) {
      const size = i % 3 === 0 ? 32 : 16;
      const b = secureRandomBytes(size);
      expect(b.length).toBe(size);
      seen.add(b.toString('hex'));
    }
    expect(seen.size).toBe(2_000);
  });

  it('random pool - a returned buffer is the caller\'s own: later draws and refills leave it as it was', () => {
    const a = secureRandomBytes(32);
    const copy = Buffer.from(a);
    // Enough draws to wipe and refill the pool: a view into it would change under the caller.
    for (let i = 0; i < 300; i++) secureRandomBytes(32);
    expect(a.equals(copy)).toBe(true);
    expect(a.equals(Buffer.alloc(32))).toBe(false);
  });

  it('random pool - a large request is served whole, not from the pool', () => {
    const big = secureRandomBytes(10_000);
    expect(big.length).toBe(10_000);
    // All-zero 10 KB from a CSPRNG cannot happen; a draw from a wiped pool would look like it.
    expect(big.equals(Buffer.alloc(10_000))).toBe(false);
  });
});
