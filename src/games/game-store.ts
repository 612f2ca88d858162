import { DeliverPolicy, jetstream, JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { KvWatchInclude, type KV } from '@nats-io/kv';
import { createBucket } from './create-bucket.js';
import type { Logger } from '../core/logger.js';
import { untilBusDrops, type NatsConnection } from '../core/nats.js';
import { z } from 'zod';
import type { RelayHold } from '../../machines/game-session.js';
import { assembled, gamePart, pairingKey, pairingKeysOf, parsePairingKey, type GameRecord, type PairingRecord, type StoredGame, type StoredPairing } from './pairing-records.js';

// The records' shapes live with the layout (pairing-records.ts); importers keep finding them here.
export type { GameRecord, StoredGame };

/**
 * The relay sessions one cap counts (a client address's, a game name's), in their own key so
 * every instance counts the same ones and a game deleted and registered again keeps its count.
 */
export type HoldKey = { kind: 'client'; id: string } | { kind: 'game'; id: string };
export interface StoredHolds {
  holds: RelayHold[];
  revision: number;
}

/** The game key alone, as the sweep reads it (no pairings). */
export interface GameKeyEntry {
  name: string;
  record: GameRecord;
  revision: number;
}

export type PairingWrite = { type: 'written'; revision: number } | { type: 'conflict' };

/**
 * Revision-checked storage of game records. Expected outcomes (the name exists, someone else
 * wrote first) are status values; exceptions mean the store itself failed.
 */
export interface GameStore {
  /** `fresh`: read the store itself, past any cache (a write that lost its revision check reads again so). */
  get(name: string, fresh?: boolean): Promise<StoredGame | null>;
  /** Writes the game key: the record's guests and relay marks are left out (they are the pairings'). */
  create(name: string, record: GameRecord): Promise<{ type: 'created'; revision: number } | { type: 'exists' }>;
  update(name: string, record: GameRecord, revision: number): Promise<{ type: 'updated'; revision: number } | { type: 'conflict' }>;
  /** Removes the game key only; its pairings are removed one by one (removePairing). */
  remove(name: string, revision: number): Promise<{ type: 'removed' } | { type: 'conflict' }>;
  /** Writes one guest's pairing key: created when `revision` is null (a conflict if it exists), else revision-checked. */
  putPairing(name: string, record: PairingRecord, revision: number | null): Promise<PairingWrite>;
  removePairing(name: string, peerId: string, revision: number): Promise<{ type: 'removed' } | { type: 'conflict' }>;
  /** Every pairing record whose revision is `from` or later, least recently written first (the sweep). */
  pairingsInWriteOrder(from?: number): AsyncIterable<{ name: string } & StoredPairing>;
  /**
   * Every game whose revision is `from` or later, least recently written first; the caller stops
   * reading when it has seen enough.
   */
  inWriteOrder(from?: number): AsyncIterable<GameKeyEntry>;
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

function parsedRecord<T>(data: Uint8Array): T | undefined {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as T;
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
    return assembled({ record: entry.json<GameRecord>(), revision: entry.revision }, await this.pairingsOf(name));
  }

  /**
   * Every pairing key of a game, read by direct gets walking the stream (the next message on the
   * game's pairing keys after the last one read), so the read ends at the stream's end however
   * many writes land meanwhile; a key written again during the walk is read twice and its later
   * value kept. (An ordered consumer's pending count can stay above zero when a counted message is
   * replaced under it, and wait out its expiry: 30 s.) One round trip per key, plus one.
   */
  private async pairingsOf(name: string): Promise<StoredPairing[]> {
    const stream = `KV_${this.bucket}`;
    const prefix = `$KV.${this.bucket}.`;
    const latest = new Map<string, StoredPairing | null>();
    for (let seq = 1; ; ) {
      const m = await this.call('read', () => this.jsm.direct.getMessage(stream, { seq, next_by_subj: prefix + pairingKeysOf(name) }));
      if (!m) break;
      seq = m.seq + 1;
      const key = parsePairingKey(m.subject.slice(prefix.length));
      const operation = m.header?.get('KV-Operation');
      const record = !operation || operation === 'PUT' ? parsedRecord<PairingRecord>(m.data) : undefined;
      // A value that is not a pairing of this key (damaged, or written by hand) reads as absent.
      if (key) latest.set(key.peerId, record?.pairing?.peerId === key.peerId ? { record, revision: m.seq } : null);
    }
    return [...latest.values()].filter((p): p is StoredPairing => p !== null);
  }

  async create(name: string, record: GameRecord) {
    try {
      return { type: 'created' as const, revision: await untilBusDrops(this.nc, this.kv.create(gameKey(name), JSON.stringify(gamePart(record)))) };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'exists' as const };
      throw new StoreUnavailableError(`game store: create failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async update(name: string, record: GameRecord, revision: number) {
    try {
      return { type: 'updated' as const, revision: await untilBusDrops(this.nc, this.kv.update(gameKey(name), JSON.stringify(gamePart(record)), revision)) };
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

  async putPairing(name: string, record: PairingRecord, revision: number | null): Promise<PairingWrite> {
    const key = pairingKey(name, record.pairing.peerId);
    try {
      const value = JSON.stringify(record);
      const written = await untilBusDrops(this.nc, revision === null ? this.kv.create(key, value) : this.kv.update(key, value, revision));
      return { type: 'written', revision: written };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'conflict' };
      throw new StoreUnavailableError(`game store: pairing write failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async removePairing(name: string, peerId: string, revision: number) {
    try {
      await untilBusDrops(this.nc, this.kv.delete(pairingKey(name, peerId), { previousSeq: revision }));
      return { type: 'removed' as const };
    } catch (err) {
      if (isWrongSequence(err)) return { type: 'conflict' as const };
      throw new StoreUnavailableError(`game store: pairing removal failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Every write of a game or pairing key from now on, by any instance (for CachedGameStore). One
   * watch of every key (the cache passes over the relay holds' few writes): a watch of two
   * filters needs nats-server 2.10.
   */
  watchGames() {
    return this.call('watch', () => this.kv.watch({ key: '>', include: KvWatchInclude.UpdatesOnly }));
  }

  async *inWriteOrder(from = 1): AsyncIterable<GameKeyEntry> {
    for await (const m of this.messagesOf('g.>', DeliverPolicy.StartSequence, from)) {
      const record = parsedRecord<GameRecord>(m.data);
      // A record that is not JSON is passed over: it must not stop every later sweep here.
      if (record) yield { name: nameOfKey(m.key), record, revision: m.seq };
    }
  }

  async *pairingsInWriteOrder(from = 1): AsyncIterable<{ name: string } & StoredPairing> {
    for await (const p of this.lastOf('p.>', DeliverPolicy.StartSequence, from)) yield p;
  }

  /** The pairing records on keys matching `filter` (parsed; damaged ones passed over). */
  private async *lastOf(filter: string, policy: DeliverPolicy, from = 1): AsyncIterable<{ name: string } & StoredPairing> {
    for await (const m of this.messagesOf(filter, policy, from)) {
      const key = parsePairingKey(m.key);
      const record = parsedRecord<PairingRecord>(m.data);
      if (key && record?.pairing?.peerId === key.peerId) yield { name: key.name, record, revision: m.seq };
    }
  }

  /**
   * The live values on keys matching `filter`, through an ordered consumer read a small batch at
   * a time: from `from` in write order (with one value per key, the stream holds each key's last
   * write in the order they were written), or each key's last value. Deletion markers are left out.
   */
  private async *messagesOf(filter: string, policy: DeliverPolicy, from: number): AsyncIterable<{ key: string; data: Uint8Array; seq: number }> {
    const prefix = `$KV.${this.bucket}.`;
    const stream = `KV_${this.bucket}`;
    // A consumer with nothing to deliver would wait: ask first whether any such key exists.
    if (!(await this.call('read', () => this.jsm.direct.getMessage(stream, { seq: from, next_by_subj: prefix + filter })))) return;
    const start = policy === DeliverPolicy.StartSequence ? { opt_start_seq: from } : {};
    const consumer = await this.call('read', () => this.js.consumers.get(stream, { filter_subjects: prefix + filter, deliver_policy: policy, ...start }));
    const messages = await this.call('read', () => consumer.consume({ max_messages: 64 }));
    try {
      for await (const m of messages) {
        const operation = m.headers?.get('KV-Operation');
        if (!operation || operation === 'PUT') yield { key: m.subject.slice(prefix.length), data: m.data, seq: m.seq };
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
  private readonly games = new Map<string, { record: GameRecord; revision: number }>();
  /** By pairing key. */
  private readonly pairings = new Map<string, { name: string } & StoredPairing>();
  private seq = 0;

  async get(name: string) {
    const g = this.games.get(name);
    if (!g) return null;
    const own = [...this.pairings.values()].filter((p) => p.name === name).map(({ record, revision }) => ({ record: structuredClone(record), revision }));
    return assembled({ record: structuredClone(g.record), revision: g.revision }, own);
  }
  async create(name: string, record: GameRecord) {
    if (this.games.has(name)) return { type: 'exists' as const };
    const revision = ++this.seq;
    this.games.set(name, { record: structuredClone(gamePart(record)), revision });
    return { type: 'created' as const, revision };
  }
  async update(name: string, record: GameRecord, revision: number) {
    if (this.games.get(name)?.revision !== revision) return { type: 'conflict' as const };
    const next = ++this.seq;
    this.games.set(name, { record: structuredClone(gamePart(record)), revision: next });
    return { type: 'updated' as const, revision: next };
  }
  async remove(name: string, revision: number) {
    if (this.games.get(name)?.revision !== revision) return { type: 'conflict' as const };
    this.games.delete(name);
    return { type: 'removed' as const };
  }
  async putPairing(name: string, record: PairingRecord, revision: number | null) {
    const key = pairingKey(name, record.pairing.peerId);
    if ((this.pairings.get(key)?.revision ?? null) !== revision) return { type: 'conflict' as const };
    const written = ++this.seq;
    this.pairings.set(key, { name, record: structuredClone(record), revision: written });
    return { type: 'written' as const, revision: written };
  }
  async removePairing(name: string, peerId: string, revision: number) {
    const key = pairingKey(name, peerId);
    if (this.pairings.get(key)?.revision !== revision) return { type: 'conflict' as const };
    this.pairings.delete(key);
    return { type: 'removed' as const };
  }
  async *inWriteOrder(from = 1) {
    const byRevision = [...this.games].filter(([, g]) => g.revision >= from).sort(([, a], [, b]) => a.revision - b.revision);
    for (const [name, g] of byRevision) yield { name, record: structuredClone(g.record), revision: g.revision };
  }
  async *pairingsInWriteOrder(from = 1) {
    const byRevision = [...this.pairings.values()].filter((p) => p.revision >= from).sort((a, b) => a.revision - b.revision);
    for (const p of byRevision) yield structuredClone(p);
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
