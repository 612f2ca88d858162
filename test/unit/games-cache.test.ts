import { describe, expect, it } from 'vitest';
import { CachedGameStore, type GameWrites } from '../../src/games/game-cache.js';
import { gameKey, MemoryGameStore, type GameRecord } from '../../src/games/game-store.js';
import { pairingKey, type PairingRecord } from '../../src/games/pairing-records.js';

// The cache's rules, on the in-memory store and a hand-fed write feed (the KV watch in production):
// hits make no store read, the feed keeps held records current, a read racing a write cannot
// leave the older one held, and the size is bounded.

/** A game record told apart by `mark` (its host's last poll). */
const record = (name: string, mark = 0): GameRecord =>
  ({ v: 1, id: 'game-1', secretHash: '00', state: 'registered', context: { name, lastPollAt: mark, hostAddresses: [], guests: [] }, writtenAt: 0 }) as unknown as GameRecord;
const pairing = (peerId: string, lastSeenAt = 0): PairingRecord =>
  ({ v: 1, game: 'game-1', pairing: { peerId, lastSeenAt }, writtenAt: 0 }) as unknown as PairingRecord;

/** A write feed the test pushes into, as the KV watch would deliver. */
function feed() {
  const queue: { key: string; revision: number; operation: 'PUT' | 'DEL'; json<T>(): T }[] = [];
  let wake: (() => void) | undefined;
  let ended = false;
  const writes: GameWrites = {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        if (ended) return;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
  const push = (name: string, revision: number, value: GameRecord | null) => {
    queue.push({ key: gameKey(name), revision, operation: value ? 'PUT' : 'DEL', json: <T>() => value as T });
    wake?.();
  };
  const pushPairing = (name: string, peerId: string, revision: number, value: PairingRecord | null) => {
    queue.push({ key: pairingKey(name, peerId), revision, operation: value ? 'PUT' : 'DEL', json: <T>() => value as T });
    wake?.();
  };
  return { writes, push, pushPairing, end: () => ((ended = true), wake?.()) };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function setup(max = 100) {
  const store = new MemoryGameStore();
  let reads = 0;
  const get = store.get.bind(store);
  store.get = (name: string) => {
    reads++;
    return get(name);
  };
  const cache = new CachedGameStore(store, max);
  const f = feed();
  void cache.follow(f.writes);
  return { store, cache, feed: f, reads: () => reads };
}

/** A cache read of a stored game that waits in the store until released: the feed may deliver meanwhile. */
async function readInFlight(store: MemoryGameStore, cache: CachedGameStore) {
  await store.create('chess', record('chess'));
  const get = store.get.bind(store);
  let release!: () => void;
  store.get = async (name: string) => {
    const r = await get(name);
    await new Promise<void>((resolve) => (release = resolve));
    return r;
  };
  const reading = cache.get('chess');
  await tick();
  return { reading, release: () => release(), get };
}

describe('games cache', () => {
  it('games cache - a held record is answered without a store read; a fresh read goes to the store', async () => {
    const { cache, reads } = setup();
    await cache.create('chess', record('chess'));
    expect((await cache.get('chess'))?.record.context.name).toBe('chess');
    expect(reads()).toBe(0);
    await cache.get('chess', true);
    expect(reads()).toBe(1);
  });

  it('games cache - writes by other instances (the feed) replace a held record, and a deletion is answered as gone', async () => {
    const { store, cache, feed: f } = setup();
    const created = await store.create('chess', record('chess'));
    await cache.get('chess');
    const other = await store.update('chess', record('chess', 1), (created as { revision: number }).revision);
    f.push('chess', (other as { revision: number }).revision, record('chess', 1));
    await tick();
    expect((await cache.get('chess'))?.record.context.lastPollAt).toBe(1);
    f.push('chess', 99, null);
    await tick();
    expect(await cache.get('chess')).toBeNull();
  });

  it('games cache - an older feed write never replaces a newer held record', async () => {
    const { cache, feed: f } = setup();
    await cache.create('chess', record('chess', 2));
    const held = (await cache.get('chess'))!;
    f.push('chess', held.revision - 1, record('chess', 0));
    await tick();
    expect((await cache.get('chess'))?.record.context.lastPollAt).toBe(2);
  });

  it('games cache - a write the feed delivers while a read is in flight wins over the older read', async () => {
    const { store, cache, feed: f } = setup();
    const { reading, release, get } = await readInFlight(store, cache);
    f.push('chess', 50, record('chess', 3));
    await tick();
    release();
    expect((await reading)?.revision).toBe(50);
    store.get = get;
    expect((await cache.get('chess'))?.record.context.lastPollAt).toBe(3);
  });

  it('games cache - a lost revision check drops the held record, so the next read asks the store', async () => {
    const { store, cache, reads } = setup();
    await cache.create('chess', record('chess'));
    const held = (await cache.get('chess'))!;
    await store.update('chess', record('chess', 1), held.revision);
    expect((await cache.update('chess', record('chess', 2), held.revision)).type).toBe('conflict');
    const before = reads();
    expect((await cache.get('chess'))?.record.context.lastPollAt).toBe(1);
    expect(reads()).toBe(before + 1);
  });

  it('games cache - holds at most its size, dropping the least recently used', async () => {
    const { cache, reads } = setup(3);
    for (const n of ['a', 'b', 'c']) await cache.create(n, record(n));
    await cache.get('a');
    await cache.create('d', record('d'));
    expect(cache.size).toBe(3);
    const before = reads();
    await cache.get('a');
    expect(reads()).toBe(before);
    await cache.get('b');
    expect(reads()).toBe(before + 1);
  });

  it('games cache - once the feed ends, every read goes to the store', async () => {
    const { cache, feed: f, reads } = setup();
    await cache.create('chess', record('chess'));
    f.end();
    await tick();
    await cache.get('chess');
    await cache.get('chess');
    expect(reads()).toBe(2);
  });

  it("games cache - pairing writes by other instances (the feed) join, update and leave a held game's guests, in join order", async () => {
    const { store, cache, feed: f, reads } = setup();
    await store.create('chess', record('chess'));
    await store.putPairing('chess', pairing('g1'), null);
    expect((await cache.get('chess'))?.record.context.guests.map((g) => g.peerId)).toEqual(['g1']);
    const before = reads();
    f.pushPairing('chess', 'g2', 40, pairing('g2'));
    f.pushPairing('chess', 'g0', 41, pairing('g0'));
    f.pushPairing('chess', 'g2', 42, { ...pairing('g2', 7), seat: 40 });
    await tick();
    const held = (await cache.get('chess'))!;
    expect(held.record.context.guests.map((g) => [g.peerId, g.lastSeenAt])).toEqual([['g1', 0], ['g2', 7], ['g0', 0]]);
    f.pushPairing('chess', 'g2', 43, null);
    // A pairing of an earlier game under the name is no guest of this one.
    f.pushPairing('chess', 'g9', 44, { ...pairing('g9'), game: 'game-0' });
    await tick();
    const after = (await cache.get('chess'))!;
    expect(after.record.context.guests.map((g) => g.peerId)).toEqual(['g1', 'g0']);
    expect(after.stale.map((p) => p.record.pairing.peerId)).toEqual(['g9']);
    expect(reads()).toBe(before);
  });

  it('games cache - a pairing write the feed delivers while a read is in flight is kept', async () => {
    const { store, cache, feed: f } = setup();
    const { reading, release, get } = await readInFlight(store, cache);
    f.pushPairing('chess', 'g1', 50, pairing('g1'));
    await tick();
    release();
    expect((await reading)?.record.context.guests.map((g) => g.peerId)).toEqual(['g1']);
  });

  it('games cache - a lost pairing write drops the held game, so the next read asks the store', async () => {
    const { store, cache, reads } = setup();
    await cache.create('chess', record('chess'));
    await store.putPairing('chess', pairing('g1'), null);
    expect((await cache.putPairing('chess', pairing('g1'), null)).type).toBe('conflict');
    const before = reads();
    expect((await cache.get('chess'))?.record.context.guests.map((g) => g.peerId)).toEqual(['g1']);
    expect(reads()).toBe(before + 1);
  });
});
