import { describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { gameKey, type GameRecord } from '../../src/games/game-store.js';
import { pairingKey, pairingKeysOf, type PairingRecord } from '../../src/games/pairing-records.js';
import { gamesBed, GamesProcess } from './games-process.js';

const HOST = ['203.0.113.1:4000'];
const GUEST = ['198.51.100.7:5000'];

const bed = gamesBed('T', 10);
const bucket = () => bed.bucket();
const games = (opts: Omit<Parameters<typeof GamesProcess.start>[0], 'natsUrl'>, folder?: string) => bed.start(opts, folder);

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 8_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('games run (real CLI, real nats-server)', () => {
  it('games cluster - a restarted games run loses no game, and the secret still works', async () => {
    const b = bucket();
    const first = await games({ bucket: b });
    const reg = await first.request('POST', '/games/register', { name: 'chess', peerId: 'host-1' });
    expect(reg.status).toBe(201);
    expect((await first.request('POST', '/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST })).body).toMatchObject({ status: 0 });
    expect(await first.stop()).toBe(0);

    const second = await games({ bucket: b, httpPort: first.httpPort }, first.roleFolder);
    expect((await second.request('GET', '/games/chess')).body).toMatchObject({ name: 'chess', state: 'hosting' });
    expect((await second.request('POST', '/games/start', { name: 'chess', peerId: 'g1', addresses: GUEST })).body).toEqual({ status: 1, addresses: HOST });
    const del = await second.request('DELETE', '/games/chess', undefined, { authorization: `Bearer ${reg.body!.secret}` });
    expect(del.status).toBe(204);
    expect((await second.request('GET', '/games')).body).toEqual({ games: [] });
  });

  it('games cluster - two instances serve the same games; a guest on one reaches the host polling the other', async () => {
    const b = bucket();
    const [a, z] = await Promise.all([games({ bucket: b }), games({ bucket: b })]);
    expect((await a.request('POST', '/games/register', { name: 'go', peerId: 'host-1' })).status).toBe(201);
    const taken = await z.request('POST', '/games/register', { name: 'go', peerId: 'host-2' });
    expect(taken.status).toBe(409);
    expect(taken.type).toContain('application/problem+json');
    await a.request('POST', '/games/poll', { name: 'go', peerId: 'host-1', addresses: HOST });
    expect((await z.request('POST', '/games/start', { name: 'go', peerId: 'guest-1', addresses: GUEST })).body).toEqual({ status: 1, addresses: HOST });
    // Each instance reads through its cache, which a watch of the store keeps current: the other
    // instance's write shows within milliseconds, so a host sees the guest on its next poll.
    const poll = await eventually(() => a.request('POST', '/games/poll', { name: 'go', peerId: 'host-1', addresses: HOST }), (r) => r.body?.status === 1);
    expect(poll.body).toEqual({ status: 1, addresses: GUEST, guests: [{ peerId: 'guest-1', addresses: GUEST }] });
    expect((await eventually(() => z.request('GET', '/games/go'), (r) => r.body?.state === 'paired')).body).toMatchObject({ state: 'paired', guests: 1 });
    expect((await z.request('GET', '/games')).body).toEqual((await a.request('GET', '/games')).body);

    // Concurrent guests through both instances: revision-checked writes lose none of them.
    const starts = Array.from({ length: 10 }, (_, i) =>
      (i % 2 ? a : z).request('POST', '/games/start', { name: 'go', peerId: `g-${i}`, addresses: [`198.51.100.${i + 10}:5000`] }),
    );
    expect((await Promise.all(starts)).map((r) => r.status)).toEqual(Array(10).fill(200));
    const after = await z.request('POST', '/games/poll', { name: 'go', peerId: 'host-1', addresses: HOST });
    expect(after.body!.guests).toHaveLength(11);

    // The records in the bucket: the game's (the host's part of the machine's context, the secret
    // only as a hash) and one pairing record per guest, each tied to the game by its id.
    const nc = await bed.nats.admin('games');
    try {
      const kv = await new Kvm(nc).open(b);
      const record = (await kv.get(gameKey('go')))!.json<GameRecord>();
      expect(record).toMatchObject({ v: 1, context: { name: 'go', hostPeerId: 'host-1', hostAddresses: HOST, guests: [] } });
      expect(record.secretHash).toMatch(/^[0-9a-f]{64}$/);
      const pairing = (await kv.get(pairingKey('go', 'guest-1')))!.json<PairingRecord>();
      expect(pairing).toMatchObject({ v: 1, game: record.id, pairing: { peerId: 'guest-1', addresses: GUEST, status: 'swapped' } });
      const keys: string[] = [];
      for await (const k of await kv.keys(pairingKeysOf('go'))) keys.push(k);
      expect(keys).toHaveLength(11);
    } finally {
      await nc.close();
    }
  });

  it('games cluster - a game whose host stops polling expires on every instance', async () => {
    const b = bucket();
    const opts = { bucket: b, hostPollTimeoutMs: 800, sweepIntervalMs: 150 };
    const [a, z] = await Promise.all([games(opts), games(opts)]);
    await a.request('POST', '/games/register', { name: 'quiet', peerId: 'h' });
    await a.request('POST', '/games/register', { name: 'busy', peerId: 'h' });
    // A guest joins each, then goes silent: its pairing record goes with the quiet game, and is pruned from the busy one.
    for (const name of ['quiet', 'busy']) expect((await a.request('POST', '/games/start', { name, peerId: `g-${name}`, addresses: GUEST })).status).toBe(200);
    const until = Date.now() + 1_500;
    // The busy host keeps polling through the other instance; the quiet one never does.
    while (Date.now() < until) {
      expect((await z.request('POST', '/games/poll', { name: 'busy', peerId: 'h', addresses: HOST })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const p of [a, z]) {
      const list = await eventually(() => p.request('GET', '/games'), (r) => r.body!.games.length === 1);
      expect(list.body!.games.map((g: { name: string }) => g.name)).toEqual(['busy']);
      expect((await p.request('GET', '/games/quiet')).status).toBe(404);
    }
    const nc = await bed.nats.admin('games');
    try {
      const kv = await new Kvm(nc).open(b);
      const left = async () => {
        const keys: string[] = [];
        for (const name of ['quiet', 'busy']) for await (const k of await kv.keys(pairingKeysOf(name))) keys.push(k);
        return keys;
      };
      expect(await eventually(left, (k) => k.length === 0)).toEqual([]);
    } finally {
      await nc.close();
    }
    expect((await z.request('POST', '/games/poll', { name: 'busy', peerId: 'h', addresses: HOST })).body).toMatchObject({ guests: [] });
    // The sweep removed the key itself (and its pairing keys), so the name is free.
    expect((await z.request('POST', '/games/register', { name: 'quiet', peerId: 'h2' })).status).toBe(201);
    expect(a.log + z.log).toContain('"outcome":"expired"');
  });
});
