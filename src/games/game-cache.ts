import type { KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '../core/logger.js';
import type { RelayHold } from '../../machines/game-session.js';
import { nameOfKey, type GameRecord, type GameStore, type HoldKey, type StoredGame } from './game-store.js';

// A poll that changes nothing in the store (the common one: see onlyLivenessRefreshed) still
// had to read the game's record over the bus, and that round trip was most of its cost. So each
// instance keeps the records it served lately, bounded, and a KV watch on the game keys brings
// every write made by any instance into the ones it holds. A read is then as fresh as the watch
// (milliseconds behind another instance's write); every write is still revision-checked against
// the store, and a write that lost (a stale read) reads again from the store itself, so the
// cache can make an answer a moment late but never loses or overwrites anything.

/** The watch's feed: each write or deletion of any game key, in stream order. */
export type GameWrites = AsyncIterable<Pick<KvWatchEntry, 'key' | 'revision' | 'operation'> & { json<T>(): T }>;

interface Entry {
  /** null: the key was deleted (or does not exist) as of `revision`. */
  game: StoredGame | null;
  revision: number;
}

export class CachedGameStore implements GameStore {
  /** Insertion order is use order (a hit moves the entry to the end): the first key is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  /** Reads in flight for names not held: writes the watch sees meanwhile are kept here, so an older read cannot win. */
  private readonly reading = new Map<string, { readers: number; latest?: Entry }>();
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
          if (!w.key.startsWith('g.')) continue;
          const name = nameOfKey(w.key);
          const game = w.operation === 'PUT' ? parsedGame(w, w.revision) : null;
          const entry = { game, revision: w.revision };
          const read = this.reading.get(name);
          if (read) read.latest = newer(read.latest, entry);
          const held = this.entries.get(name);
          if (held && held.revision < w.revision) this.entries.set(name, entry);
        }
      } catch (err) {
        this.log?.warn({ err }, 'game cache: the watch failed; reads go to the store');
      } finally {
        this.stop();
      }
    })();
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
      return held.game;
    }
    const reading = this.reading.get(name) ?? { readers: 0 };
    reading.readers++;
    this.reading.set(name, reading);
    try {
      const read = await this.store.get(name, true);
      // A write the watch delivered while the read was in flight is at least as new as the read.
      const entry = newer(reading.latest, { game: read, revision: read?.revision ?? 0 })!;
      this.hold(name, entry);
      return entry.game;
    } finally {
      if (--reading.readers === 0) this.reading.delete(name);
    }
  }

  async create(name: string, record: GameRecord) {
    const r = await this.store.create(name, record);
    if (r.type === 'created') this.hold(name, { game: { record, revision: r.revision }, revision: r.revision });
    return r;
  }

  async update(name: string, record: GameRecord, revision: number) {
    const r = await this.store.update(name, record, revision);
    if (r.type === 'updated') this.hold(name, { game: { record, revision: r.revision }, revision: r.revision });
    else this.entries.delete(name);
    return r;
  }

  async remove(name: string, revision: number) {
    const r = await this.store.remove(name, revision);
    this.entries.delete(name);
    return r;
  }

  inWriteOrder(from?: number) {
    return this.store.inWriteOrder(from);
  }
  getHolds(key: HoldKey) {
    return this.store.getHolds(key);
  }
  putHolds(key: HoldKey, holds: RelayHold[], revision: number | null) {
    return this.store.putHolds(key, holds, revision);
  }

  private hold(name: string, entry: Entry): void {
    if (!this.live) return;
    const held = this.entries.get(name);
    if (held && held.revision > entry.revision) return;
    this.entries.delete(name);
    this.entries.set(name, entry);
    if (this.entries.size > this.maxGames) this.entries.delete(this.entries.keys().next().value!);
  }
}

function newer(a: Entry | undefined, b: Entry | undefined): Entry | undefined {
  if (!a) return b;
  if (!b) return a;
  return b.revision >= a.revision ? b : a;
}

/** A record another instance wrote is untrusted input: one that is not JSON reads as absent. */
function parsedGame(w: { json<T>(): T }, revision: number): StoredGame | null {
  try {
    return { record: w.json<GameRecord>(), revision };
  } catch {
    return null;
  }
}
