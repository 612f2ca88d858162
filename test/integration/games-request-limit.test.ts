import { describe, expect, it } from 'vitest';
import { Kvm, type KV } from '@nats-io/kv';
import { limitsBucket } from '../../src/games/buckets.js';
import { gamesBed } from './games-process.js';

// The per-address request limit (`http.rateLimit`) on two real `games run` processes over one real
// nats-server: an address that spreads its requests over the instances is counted as one.

const bed = gamesBed('Q', 3);
const HOUR = 3_600_000;

/** Counts are per clock-aligned window: a test that crossed a window edge would start afresh. */
async function awayFromWindowEdge(windowMs: number): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left < 20_000) await new Promise((r) => setTimeout(r, left + 100));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the instances' count reports in the limits bucket add up to `admitted` requests of
 * `address` (keys in `planted` are not theirs). Each instance writes on a timer of its own, which a
 * loaded host runs late: a fixed pause after a request raced it, and the next request, on the
 * other instance, was judged without it.
 */
async function untilShared(kv: KV, address: string, admitted: number, planted: ReadonlySet<string> = new Set()): Promise<void> {
  const index = Math.floor(Date.now() / HOUR);
  let shared = 0;
  for (const deadline = Date.now() + 15_000; ; await sleep(10)) {
    shared = 0;
    for await (const key of await kv.keys(`h.${index}.*`)) {
      if (planted.has(key)) continue;
      const entry = await kv.get(key);
      if (entry?.operation === 'PUT') shared += (JSON.parse(entry.string()) as { counts: Record<string, number> }).counts[address] ?? 0;
    }
    if (shared >= admitted) return;
    if (Date.now() > deadline) throw new Error(`the instances shared ${shared} requests of ${address}, not ${admitted}`);
  }
}

describe('games request limit across two instances (real CLI, real nats-server)', () => {
  it('games request limit - an address alternating between two instances gets http.rateLimit.max in all, then 429; another address is served', async () => {
    const b = bed.bucket();
    const http = { rateLimit: { max: 12, windowMs: HOUR, syncMs: 20 } };
    const [one, two] = await Promise.all([0, 1].map(() => bed.start({ bucket: b, http })));
    await awayFromWindowEdge(HOUR);
    const nc = await bed.nats.connectAs('games-1');
    const statuses: number[] = [];
    try {
      const kv = await new Kvm(nc).open(limitsBucket(b));
      for (let i = 0; i < 20; i++) {
        statuses.push((await (i % 2 ? one! : two!).requestFrom('127.0.0.77', 'GET', '/games/nothing-here')).status);
        // Each request sees what the other instance counted before it: the count is in the store,
        // then longer than a sync period for the other's watch to take it.
        await untilShared(kv, '127.0.0.77', statuses.filter((s) => s !== 429).length);
        await sleep(80);
      }
    } finally {
      await nc.close();
    }
    // Counted per instance, 10 each would all have passed under a limit of 12.
    expect(statuses).toEqual([...Array<number>(12).fill(404), ...Array<number>(8).fill(429)]);
    const limited = await one!.requestFrom('127.0.0.77', 'GET', '/games');
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ type: '/problems/rate-limited', status: 429 });
    expect(limited.body!.detail).toContain('http.rateLimit');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(3600);
    expect(limited.headers['x-ratelimit-remaining']).toBe('0');
    // Another client is counted apart, on either instance.
    const other = await two!.requestFrom('127.0.0.78', 'GET', '/games');
    expect(other.status).toBe(200);
    expect(other.headers['x-ratelimit-limit']).toBe('12');
    expect(other.headers['x-ratelimit-remaining']).toBe('11');
  });

  it('games request limit - with sharing off (syncMs 0) each instance counts alone, as before', async () => {
    const b = bed.bucket();
    const http = { rateLimit: { max: 12, windowMs: HOUR, syncMs: 0 } };
    const [one, two] = await Promise.all([0, 1].map(() => bed.start({ bucket: b, http })));
    await awayFromWindowEdge(HOUR);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await (i % 2 ? one! : two!).requestFrom('127.0.0.79', 'GET', '/games/nothing-here')).status);
    expect(statuses.every((s) => s === 404)).toBe(true);
  });

  it('games request limit - malformed count reports in the limits bucket are ignored and logged; counting goes on', async () => {
    const b = bed.bucket();
    const http = { rateLimit: { max: 6, windowMs: HOUR, syncMs: 20 } };
    const [one, two] = await Promise.all([0, 1].map(() => bed.start({ bucket: b, http })));
    await awayFromWindowEdge(HOUR);
    // Written with the games principal's own credentials, as a broken or hostile instance would.
    const nc = await bed.nats.connectAs('games-1');
    const statuses: number[] = [];
    try {
      const kv = await new Kvm(nc).open(limitsBucket(b));
      const index = Math.floor(Date.now() / HOUR);
      const planted = new Set([`h.${index}.0123456789abcdef`, `h.${index}.fedcba9876543210`, `h.${index}.1111111111111111`]);
      await kv.put(`h.${index}.0123456789abcdef`, 'not json');
      await kv.put(`h.${index}.fedcba9876543210`, JSON.stringify({ windowMs: HOUR, index, counts: { '127.0.0.80': -5 } }));
      await kv.put(`h.${index}.1111111111111111`, JSON.stringify({ windowMs: HOUR, index, counts: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`10.0.${i >> 8}.${i & 255}`, 1])) }));
      await kv.put('h.nonsense', '{}');
      // Both instances have read the bad reports (each says so, once) before the counting starts:
      // their word for it, not a fixed pause.
      for (const p of [one!, two!]) await p.untilLogged('malformed count report', 15_000);
      for (let i = 0; i < 8; i++) {
        statuses.push((await (i % 2 ? one! : two!).requestFrom('127.0.0.80', 'GET', '/games')).status);
        await untilShared(kv, '127.0.0.80', statuses.filter((s) => s !== 429).length, planted);
        await sleep(80);
      }
    } finally {
      await nc.close();
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    expect(one!.log + two!.log).toMatch(/malformed count report/);
  });
});
