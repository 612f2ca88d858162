import { randomBytes } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { createBucket } from './create-bucket.js';
import type { Logger } from '../core/logger.js';
import { z } from 'zod';
import type { NatsConnection } from '../core/nats.js';
import { lobbyBucket } from './buckets.js';
import { storeCallsOn, type StoreCall } from './game-store.js';

// The lobby: an index of games in registration order, in a bucket of its own so that its stream
// sequence numbers are the order. An entry is written once when a game is registered (or renamed)
// and deleted with it, never rewritten, so a host's polls do not move its game in the list and a
// sequence number is a cursor that stays valid on every instance while games come and go.
//
// nats-server 2.9 (Debian's) answers a direct get "first message at or after seq N" in about the
// same time wherever N is, when the filter is `>` (every subject of the stream), but a filter on
// part of the subjects scans the stream: so the lobby holds nothing but entries, and a page costs
// one direct get per entry it looks at, not one per game registered.

export interface LobbyEntry {
  /** The entry's stream sequence: its place in the list, and what the game's record points to. */
  seq: number;
  name: string;
  /** When it was written (ms since the epoch, the store's clock). */
  at: number;
}

export interface LobbyPage {
  entries: LobbyEntry[];
  /** No entry after the last one returned. */
  end: boolean;
}


export interface Lobby {
  /** Appends an entry for `name`; returns its sequence. */
  add(name: string): Promise<number>;
  /** Removes exactly the entry at `seq` (a newer entry for the same name is another sequence). */
  remove(seq: number): Promise<void>;
  /** Up to `max` entries after sequence `after`, oldest first. */
  page(after: number, max: number): Promise<LobbyPage>;
  /** Entries held: the total-games cap counts these (an entry left by a crash counts until it is cleaned). */
  count(): Promise<number>;
}

/** Rounds of parallel reads one page makes at most. */
const PAGE_ROUNDS = 4;

// Another instance (or a hand) may have written the entry: it is read as untrusted input.
const entrySchema = z.strictObject({ v: z.literal(1), name: z.string().min(1).max(256) });

export class KvLobby implements Lobby {
  private constructor(
    private readonly call: StoreCall,
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
  ) {}

  static async open(nc: NatsConnection, bucket: string, replicas = 1, log?: Logger): Promise<KvLobby> {
    const name = lobbyBucket(bucket);
    const kv = await createBucket(nc, name, { history: 1, replicas }, log);
    return new KvLobby(storeCallsOn(nc), kv, await jetstreamManager(nc), `KV_${name}`);
  }

  async add(name: string): Promise<number> {
    // A random key: two registrations racing for one name must not overwrite each other's entry.
    return this.call('lobby add', () => this.kv.put(`e.${randomBytes(12).toString('base64url')}`, JSON.stringify({ v: 1, name })));
  }

  async remove(seq: number): Promise<void> {
    // A message delete, not a KV delete: a KV delete leaves a marker per entry in the stream forever.
    await this.call('lobby remove', () =>
      this.jsm.streams.deleteMessage(this.stream, seq, false).catch((err: unknown) => {
        // Already gone (another instance removed it): the caller's goal holds.
        if (/no message found/i.test((err as Error).message)) return false;
        throw err;
      }),
    );
  }

  async page(after: number, max: number): Promise<LobbyPage> {
    const entries: LobbyEntry[] = [];
    let from = after;
    // One request per sequence after the cursor, all at once: each answers the first entry at or
    // after its sequence, so together they return every entry in the window plus the first one
    // past it, with no round trip waiting on another. Entries removed leave holes whose requests
    // all answer the entry after the hole: another round then starts past it. The rounds are
    // bounded, so a page after a long run of removed entries may be short (it says where to go on).
    for (let round = 0; round < PAGE_ROUNDS && entries.length < max; round++) {
      const wanted = max - entries.length;
      const answers = await this.call('lobby page', () =>
        Promise.all(Array.from({ length: wanted }, (_, i) => this.jsm.direct.getMessage(this.stream, { seq: from + 1 + i, next_by_subj: '>' }))),
      );
      const bySeq = new Map<number, LobbyEntry>();
      for (const m of answers) {
        if (!m || bySeq.has(m.seq)) continue;
        const parsed = entrySchema.safeParse(safeJson(m.data));
        // A damaged entry is passed over with its sequence, so the walk goes on past it.
        bySeq.set(m.seq, { seq: m.seq, name: parsed.success ? parsed.data.name : '', at: m.time.getTime() });
      }
      const found = [...bySeq.values()].sort((a, b) => a.seq - b.seq).slice(0, wanted);
      entries.push(...found);
      // No answer at all past the window's last sequence: nothing after it.
      if (answers.at(-1) === null) return { entries, end: true };
      from = found.at(-1)?.seq ?? from + wanted;
    }
    return { entries, end: false };
  }

  async count(): Promise<number> {
    return this.call('lobby count', async () => (await this.jsm.streams.info(this.stream)).state.messages);
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The same contract in memory, for tests that need no bus. */
export class MemoryLobby implements Lobby {
  private readonly entries = new Map<number, { name: string; at: number }>();
  private seq = 0;
  constructor(private readonly now: () => number = Date.now) {}
  async add(name: string) {
    this.entries.set(++this.seq, { name, at: this.now() });
    return this.seq;
  }
  async remove(seq: number) {
    this.entries.delete(seq);
  }
  async page(after: number, max: number) {
    const all = [...this.entries].filter(([s]) => s > after).map(([seq, e]) => ({ seq, ...e }));
    return { entries: all.slice(0, max), end: all.length <= max };
  }
  async count() {
    return this.entries.size;
  }
}
