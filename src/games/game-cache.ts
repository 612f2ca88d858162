import type { KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '../core/logger.js';
import type { RelayHold } from '../../machines/game-session.js';
import { nameOfKey, type GameRecord, type GameStore, type HoldKey, type StoredGame } from './game-store.js';
import { assembled, gamePart, parsePairingKey, type PairingRecord } from './pairing-records.js';

// A poll that changes nothing in the store (the common one: see onlyLivenessRefreshed) still
// had to read the game's keys over the bus, and that round trip was most of its cost. So each
// instance keeps the games it served lately (the game key and its pairing keys), bounded, and a KV watch
// on the game and pairing keys brings
// every write made by any instance into the ones it holds. A read is then as fresh as the watch
// (milliseconds behind another instance's write); every write is still revision-checked against
// the store, and a write that lost (a stale read) reads again from the store itself, so the
// cache can make an answer a moment late but never loses or overwrites anything.

/** The watch's feed: each write or deletion of any game or pairing key, in stream order. */
export type GameWrites = AsyncIterable<Pick<KvWatchEntry, 'key' | 'revision' | 'operation'> & { json<T>(): T }>;

/** One key as last seen: `value` null when it was deleted (or does not exist) as of `revision`. */
interface Seen<T> {
  value: T | null;
  revision: number;
}

/** A game held: its key and every pairing key of its name seen since it was read. */
interface Entry {
  game: Seen<GameRecord>;
  pairings: Map<string, Seen<PairingRecord>>;
}

const emptyEntry = (): Entry => ({ game: { value: null, revision: 0 }, pairings: new Map() });

export class CachedGameStore implements GameStore {
  /** Insertion order is use order (a hit moves the entry to the end): the first key is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  /** Reads in flight for names not held: writes the watch sees meanwhile are kept here, so an older read cannot win. */
  private readonly reading = new Map<string, { readers: number; latest: Entry }>();
  private live = true;

  constructor(
    private readonly store: GameStore,
    private readonly maxGames: number,
    private readonly log?: Logger,
  ) {}

  /** Feeds the watch into the cache until it ends; when it ends or fails, the cache stops answering. */
  follow(writes: GameWrites): Promise<void> {
    return (async () => {
      try {
        for await (const w of writes) {
          if (w.key.startsWith('g.')) {
            const seen = { value: w.operation === 'PUT' ? parsed<GameRecord>(w) : null, revision: w.revision };
            this.seen(nameOfKey(w.key), (e) => void (e.game = newer(e.game, seen)));
            continue;
          }
          const key = parsePairingKey(w.key);
          if (!key) continue;
          const record = w.operation === 'PUT' ? parsed<PairingRecord>(w) : null;
          const seen = { value: record?.pairing?.peerId === key.peerId ? record : null, revision: w.revision };
          this.seen(key.name, (e) => void e.pairings.set(key.peerId, newer(e.pairings.get(key.peerId), seen)));
        }
      } catch (err) {
        this.log?.warn({ err }, 'game cache: the watch failed; reads go to the store');
      } finally {
        this.stop();
      }
    })();
  }

  /** Applies a write to the entry held for `name` and to any read of it in flight. */
  private seen(name: string, apply: (e: Entry) => void): void {
    const read = this.reading.get(name);
    if (read) apply(read.latest);
    const held = this.entries.get(name);
    if (held) apply(held);
  }

  /** Forgets everything and reads from the store from now on (the watch ended or the bus dropped). */
  stop(): void {
    this.live = false;
    this.entries.clear();
  }

  /** Forgets everything held (after a bus outage: the watch may have missed writes meanwhile). */
  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  async get(name: string, fresh = false): Promise<StoredGame | null> {
    if (!this.live) return this.store.get(name, true);
    const held = fresh ? undefined : this.entries.get(name);
    if (held) {
      this.entries.delete(name);
      this.entries.set(name, held);
      return answer(held);
    }
    const reading = this.reading.get(name) ?? { readers: 0, latest: emptyEntry() };
    reading.readers++;
    this.reading.set(name, reading);
    try {
      const read = await this.store.get(name, true);
      // A write the watch delivered while the read was in flight is at least as new as the read.
      const entry = emptyEntry();
      if (read) {
        entry.game = { value: gamePart(read.record), revision: read.revision };
        for (const p of [...read.pairings, ...read.stale]) entry.pairings.set(p.record.pairing.peerId, { value: p.record, revision: p.revision });
      }
      entry.game = newer(entry.game, reading.latest.game);
      for (const [peer, seen] of reading.latest.pairings) entry.pairings.set(peer, newer(entry.pairings.get(peer), seen));
      this.hold(name, entry);
      return answer(entry);
    } finally {
      if (--reading.readers === 0) this.reading.delete(name);
    }
  }

  async create(name: string, record: GameRecord) {
    const r = await this.store.create(name, record);
    // A new game: pairing keys an earlier game of the name left are unknown here (a join over one conflicts, then reads them).
    if (r.type === 'created') this.hold(name, { game: { value: gamePart(record), revision: r.revision }, pairings: new Map() });
    return r;
  }

  async update(name: string, record: GameRecord, revision: number) {
    const r = await this.store.update(name, record, revision);
    const held = this.entries.get(name);
    if (r.type === 'updated' && held) held.game = newer(held.game, { value: gamePart(record), revision: r.revision });
    else if (r.type === 'conflict') this.entries.delete(name);
    return r;
  }

  async remove(name: string, revision: number) {
    const r = await this.store.remove(name, revision);
    this.entries.delete(name);
    return r;
  }

  async putPairing(name: string, record: PairingRecord, revision: number | null) {
    const r = await this.store.putPairing(name, record, revision);
    const held = this.entries.get(name);
    const peer = record.pairing.peerId;
    if (r.type === 'written' && held) held.pairings.set(peer, newer(held.pairings.get(peer), { value: record, revision: r.revision }));
    else if (r.type === 'conflict') this.entries.delete(name);
    return r;
  }

  async removePairing(name: string, peerId: string, revision: number) {
    const r = await this.store.removePairing(name, peerId, revision);
    const held = this.entries.get(name);
    // The deletion's own revision is unknown here, but above the one it replaced: that one plus a
    // half stands for it until the watch brings it (a later write by anyone is above it too).
    if (r.type === 'removed' && held) held.pairings.set(peerId, newer(held.pairings.get(peerId), { value: null, revision: revision + 0.5 }));
    else if (r.type === 'conflict') this.entries.delete(name);
    return r;
  }

  inWriteOrder(from?: number) {
    return this.store.inWriteOrder(from);
  }
  pairingsInWriteOrder(from?: number) {
    return this.store.pairingsInWriteOrder(from);
  }
  getHolds(key: HoldKey) {
    return this.store.getHolds(key);
  }
  putHolds(key: HoldKey, holds: RelayHold[], revision: number | null) {
    return this.store.putHolds(key, holds, revision);
  }

  private hold(name: string, entry: Entry): void {
    if (!this.live) return;
    this.entries.delete(name);
    this.entries.set(name, entry);
    if (this.entries.size > this.maxGames) this.entries.delete(this.entries.keys().next().value!);
  }
}

/** The game as the stores hand it out, or null when its key is gone. */
function answer(e: Entry): StoredGame | null {
  if (!e.game.value) return null;
  const pairings = [...e.pairings.values()].flatMap((p) => (p.value ? [{ record: p.value, revision: p.revision }] : []));
  return assembled({ record: e.game.value, revision: e.game.revision }, pairings);
}

/** Of two readings of one key, the later (an equal revision is the same write: the held one stays). */
function newer<T>(a: Seen<T> | undefined, b: Seen<T>): Seen<T> {
  return a && a.revision >= b.revision ? a : b;
}

/** A record another instance wrote is untrusted input: one that is not JSON reads as absent. */
function parsed<T>(w: { json<T>(): T }): T | null {
  try {
    return w.json<T>();
  } catch {
    return null;
  }
}
