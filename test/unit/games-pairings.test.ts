import { describe, expect, it } from 'vitest';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore } from '../../src/games/game-store.js';
import { MemoryLobby } from '../../src/games/lobby.js';
import { admitted, assembled, pairingKey, parsePairingKey, seatOf, type PairingRecord, type StoredPairing } from '../../src/games/pairing-records.js';

// The pairing layout's rules on the in-memory store (the same contract as the KV store): each
// guest writes only its own key, the cap admits guests in join order whatever instances they
// joined through, and pairing keys never outlive their game for long.

const TIMEOUT = 30_000;
const HOST = ['203.0.113.1:4000'];
const guestAddresses = (i: number) => [`198.51.100.${i + 1}:5000`];

const pairing = (peerId: string, game = 'game-1', seat?: number): PairingRecord =>
  ({ v: 1, game, pairing: { peerId }, ...(seat === undefined ? {} : { seat }), writtenAt: 0 }) as unknown as PairingRecord;

function setup(maxGuests = 4) {
  const clock = { t: 1_000_000 };
  const store = new MemoryGameStore();
  const lobby = new MemoryLobby();
  // Two instances over one store, as two `games run` over one bucket.
  const make = () => new GameService({ store, lobby, now: () => clock.t, hostPollTimeoutMs: TIMEOUT, maxGuests });
  return { clock, store, a: make(), b: make() };
}

describe('pairing records', () => {
  it('pairing records - keys carry any name and peer id and parse back', () => {
    for (const [name, peer] of [['chess', 'g1'], ['a.b c/ä', 'peer.with.dots'], ['x', '']] as const) {
      expect(pairingKey(name, peer)).toMatch(/^p\.[-_A-Za-z0-9]+\.[-_A-Za-z0-9]+$/);
      expect(parsePairingKey(pairingKey(name, peer))).toEqual({ name, peerId: peer });
    }
    expect(parsePairingKey('g.Y2hlc3M')).toBeUndefined();
    expect(parsePairingKey('p.a.b.c')).toBeUndefined();
  });

  it("pairing records - a game reads its own pairings in join order (a seat carried over, else the joining revision); an earlier game's are kept apart", () => {
    const stored = (record: PairingRecord, revision: number): StoredPairing => ({ record, revision });
    const game = { record: { v: 1, id: 'game-1', secretHash: '', state: 'registered', context: { hostAddresses: HOST, guests: [] } }, revision: 1 } as never;
    const ps = [stored(pairing('late'), 9), stored(pairing('first', 'game-1', 2), 12), stored(pairing('old', 'game-0'), 3), stored(pairing('second'), 5)];
    const g = assembled(game, ps);
    expect(g.pairings.map((p) => p.record.pairing.peerId)).toEqual(['first', 'second', 'late']);
    expect(g.pairings.map(seatOf)).toEqual([2, 5, 9]);
    expect(g.stale.map((p) => p.record.pairing.peerId)).toEqual(['old']);
    expect(g.record.context.guests.map((p) => p.peerId)).toEqual(['first', 'second', 'late']);
    expect(admitted(g.pairings, 2).map((p) => p.record.pairing.peerId)).toEqual(['first', 'second']);
  });
});

describe('games pairings', () => {
  it("games pairings - a guest's join and repeated starts write only its own key; the host's poll writes the game key and the pairings it hands over", async () => {
    const { store, a, clock } = setup();
    await a.register('chess', 'host');
    await a.poll('chess', 'host', HOST);
    const writes: string[] = [];
    const update = store.update.bind(store);
    store.update = (name, ...rest) => (writes.push(`game ${name}`), update(name, ...rest));
    const put = store.putPairing.bind(store);
    store.putPairing = (name, record, revision) => (writes.push(`pairing ${record.pairing.peerId}${revision === null ? ' (join)' : ''}`), put(name, record, revision));
    for (const g of ['g1', 'g2']) expect(await a.start('chess', g, guestAddresses(0))).toMatchObject({ type: 'started', status: 1 });
    clock.t += 500;
    expect(await a.start('chess', 'g1', guestAddresses(0))).toMatchObject({ type: 'started' });
    expect(writes).toEqual(['pairing g1 (join)', 'pairing g2 (join)']);
    expect((await a.poll('chess', 'host', HOST)).type).toBe('polled');
    expect(writes.slice(2).sort()).toEqual(['game chess', 'pairing g1', 'pairing g2']);
    expect(await a.get('chess')).toMatchObject({ game: { state: 'paired', guests: 2 } });
  });

  it('games pairings - 20 guests racing for 4 places through two instances: exactly 4 join, in join order, and the refused leave no key', async () => {
    const { store, a, b } = setup(4);
    await a.register('race', 'host');
    await a.poll('race', 'host', HOST);
    // Every start reads before any writes: each sees room, so only the check after joining can refuse.
    const get = store.get.bind(store);
    let gate!: () => void;
    const opened = new Promise<void>((r) => (gate = r));
    let waiting = 0;
    store.get = async (name: string, fresh?: boolean) => {
      const r = await get(name);
      if (!fresh && ++waiting <= 20) await opened;
      return r;
    };
    const starts = Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).start('race', `g${i}`, guestAddresses(i)));
    await new Promise((r) => setTimeout(r, 10));
    gate();
    const results = await Promise.all(starts);
    store.get = get;
    const joined = results.flatMap((r, i) => (r.type === 'started' ? [`g${i}`] : []));
    expect(joined).toHaveLength(4);
    expect(results.filter((r) => r.type === 'gameFull')).toHaveLength(16);
    const game = (await store.get('race'))!;
    expect(game.pairings.map((p) => p.record.pairing.peerId).sort()).toEqual([...joined].sort());
    expect(game.stale).toEqual([]);
    const polled = await b.poll('race', 'host', HOST);
    expect(polled.type === 'polled' && polled.guests.map((g) => g.peerId).sort()).toEqual([...joined].sort());
    // A joined guest starting again is still in; another is refused without writing.
    expect(await a.start('race', joined[0]!, guestAddresses(0))).toMatchObject({ type: 'started' });
    expect(await b.start('race', 'late', guestAddresses(99))).toEqual({ type: 'gameFull', maxGuests: 4 });
  });

  it("games pairings - a join over a key an earlier game of the name left takes it over; the earlier game's guest is not this game's", async () => {
    const { store, a } = setup();
    await a.register('again', 'host');
    const first = (await store.get('again'))!;
    // An earlier game's pairing left behind (its instance stopped before removing it).
    await store.putPairing('again', pairing('g1', 'earlier-game'), null);
    await store.putPairing('again', pairing('ghost', 'earlier-game'), null);
    expect((await a.get('again'))).toMatchObject({ game: { guests: 0 } });
    expect(await a.start('again', 'g1', guestAddresses(1))).toMatchObject({ type: 'started' });
    const after = (await store.get('again'))!;
    expect(after.pairings.map((p) => [p.record.pairing.peerId, p.record.game])).toEqual([['g1', first.record.id]]);
    expect(after.stale.map((p) => p.record.pairing.peerId)).toEqual(['ghost']);
  });

  it("games pairings - a deleted game's pairings go with it; one left behind (a join racing the end) is removed by the sweep once old", async () => {
    const { store, a, clock } = setup();
    const reg = await a.register('gone', 'host');
    await a.poll('gone', 'host', HOST);
    await a.start('gone', 'g1', guestAddresses(1));
    const id = (await store.get('gone'))!.record.id!;
    expect(await a.remove('gone', reg.type === 'registered' ? reg.secret : '')).toEqual({ type: 'removed' });
    const left = async () => {
      const keys: string[] = [];
      for await (const p of store.pairingsInWriteOrder()) keys.push(`${p.name}/${p.record.pairing.peerId}`);
      return keys;
    };
    expect(await left()).toEqual([]);
    // A guest that read the game just before it ended writes its key just after.
    await store.putPairing('gone', { ...pairing('late', id), writtenAt: clock.t }, null);
    await a.sweep();
    expect(await left()).toEqual(['gone/late']);
    clock.t += TIMEOUT + 1;
    await a.sweep();
    expect(await left()).toEqual([]);
  });

  it('games pairings - a silent guest is pruned by the sweep while its host polls; a guest that keeps starting is kept', async () => {
    const { store, a, clock } = setup();
    await a.register('busy', 'host');
    await a.poll('busy', 'host', HOST);
    await a.start('busy', 'quiet', guestAddresses(1));
    await a.start('busy', 'loud', guestAddresses(2));
    for (let t = 0; t < 2 * TIMEOUT; t += 500) {
      clock.t += 500;
      await a.poll('busy', 'host', HOST);
      await a.start('busy', 'loud', guestAddresses(2));
      await a.sweep();
    }
    expect((await store.get('busy'))!.pairings.map((p) => p.record.pairing.peerId)).toEqual(['loud']);
    const keys: string[] = [];
    for await (const p of store.pairingsInWriteOrder()) keys.push(p.record.pairing.peerId);
    expect(keys).toEqual(['loud']);
  });
});
