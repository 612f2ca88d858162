import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TOKEN_BYTES } from '../../src/core/constants.js';
import { TokenStore, tokenId } from '../../src/proxy/token-store.js';

describe('token store', () => {
  it('token store - mints 32 random bytes per leg and finds the session and the leg', () => {
    const store = new TokenStore();
    const t1 = store.mint('s1');
    const t2 = store.mint('s2');
    expect(t1.a).toHaveLength(TOKEN_BYTES);
    expect(t1.b).toHaveLength(TOKEN_BYTES);
    expect(t1.a.equals(t1.b)).toBe(false);
    expect(t1.a.equals(t2.a)).toBe(false);
    expect(store.lookup(t1.a)).toEqual({ status: 'OK', sessionId: 's1', leg: 'a' });
    expect(store.lookup(t1.b)).toEqual({ status: 'OK', sessionId: 's1', leg: 'b' });
    expect(store.lookup(t2.b)).toEqual({ status: 'OK', sessionId: 's2', leg: 'b' });
    expect(store.liveCount()).toBe(4);
  });

  it('token store - unknown, short and long tokens are UNKNOWN', () => {
    const store = new TokenStore();
    const t = store.mint('s1').b;
    expect(store.lookup(randomBytes(TOKEN_BYTES))).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(t.subarray(0, 31))).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(Buffer.concat([t, Buffer.from([0])]))).toEqual({ status: 'UNKNOWN' });
    const flipped = Buffer.from(t);
    flipped[31] = (flipped[31] ?? 0) ^ 1;
    expect(store.lookup(flipped)).toEqual({ status: 'UNKNOWN' });
  });

  it('token store - on release, the tokens of legs that dialed answer USED and the others UNKNOWN', () => {
    const store = new TokenStore();
    const t = store.mint('s1');
    store.release('s1', ['b']);
    expect(store.lookup(t.b)).toEqual({ status: 'USED' });
    expect(store.lookup(t.a)).toEqual({ status: 'UNKNOWN' });
    expect(store.liveCount()).toBe(0);
  });

  it('token store - the memory of spent tokens expires after its TTL', () => {
    let now = 1_000;
    const store = new TokenStore({ usedTtlMs: 100, now: () => now });
    const t = store.mint('s1');
    store.release('s1', ['a', 'b']);
    now += 99;
    expect(store.lookup(t.a)).toEqual({ status: 'USED' });
    now += 1;
    expect(store.lookup(t.a)).toEqual({ status: 'UNKNOWN' });
    expect(store.usedCount()).toBe(0);
  });

  it('token store - the memory of spent tokens is bounded in count', () => {
    const store = new TokenStore({ maxUsed: 2 });
    const tokens = ['s1', 's2', 's3'].map((id) => store.mint(id));
    for (const id of ['s1', 's2', 's3']) store.release(id, ['b']);
    expect(store.usedCount()).toBe(2);
    expect(store.lookup(tokens[0]!.b)).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(tokens[2]!.b)).toEqual({ status: 'USED' });
  });

  it('token store - release frees unused tokens on any ending', () => {
    const store = new TokenStore();
    const t = store.mint('s1');
    store.release('s1');
    expect(store.lookup(t.a)).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(t.b)).toEqual({ status: 'UNKNOWN' });
    expect(store.liveCount()).toBe(0);
    store.release('s1');
    store.release('never-minted');
  });

  it('token store - minting again for a session replaces its tokens', () => {
    const store = new TokenStore();
    const old = store.mint('s1');
    const fresh = store.mint('s1');
    expect(store.lookup(old.b)).toEqual({ status: 'UNKNOWN' });
    expect(store.lookup(fresh.b)).toEqual({ status: 'OK', sessionId: 's1', leg: 'b' });
    expect(store.liveCount()).toBe(2);
  });

  it('token store - the store keeps its own copy of the tokens', () => {
    const store = new TokenStore();
    const t = store.mint('s1').a;
    const copy = Buffer.from(t);
    t.fill(0);
    expect(store.lookup(copy)).toEqual({ status: 'OK', sessionId: 's1', leg: 'a' });
  });

  it('token store - tokenId is 8 hex chars and does not reveal the token', () => {
    const t = randomBytes(TOKEN_BYTES);
    const id = tokenId(t);
    expect(id).toMatch(/^[0-9a-f]{8}$/);
    expect(t.toString('hex')).not.toContain(id);
    expect(tokenId(Buffer.from(t))).toBe(id);
  });
});
