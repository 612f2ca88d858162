import { describe, expect, it } from 'vitest';
import { LOBBY_WITHDRAW_DELAY_MS } from '../../src/games/game-service.js';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { lobbyBucket } from '../../src/games/buckets.js';
import { pairingKey, pairingKeysOf } from '../../src/games/pairing-records.js';
import { gamesBed, type GamesProcess } from './games-process.js';

// Two real `games run` processes over one real nats-server: the limits and the lobby are shared
// through the store, so what one instance counted or listed, the other sees.

const HOST = ['203.0.113.1:4000'];

const bed = gamesBed('L', 8);

/** Two instances over one fresh bucket, as two `games run` behind a load balancer. */
async function pair(opts: Omit<Parameters<typeof GamesProcess.start>[0], 'natsUrl' | 'bucket'>) {
  const b = bed.bucket();
  return (await Promise.all([0, 1].map(() => bed.start({ bucket: b, ...opts })))) as [GamesProcess, GamesProcess];
}

/** Stops the instances and reads the write conflicts each logged on stopping (src/games/server.ts). */
async function stoppedConflicts(instances: GamesProcess[]): Promise<{ game: number; pairing: number; join: number }[]> {
  return Promise.all(
    instances.map(async (p) => {
      expect(await p.stop()).toBe(0);
      const line = p.log.split('\n').find((l) => l.includes('games write conflicts since start'));
      expect(line, 'the conflicts line').toBeDefined();
      return JSON.parse(line!).writeConflicts;
    }),
  );
}

describe('games limits and lobby across two instances (real CLI, real nats-server)', () => {
  it('games limits - 50 guests join one game at once on two instances while its host polls: no 503, no guest lost', async () => {
    const [a, b] = await pair({ limits: { maxGuests: 64 } });
    expect((await a.request('POST', '/games/register', { name: 'crowd', peerId: 'host' })).status).toBe(201);
    await a.request('POST', '/games/poll', { name: 'crowd', peerId: 'host', addresses: HOST });
    let polling = true;
    const pollStatuses: number[] = [];
    const host = (async () => {
      for (let i = 0; polling; i++) pollStatuses.push((await (i % 2 ? a : b).request('POST', '/games/poll', { name: 'crowd', peerId: 'host', addresses: HOST })).status);
    })();
    const starts = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? a : b).request('POST', '/games/start', { name: 'crowd', peerId: `guest-${i}`, addresses: [`198.51.100.${i + 1}:5000`] }),
      ),
    );
    polling = false;
    await host;
    expect(starts.map((s) => s.status)).toEqual(starts.map(() => 200));
    expect(starts.every((s) => s.body?.status === 1 && s.body.addresses[0] === HOST[0])).toBe(true);
    expect(pollStatuses.length).toBeGreaterThan(0);
    expect(pollStatuses.every((s) => s === 200)).toBe(true);
    // Each instance reads through its cache, fed by a watch of the store: a write made on the
    // other instance a moment ago reaches this one within milliseconds, as the next poll shows.
    const everyGuest = Array.from({ length: 50 }, (_, i) => `guest-${i}`).sort();
    let polled: string[] = [];
    for (let i = 0; i < 20 && polled.length < everyGuest.length; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      const last = await b.request('POST', '/games/poll', { name: 'crowd', peerId: 'host', addresses: HOST });
      polled = (last.body!.guests as { peerId: string }[]).map((g) => g.peerId).sort();
    }
    expect(polled).toEqual(everyGuest);
    // Each guest wrote only its own pairing key: no join lost a revision check on either
    // instance (a game that was one record made the 50 joins and the polls retry each other,
    // about 300 lost checks). What may still lose one is the host's poll through one instance
    // right after its poll through the other (the watch a moment behind): its own keys.
    const conflicts = await stoppedConflicts([a, b]);
    expect(conflicts.map((c) => c.join)).toEqual([0, 0]);
  });

  it('games limits - 50 guests racing for the last 10 places of one game on two instances: exactly 10 join, the rest are refused 409 and leave no key', async () => {
    const bucket = bed.bucket();
    const [a, b] = (await Promise.all([0, 1].map(() => bed.start({ bucket, limits: { maxGuests: 10 } })))) as [GamesProcess, GamesProcess];
    expect((await a.request('POST', '/games/register', { name: 'small', peerId: 'host' })).status).toBe(201);
    await a.request('POST', '/games/poll', { name: 'small', peerId: 'host', addresses: HOST });
    const starts = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 ? a : b).request('POST', '/games/start', { name: 'small', peerId: `guest-${i}`, addresses: [`198.51.100.${i + 1}:5000`] }),
      ),
    );
    const joined = starts.flatMap((s, i) => (s.status === 200 ? [`guest-${i}`] : [])).sort();
    const refused = starts.filter((s) => s.status === 409);
    // Every guest that saw room wrote its key; the join order (revisions) admits the first 10.
    expect(joined).toHaveLength(10);
    expect(refused).toHaveLength(40);
    expect(refused[0]!.body).toMatchObject({ status: 409 });
    let polled: string[] = [];
    for (let i = 0; i < 20 && polled.join() !== joined.join(); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 50));
      polled = ((await b.request('POST', '/games/poll', { name: 'small', peerId: 'host', addresses: HOST })).body!.guests as { peerId: string }[]).map((g) => g.peerId).sort();
    }
    expect(polled).toEqual(joined);
    // A refused guest removed its key again: only the 10 guests' pairing records are in the bucket.
    const nc = await bed.nats.admin('games');
    try {
      const kv = await new Kvm(nc).open(bucket);
      const keys: string[] = [];
      for await (const k of await kv.keys(pairingKeysOf('small'))) keys.push(k);
      expect(keys.sort()).toEqual(joined.map((g) => pairingKey('small', g)).sort());
    } finally {
      await nc.close();
    }
    // A joined guest starting again is still in; a refused one is still refused.
    expect((await a.request('POST', '/games/start', { name: 'small', peerId: joined[0]!, addresses: ['198.51.100.200:5000'] })).status).toBe(200);
    expect((await a.request('POST', '/games/start', { name: 'small', peerId: 'late', addresses: ['198.51.100.201:5000'] })).status).toBe(409);
  });

  it('games limits - a register flood from 40 addresses on two instances stops at the total cap; a game registered before still works', async () => {
    const bucket = bed.bucket();
    const limits = { maxGames: 30, registerLimit: { max: 1000, windowMs: 60_000 } };
    const [a, b] = (await Promise.all([0, 1].map(() => bed.start({ bucket, limits })))) as [GamesProcess, GamesProcess];
    expect((await a.request('POST', '/games/register', { name: 'legit', peerId: 'host' })).status).toBe(201);
    const flood = await Promise.all(
      Array.from({ length: 40 }, (_, src) =>
        Promise.all([0, 1].map((k) => (k ? a : b).requestFrom(`127.0.0.${src + 2}`, 'POST', '/games/register', { name: `flood-${src}-${k}`, peerId: `p${src}` }))),
      ),
    ).then((r) => r.flat());
    const created = flood.filter((r) => r.status === 201).length;
    const refused = flood.filter((r) => r.status === 503);
    expect(created + refused.length).toBe(80);
    // Registrations racing for the last places rank their own lobby entries: none goes past the
    // cap (a race may leave places free: each counted the others, and a client retries).
    expect(created).toBeLessThanOrEqual(29);
    expect(refused[0]!.body).toMatchObject({ type: '/problems/games-limit', status: 503 });
    expect(refused[0]!.body!.detail).toContain('games.maxGames');
    expect(refused[0]!.headers['retry-after']).toBe('30');
    // Refused registrations withdraw their lobby entries once every racer has ranked its own
    // (LOBBY_WITHDRAW_DELAY_MS); then, one at a time, registrations fill exactly the places left,
    // alternating instances, and are refused.
    // The lobby itself says when they are gone: the created games and 'legit' are all it holds (a
    // fixed LOBBY_WITHDRAW_DELAY_MS + 500 ms raced two loaded instances' timers and deletes).
    const nc = await bed.nats.admin('games');
    try {
      const jsm = await jetstreamManager(nc);
      const held = async () => (await jsm.streams.info(`KV_${lobbyBucket(bucket)}`)).state.messages;
      await expect.poll(held, { timeout: LOBBY_WITHDRAW_DELAY_MS + 15_000, interval: 100 }).toBe(created + 1);
    } finally {
      await nc.close();
    }
    let more = 0;
    for (;;) {
      const r = await (more % 2 ? a : b).requestFrom(`127.0.1.${more + 1}`, 'POST', '/games/register', { name: `late-${more}`, peerId: 'x' });
      if (r.status === 503) break;
      expect(r.status).toBe(201);
      more++;
    }
    expect(created + more).toBe(29);
    expect((await b.request('POST', '/games/poll', { name: 'legit', peerId: 'host', addresses: HOST })).status).toBe(200);
    expect((await a.request('POST', '/games/start', { name: 'legit', peerId: 'guest', addresses: ['198.51.100.1:5000'] })).body).toEqual({ status: 1, addresses: HOST });
  });

  it('games limits - one address registering on both instances is rate-limited across them, other addresses are not', async () => {
    const [a, b] = await pair({ limits: { registerLimit: { max: 4, windowMs: 60_000 } } });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await (i % 2 ? a : b).requestFrom('127.0.0.9', 'POST', '/games/register', { name: `r-${i}`, peerId: 'h' })).status);
    expect(statuses).toEqual([201, 201, 201, 201, 429, 429]);
    const limited = await a.requestFrom('127.0.0.9', 'POST', '/games/register', { name: 'r-x', peerId: 'h' });
    expect(limited.body).toMatchObject({ type: '/problems/register-rate-limited', status: 429 });
    expect(limited.body!.detail).toContain('games.registerLimit');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await b.requestFrom('127.0.0.10', 'POST', '/games/register', { name: 'other', peerId: 'h' })).status).toBe(201);
  });

  it('games limits - host-secret calls are counted across instances: per secret, and wrong secrets per address; the real host is never locked out', async () => {
    const [a, b] = await pair({ limits: { secretLimit: { max: 3, windowMs: 60_000 }, badSecretLimit: { max: 4, windowMs: 60_000 } } });
    const secret = (await a.request('POST', '/games/register', { name: 'guarded', peerId: 'h' })).body!.secret as string;
    const bearer = (s: string) => ({ authorization: `Bearer ${s}` });
    // An attacker guessing from one address, alternating instances: 403 until its budget is
    // spent, then 429 naming the setting, whichever instance it asks.
    const guesses: number[] = [];
    for (let i = 0; i < 6; i++) guesses.push((await (i % 2 ? a : b).requestFrom('127.0.0.66', 'DELETE', '/games/guarded', undefined, bearer(`guess-${i}`))).status);
    expect(guesses).toEqual([403, 403, 403, 403, 429, 429]);
    const slowed = await a.requestFrom('127.0.0.66', 'DELETE', '/games/guarded', undefined, bearer('guess-x'));
    expect(slowed.body).toMatchObject({ type: '/problems/bad-secret-rate-limited', status: 429 });
    expect(slowed.body!.detail).toContain('games.badSecretLimit');
    expect(Number(slowed.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // The host, from that same address, still gets in with the right secret; the game was never touched.
    expect((await b.requestFrom('127.0.0.66', 'PUT', '/games/guarded?newName=guarded-2', undefined, bearer(secret))).status).toBe(200);
    // Right-secret calls are counted per secret, across instances and addresses.
    expect((await a.requestFrom('127.0.0.67', 'PUT', '/games/guarded-2?newName=guarded-3', undefined, bearer(secret))).status).toBe(200);
    expect((await b.requestFrom('127.0.0.68', 'PUT', '/games/guarded-3?newName=guarded-4', undefined, bearer(secret))).status).toBe(200);
    const limited = await a.requestFrom('127.0.0.69', 'DELETE', '/games/guarded-4', undefined, bearer(secret));
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ type: '/problems/secret-rate-limited' });
    expect(limited.body!.detail).toContain('games.secretLimit');
    // Another game's host is not affected.
    const other = (await b.request('POST', '/games/register', { name: 'other', peerId: 'h2' })).body!.secret as string;
    expect((await a.request('DELETE', '/games/other', undefined, bearer(other))).status).toBe(204);
  });

  it('games limits - GET /games pages across instances while games come and go: each game that stays is seen once, in registration order', async () => {
    const [a, b] = await pair({});
    const names = Array.from({ length: 25 }, (_, i) => `lobby-${String(i).padStart(2, '0')}`);
    const secrets = new Map<string, string>();
    for (const name of names) secrets.set(name, (await a.request('POST', '/games/register', { name, peerId: `h-${name}` })).body!.secret);
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; ; page++) {
      const r = await (page % 2 ? a : b).request('GET', `/games?limit=4${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      expect(r.body!.games.length).toBeLessThanOrEqual(4);
      seen.push(...r.body!.games.map((g: { name: string }) => g.name));
      if (page === 1) {
        // Games leave (one already listed, one not yet) and arrive while a client pages.
        for (const gone of ['lobby-02', 'lobby-20']) {
          expect((await b.request('DELETE', `/games/${gone}`, undefined, { authorization: `Bearer ${secrets.get(gone)}` })).status).toBe(204);
        }
        await b.request('POST', '/games/register', { name: 'lobby-new', peerId: 'h-new' });
      }
      cursor = r.body!.next;
      if (!cursor) break;
    }
    expect(seen).toEqual([...names.filter((n) => n !== 'lobby-20'), 'lobby-new']);
  });

  it('games limits - lobby filters and bad queries', async () => {
    const [a] = await pair({ limits: { maxGuests: 1 } });
    for (const name of ['alpha-1', 'beta-1', 'alpha-2']) await a.request('POST', '/games/register', { name, peerId: `h-${name}` });
    await a.request('POST', '/games/start', { name: 'alpha-1', peerId: 'g', addresses: [] });
    const all = async (query: string) => {
      const out: string[] = [];
      let cursor: string | undefined;
      do {
        const r = await a.request('GET', `/games?${query}${cursor ? `&cursor=${cursor}` : ''}`);
        out.push(...r.body!.games.map((g: { name: string }) => g.name));
        cursor = r.body!.next;
      } while (cursor);
      return out;
    };
    expect(await all('prefix=alpha&limit=1')).toEqual(['alpha-1', 'alpha-2']);
    expect(await all('open=true&limit=1')).toEqual(['beta-1', 'alpha-2']);
    for (const query of ['limit=0', 'limit=101', 'cursor=zz', 'open=yes', 'size=3']) {
      const r = await a.request('GET', `/games?${query}`);
      expect(r.status, query).toBe(400);
      expect(r.body).toMatchObject({ type: '/problems/malformed-request' });
    }
  });
});
