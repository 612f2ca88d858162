import { describe, expect, it } from 'vitest';
import { StunRateLimiter } from '../../src/games/stun-limit.js';

// The limiter's arithmetic with an injected clock: per-address bursts and rates, the total cap
// whatever the number of addresses, and a bounded number of tracked addresses.

const limits = { perSecond: 10, burst: 5, totalPerSecond: 100, maxAddresses: 1_000 };

function setup(l = limits) {
  const clock = { t: 1_000_000 };
  return { clock, limiter: new StunRateLimiter(l, () => clock.t) };
}

const admitted = (limiter: StunRateLimiter, address: string, n: number) => Array.from({ length: n }, () => limiter.admit(address)).filter(Boolean).length;

describe('STUN rate limiter', () => {
  it('stun limit - one address gets its burst at once, then its rate', () => {
    const { clock, limiter } = setup();
    expect(admitted(limiter, '198.51.100.1', 50)).toBe(5);
    clock.t += 1_000;
    expect(admitted(limiter, '198.51.100.1', 50)).toBe(5);
    clock.t += 300;
    expect(admitted(limiter, '198.51.100.1', 50)).toBe(3);
  });

  it('stun limit - another address is not held back by a flooded one', () => {
    const { limiter } = setup();
    admitted(limiter, '198.51.100.1', 50);
    expect(limiter.admit('198.51.100.2')).toBe(true);
  });

  it('stun limit - the total cap holds however many addresses a flood spoofs', () => {
    const { clock, limiter } = setup();
    let n = 0;
    for (let i = 0; i < 5_000; i++) if (limiter.admit(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)) n++;
    expect(n).toBe(100);
    clock.t += 500;
    n = 0;
    for (let i = 0; i < 5_000; i++) if (limiter.admit(`10.1.${(i >> 8) & 255}.${i & 255}`)) n++;
    expect(n).toBe(50);
  });

  it('stun limit - tracks at most maxAddresses, forgetting the least recently seen', () => {
    const { limiter } = setup({ ...limits, maxAddresses: 10, totalPerSecond: 1e9 });
    for (let i = 0; i < 100; i++) limiter.admit(`192.0.2.${i}`);
    expect(limiter.tracked).toBe(10);
  });
});
