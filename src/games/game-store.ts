import { DeliverPolicy, jetstream, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { KvWatchInclude, type KV } from '@nats-io/kv';
import { createBucket } from './create-bucket.js';
import type { Logger } from '../core/logger.js';
import { untilBusDrops, type NatsConnection } from '../core/nats.js';
import { z } from 'zod';
import type { GameSessionContext, OpenState, RelayHold, RelayInFlight } from '../../machines/game-session.js';

/**
 * What one KV key holds: the open machine state and its context (enough to rebuild the machine's
 * snapshot on any instance), plus the host secret's hash, which the machine never sees.
 */
export interface GameRecord {
  v: 1;
  secretHash: string;
  state: OpenState;
  context: GameSessionContext;
  /** The relay request each pairing (by guest peer id) is waiting for from the proxy, if any. */
  relayInFlight?: Record<string, RelayInFlight>;
  /** The game's entry in the lobby (src/games/lobby.ts); absent on records older than the lobby. */
  lobbySeq?: number;
  /**
   * The writer's clock when this revision was written. Every write is made by a request that saw
   * the game open, so a record written a host timeout ago or more has expired: the sweep reads
   * records in write order and stops at the first younger one.
   */
  writtenAt?: number;
}

/**
 * The relay sessions one cap counts (a client address's, a game name's), in their own key so
 * every instance counts the same ones and a game deleted and registered again keeps its count.
 */
export type HoldKey = { kind: 'client'; id: string } | { kind: 'game'; id: string };
export interface StoredHolds {
  holds: RelayHold[];
  revision: number;
}

export interface StoredGame {
  record: GameRecord;
  revision: number;
}

/**
 * Revision-checked storage of game records. Expected outcomes (the name exists, someone else
 * wrote first) are status values; exceptions mean the store itself failed.
 */
export interface GameStore {
  /** `fresh`: read the store itself, past any cache (a write that lost its revision check reads again so). */
  get(name: string, fresh?: boolean): Promise<StoredGame | null>;
  create(name: string, record: GameRecord): Promise<{ type: 'created'; revision: number } | { type: 'exists' }>;
  update(name: string, record: GameRecord, revision: number): Promise<{ type: 'updated'; revision: number } | { type: 'conflict' }>;
  remove(name: string, revision: number): Promise<{ type: 'removed' } | { type: 'conflict' }>;
  /**
   * Every game whose revision is `from` or later, least recently written first; the caller stops
   * reading when it has seen enough.
   */
  inWriteOrder(from?: number): AsyncIterable<{ name: string } & StoredGame>;
  getHolds(key: HoldKey): Promise<StoredHolds | null>;
  /** Creates the key when `revision` is null; an empty list deletes it. */
  putHolds(key: HoldKey, holds: RelayHold[], revision: number | null): Promise<{ type: 'written' } | { type: 'conflict' }>;
}

// KV keys allow only [-/_=.A-Za-z0-9]; names are free text, so the key is their base64url.
export const gameKey = (name: string): string => `g.${Buffer.from(name, 'utf8').toString('base64url')}`;
export const holdKey = (key: HoldKey): string => `h.${key.kind === 'client' ? 'c' : 'g'}.${Buffer.from(key.id, 'utf8').toString('base64url') || '_'}`;
export const nameOfKey = (key: string): string => Buffer.from(key.slice(2), 'base64url').toString('utf8');

/** The store kept answering "someone wrote first": a hot game or a broken store. */
export class StoreContentionError extends Error {
  override readonly name = 'StoreContentionError';
}

/** The bus or JetStream failed (timeout, disconnect, no responders): the caller may retry later. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
}

/** Every unexpected store failure leaves as StoreUnavailableError, so the API answers 503 for it. */
export async function guarded<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw new StoreUnavailableError(`game store: ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

/** A store call: failures leave as StoreUnavailableError, at once when the bus drops. */
export type StoreCall = <T>(what: string, op: () => Promise<T>) => Promise<T>;

/** Store calls over `nc`: one in flight when the connection drops fails then, not at its timeout. */
export const storeCallsOn =
  (nc: NatsConnection): StoreCall =>
  (what, op) =>
    guarded(what, () => untilBusDrops(nc, op()));

const isWrongSequence = (err: unknown) =>
  err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;

// Another instance (or a hand) may have written the key: it is read as untrusted input.
const holdsSchema = z.strictObject({
  v: z.literal(1),
  holds: z.array(z.strictObject({ id: z.string().min(1).max(64), until: z.number().int() })).max(10_000),
});

function parsedRecord(data: Uint8Array): GameRecord | undefined {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as GameRecord;
  } catch {
    return undefined;
  }
}

export class KvGameStore implements GameStore {
  private readonly call: StoreCall;
  private constructor(
    private readonly nc: NatsConnection,
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly bucket: string,
  ) {
    this.call = storeCallsOn(nc);
  }

  /** Opens (creating if needed) the bucket; one value per key is all a game needs. */
  static async open(nc: NatsConnection, bucket: string, replicas = 1, log?: Logger): Promise<KvGameStore> {
    const kv = await createBucket(nc, bucket, { history: 1, replicas }, log);
    const js = jetstream(nc);
    return new KvGameStore(nc, kv, js, await js.jetstreamManager(), bucket);
  }

  async get(name: string): Promise<StoredGame | null> {
    const entry = await this.call('get', () => this.kv.get(gameKey(name)));
    if (!entry || entry.operation !== 'PUT') return null;
    return { record: entry.json<GameRecord>(), revision: entry.revision };
  }

  async create(name: string, record: GameRecord) {
    try {
      return { type: 'created' as const, revision: await untilBusDrops(this.nc, this.kv.create(gameKey(name), JSON.stringify(record))) };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'exists' as const };
      throw new StoreUnavailableError(`game store: create failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async update(name: string, record: GameRecord, revision: number) {
    try {
      return { type: 'updated' as const, revision: await untilBusDrops(this.nc, this.kv.update(gameKey(name), JSON.stringify(record), revision)) };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'conflict' as const };
      throw new StoreUnavailableError(`game store: write failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async remove(name: string, revision: number) {
    try {
      await untilBusDrops(this.nc, this.kv.delete(gameKey(name), { previousSeq: revision }));
      return { type: 'removed' as const };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'conflict' as const };
      throw new StoreUnavailableError(`game store: write failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Every write of a game key from now on, by any instance (for CachedGameStore). */
  watchGames() {
    return this.call('watch', () => this.kv.watch({ key: 'g.>', include: KvWatchInclude.UpdatesOnly }));
  }

  async *inWriteOrder(from = 1): AsyncIterable<{ name: string } & StoredGame> {
    // An ordered consumer on the game keys only: with one value per key, the stream holds each
    // game's last write, in the order they were written. It is read a small batch at a time.
    const prefix = `$KV.${this.bucket}.`;
    // A consumer with nothing to deliver would wait: ask first whether any game key exists.
    if (!(await this.call('sweep read', () => this.jsm.direct.getMessage(`KV_${this.bucket}`, { seq: from, next_by_subj: `${prefix}g.>` })))) return;
    const consumer = await this.call('sweep read', () => this.js.consumers.get(`KV_${this.bucket}`, { filter_subjects: `${prefix}g.>`, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from }));
    const messages = await this.call('sweep read', () => consumer.consume({ max_messages: 64 }));
    try {
      for await (const m of messages) {
        const operation = m.headers?.get('KV-Operation');
        const record = !operation || operation === 'PUT' ? parsedRecord(m.data) : undefined;
        // A record that is not JSON is passed over: it must not stop every later sweep here.
        if (record) yield { name: nameOfKey(m.subject.slice(prefix.length)), record, revision: m.seq };
        if (m.info.pending === 0) break;
      }
    } finally {
      await messages.close().catch(() => undefined);
    }
  }

  async getHolds(key: HoldKey): Promise<StoredHolds | null> {
    const entry = await this.call('get', () => this.kv.get(holdKey(key)));
    if (!entry || entry.operation !== 'PUT') return null;
    const parsed = holdsSchema.safeParse(entry.json<unknown>());
    // A damaged list must not lock a client out for good: it counts as empty and is overwritten.
    return { holds: parsed.success ? parsed.data.holds : [], revision: entry.revision };
  }

  async putHolds(key: HoldKey, holds: RelayHold[], revision: number | null) {
    const k = holdKey(key);
    try {
      if (holds.length === 0) {
        if (revision !== null) await untilBusDrops(this.nc, this.kv.delete(k, { previousSeq: revision }));
      } else if (revision === null) await untilBusDrops(this.nc, this.kv.create(k, JSON.stringify({ v: 1, holds })));
      else await untilBusDrops(this.nc, this.kv.update(k, JSON.stringify({ v: 1, holds }), revision));
      return { type: 'written' as const };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'conflict' as const };
      throw new StoreUnavailableError(`game store: write failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** The same contract in memory, for route tests that need no bus. */
export class MemoryGameStore implements GameStore {
  private readonly games = new Map<string, StoredGame>();
  private seq = 0;

  async get(name: string) {
    const g = this.games.get(name);
    return g ? { record: structuredClone(g.record), revision: g.revision } : null;
  }
  async create(name: string, record: GameRecord) {
    if (this.games.has(name)) return { type: 'exists' as const };
    const revision = ++this.seq;
    this.games.set(name, { record: structuredClone(record), revision });
    return { type: 'created' as const, revision };
  }
  async update(name: string, record: GameRecord, revision: number) {
    if (this.games.get(name)?.revision !== revision) return { type: 'conflict' as const };
    const next = ++this.seq;
    this.games.set(name, { record: structuredClone(record), revision: next });
    return { type: 'updated' as const, revision: next };
  }
  async remove(name: string, revision: number) {
    if (this.games.get(name)?.revision !== revision) return { type: 'conflict' as const };
    this.games.delete(name);
    return { type: 'removed' as const };
  }
  async *inWriteOrder(from = 1) {
    const byRevision = [...this.games].filter(([, g]) => g.revision >= from).sort(([, a], [, b]) => a.revision - b.revision);
    for (const [name, g] of byRevision) yield { name, record: structuredClone(g.record), revision: g.revision };
  }
  private readonly holdLists = new Map<string, StoredHolds>();
  async getHolds(key: HoldKey) {
    const h = this.holdLists.get(holdKey(key));
    return h ? structuredClone(h) : null;
  }
  async putHolds(key: HoldKey, holds: RelayHold[], revision: number | null) {
    const k = holdKey(key);
    if ((this.holdLists.get(k)?.revision ?? null) !== revision) return { type: 'conflict' as const };
    if (holds.length === 0) this.holdLists.delete(k);
    else this.holdLists.set(k, { holds: structuredClone(holds), revision: ++this.seq });
    return { type: 'written' as const };
  }
}
