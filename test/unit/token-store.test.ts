import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TOKEN_BYTES } from '../../src/core/constants.js';
import { TokenStore, tokenId } from '../../src/proxy/token-store.js';

describe('token store', () => {
  it('token store - mints 32 random bytes per session and finds the session', () => {
    const store = new TokenStore();
    const t1 = store.mint('s1');
    const t2 = store.mint('s2');
    expect(t1).toHaveLength(TOKEN_BYTES);
    expect(t1.equals(t2)).toBe(false);
    expect(store.lookup(t1)).toEqual({ status: 'OK', sessionId: 's1' });
    expect(store.lookup(t2)).toEqual({ status: 'OK', sessionId: 's2' });
  });

  it('token store - unknown, short and long tokens are UNKNOWN', () => {
    const store = new TokenStore();
    const t = store.mint('s1');
    expect(store.lookup(randomBytes(TOKEN_BYTES))).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(t.subarray(0, 31))).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(Buffer.concat([t, Buffer.from([0])]))).toEqual({ status: 'UNKNOWN' });
    const flipped = Buffer.from(t);
    flipped[31] = (flipped[31] ?? 0) ^ 1;
    expect(store.lookup(flipped)).toEqual({ status: 'UNKNOWN' });
  });

  it('token store - a consumed token answers USED, not OK or UNKNOWN', () => {
    const store = new TokenStore();
    const t = store.mint('s1');
    expect(store.consume(t)).toBe(true);
    expect(store.lookup(t)).toEqual({ status: 'USED' });
    expect(store.consume(t)).toBe(false);
    // Releasing the session afterwards keeps the memory of the reuse.
    store.release('s1');
    expect(store.lookup(t)).toEqual({ status: 'USED' });
  });

  it('token store - the memory of consumed tokens expires after its TTL', () => {
    let now = 1_000;
    const store = new TokenStore({ usedTtlMs: 100, now: () => now });
    const t = store.mint('s1');
    store.consume(t);
    now += 99;
    expect(store.lookup(t)).toEqual({ status: 'USED' });
    now += 1;
    expect(store.lookup(t)).toEqual({ status: 'UNKNOWN' });
    expect(store.usedCount()).toBe(0);
  });

  it('token store - the memory of consumed tokens is bounded in count', () => {
    const store = new TokenStore({ maxUsed: 2 });
    const tokens = ['a', 'b', 'c'].map((id) => store.mint(id));
    for (const t of tokens) store.consume(t);
    expect(store.usedCount()).toBe(2);
    expect(store.lookup(tokens[0] as Buffer)).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(tokens[2] as Buffer)).toEqual({ status: 'USED' });
  });

  it('token store - release frees an unused token on any ending', () => {
    const store = new TokenStore();
    const t = store.mint('s1');
    store.release('s1');
    expect(store.lookup(t)).toEqual({ status: 'UNKNOWN' });
    expect(store.liveCount()).toBe(0);
    store.release('s1');
    store.release('never-minted');
  });

  it('token store - minting again for a session replaces its token', () => {
    const store = new TokenStore();
    const old = store.mint('s1');
    const fresh = store.mint('s1');
    expect(store.lookup(old)).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(fresh)).toEqual({ status: 'OK', sessionId: 's1' });
    expect(store.liveCount()).toBe(1);
  });

  it('token store - the store keeps its own copy of the token', () => {
    const store = new TokenStore();
    const t = store.mint('s1');
    const copy = Buffer.from(t);
    t.fill(0);
    expect(store.lookup(copy)).toEqual({ status: 'OK', sessionId: 's1' });
  });

  it('token store - tokenId is 8 hex chars and does not reveal the token', () => {
    const t = randomBytes(TOKEN_BYTES);
    const id = tokenId(t);
    expect(id).toMatch(/^[0-9a-f]{8}$/);
    expect(t.toString('hex')).not.toContain(id);
    expect(tokenId(Buffer.from(t))).toBe(id);
  });
});
