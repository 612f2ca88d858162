import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
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

describe('games request limit across two instances (real CLI, real nats-server)', () => {
  it('games request limit - an address alternating between two instances gets http.rateLimit.max in all, then 429; another address is served', async () => {
    const b = bed.bucket();
    const http = { rateLimit: { max: 12, windowMs: HOUR, syncMs: 20 } };
    const [one, two] = await Promise.all([0, 1].map(() => bed.start({ bucket: b, http })));
    await awayFromWindowEdge(HOUR);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      statuses.push((await (i % 2 ? one! : two!).requestFrom('127.0.0.77', 'GET', '/games/nothing-here')).status);
      // Longer than a sync period: each request sees what the other instance counted before it.
      await sleep(80);
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
    try {
      const kv = await new Kvm(nc).open(limitsBucket(b));
      const index = Math.floor(Date.now() / HOUR);
      await kv.put(`h.${index}.0123456789abcdef`, 'not json');
      await kv.put(`h.${index}.fedcba9876543210`, JSON.stringify({ windowMs: HOUR, index, counts: { '127.0.0.80': -5 } }));
      await kv.put(`h.${index}.1111111111111111`, JSON.stringify({ windowMs: HOUR, index, counts: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`10.0.${i >> 8}.${i & 255}`, 1])) }));
      await kv.put('h.nonsense', '{}');
    } finally {
      await nc.close();
    }
    await sleep(200);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push((await (i % 2 ? one! : two!).requestFrom('127.0.0.80', 'GET', '/games')).status);
      await sleep(80);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429, 429]);
    await sleep(100);
    expect(one!.log + two!.log).toMatch(/malformed count report/);
  });
});
