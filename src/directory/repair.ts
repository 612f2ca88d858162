import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type StreamConfig } from '@nats-io/jetstream';
import type { NatsConnection } from '../core/nats.js';
import { DirectoryState } from './chain.js';
import { applyNext, missingRecord, type ChainDamage } from './damage.js';
import { parseStoredRecord } from './stored-record.js';
import { SD_RECORDS_SUBJECT } from './stream-names.js';
import { recordHash, type SignerPolicy } from './records.js';
import type { SignedRecord } from './types.js';

// The operator's way out of a damaged record stream. JetStream cannot truncate a stream after a
// sequence (purge removes from the front, deleting a message leaves a gap and keeps the sequence
// counter), and the chain relies on record N being stream message N. So a repair rebuilds the
// stream: it keeps every record up to the first that does not verify, writes a backup of all of
// them, deletes the stream and recreates it with the same configuration and the good records,
// which get back their sequences 1..N. Servers that stopped at the bad record then follow on.

export interface StoredRecord {
  seq: number;
  subject: string;
  data: Uint8Array;
}

export interface StreamScan {
  stream: string;
  config: StreamConfig;
  /** Every message stored, in order (gaps left out). */
  stored: StoredRecord[];
  lastSeq: number;
  /** The records that verify and chain, from record 1; all of `stored` when nothing is damaged. */
  good: StoredRecord[];
  damage?: ChainDamage;
}

/** Reads the whole stream and replays it as the sd does; undefined when the stream does not exist. */
export async function scanStream(nc: NatsConnection, stream: string, policy: SignerPolicy): Promise<StreamScan | undefined> {
  const jsm = await jetstreamManager(nc);
  let info;
  try {
    info = await jsm.streams.info(stream);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return undefined;
    throw err;
  }
  const stored: StoredRecord[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (m) stored.push({ seq, subject: m.subject, data: m.data });
  }
  const state = new DirectoryState();
  const good: StoredRecord[] = [];
  let damage: ChainDamage | undefined;
  for (const m of stored) {
    const result = applyNext(state, stream, m.seq, parseStoredRecord(m.subject, m.data), policy);
    if (!result.ok) {
      damage = result.damage;
      break;
    }
    good.push(m);
  }
  // Records deleted from the end leave the stream's counter ahead of the chain: appends would fail.
  if (!damage && info.state.last_seq > good.length) damage = missingRecord(stream, good.length + 1, undefined);
  return { stream, config: info.config, stored, lastSeq: info.state.last_seq, good, ...(damage ? { damage } : {}) };
}

/** Writes every stored message, good or not, as JSON lines; returns the file's path. */
export function writeBackup(scan: StreamScan, dir: string, now = new Date()): string {
  const file = join(dir, `${scan.stream}-${now.toISOString().replace(/[:.]/g, '-')}.jsonl`);
  const lines = scan.stored.map((m) => JSON.stringify({ seq: m.seq, subject: m.subject, data: Buffer.from(m.data).toString('utf8') }));
  writeFileSync(file, lines.length ? `${lines.join('\n')}\n` : '', { mode: 0o600 });
  return file;
}

/** Rebuilds the stream with only `scan.good`. The caller has written the backup first. */
export async function truncateStream(nc: NatsConnection, scan: StreamScan): Promise<void> {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.delete(scan.stream);
  // The records' subject only: a stream widened to capture other subjects is narrowed again.
  await jsm.streams.add({ ...scan.config, subjects: [SD_RECORDS_SUBJECT] });
  for (const [i, m] of scan.good.entries()) {
    const record = JSON.parse(Buffer.from(m.data).toString('utf8')) as SignedRecord;
    // Same guard as the sd's appends: if anything else writes meanwhile, stop rather than interleave.
    await js.publish(SD_RECORDS_SUBJECT, m.data, { expect: { lastSequence: i, streamName: scan.stream }, msgID: recordHash(record) });
  }
}

/** Deletes the stream; the sd recreates it empty on its next submit or start. */
export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(stream);
}
