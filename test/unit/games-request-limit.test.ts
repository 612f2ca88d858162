import { describe, expect, it } from 'vitest';
import { MAX_SHARED_ADDRESSES, MAX_SHARING_INSTANCES, RequestLimiter, type SharedCounts } from '../../src/games/request-limit.js';

const W = 60_000;
const T0 = 10 * W + 1_000;

describe('request limiter (pure)', () => {
  it('request limit - admits max per address and window, then says how long until the window ends', () => {
    const l = new RequestLimiter({ max: 3, windowMs: W, maxAddresses: 100 }, T0);
    expect([1, 2, 3].map(() => l.admit('a', T0).type)).toEqual(['admitted', 'admitted', 'admitted']);
    expect(l.admit('a', T0 + 500)).toEqual({ type: 'limited', retryAfterMs: W - 1_500, resetAtMs: 11 * W });
    expect(l.admit('b', T0)).toMatchObject({ type: 'admitted', remaining: 2 });
    // The next window starts afresh.
    expect(l.admit('a', 11 * W)).toMatchObject({ type: 'admitted', remaining: 2 });
  });

  it('request limit - counts another instance shared for this window count here too; other windows and lengths do not', () => {
    const l = new RequestLimiter({ max: 10, windowMs: W, maxAddresses: 100 }, T0);
    l.merge('peer1', { windowMs: W, index: 10, counts: { a: 7 } }, T0);
    l.merge('peer2', { windowMs: W, index: 9, counts: { a: 50 } }, T0);
    l.merge('peer3', { windowMs: 2 * W, index: 5, counts: { a: 50 } }, T0);
    expect(l.admit('a', T0)).toMatchObject({ type: 'admitted', remaining: 2 });
    l.admit('a', T0);
    l.admit('a', T0);
    expect(l.admit('a', T0).type).toBe('limited');
    // A newer report of the same instance replaces its older one.
    l.merge('peer1', { windowMs: W, index: 10, counts: { a: 1 } }, T0);
    expect(l.admit('a', T0)).toMatchObject({ type: 'admitted', remaining: 5 });
  });

  it('request limit - reports only changes, only addresses at a sixteenth of max or more, the busiest first', () => {
    const l = new RequestLimiter({ max: 32, windowMs: W, maxAddresses: 5_000 }, T0);
    expect(l.report(T0)).toBeUndefined();
    l.admit('quiet', T0);
    expect(l.report(T0)).toBeUndefined();
    l.admit('busy', T0);
    l.admit('busy', T0);
    expect(l.report(T0)).toEqual({ windowMs: W, index: 10, counts: { busy: 2 } });
    expect(l.report(T0)).toBeUndefined();
    l.unsent();
    expect(l.report(T0)?.counts).toEqual({ busy: 2 });
    for (let i = 0; i < MAX_SHARED_ADDRESSES + 10; i++) for (let k = 0; k < (i < 10 ? 2 : 3); k++) l.admit(`x${i}`, T0);
    const r = l.report(T0) as SharedCounts;
    expect(Object.keys(r.counts)).toHaveLength(MAX_SHARED_ADDRESSES);
    expect(Math.min(...Object.values(r.counts))).toBeGreaterThanOrEqual(3);
  });

  it('request limit - memory stays bounded: past maxAddresses the least recently seen address is forgotten, and so are extra instances', () => {
    const l = new RequestLimiter({ max: 2, windowMs: W, maxAddresses: 3 }, T0);
    for (const a of ['a', 'b', 'c', 'd']) l.admit(a, T0);
    expect(l.tracked).toBe(3);
    l.admit('b', T0);
    expect(l.admit('b', T0).type).toBe('limited');
    for (let i = 0; i < MAX_SHARING_INSTANCES + 5; i++) l.merge(`peer${i}`, { windowMs: W, index: 10, counts: { z: 1 } }, T0);
    // Only the first MAX_SHARING_INSTANCES reports count: z is at 32, over max either way; e has none.
    expect(l.admit('e', T0).type).toBe('admitted');
  });
});
