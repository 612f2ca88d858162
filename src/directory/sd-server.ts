import type { Server } from 'node:https';
import { readFileSync } from 'node:fs';
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { RpcError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { NatsConnection } from '../core/nats.js';
import { fingerprintOf, readTlsMaterial } from '../core/tls-material.js';
import { startJsonRpcServer, type RpcHandler } from '../jsonrpc/server.js';
import type { SdSettings } from '../settings/schemas.js';
import { DirectoryState, type Tip } from './chain.js';
import { followRecordStream, SD_RECORDS_SUBJECT } from './client.js';
import { recordHash, verifyRecord, type SignerPolicy } from './records.js';
import { signedRecordSchema, type SignedRecord } from './types.js';

/** A batch larger than this is a mistake or an attack; sd-setup sends a few dozen. */
const MAX_RECORDS_PER_SUBMIT = 1000;
/** How long a publish waits for JetStream to store the record before the submit fails. */
const PUBLISH_TIMEOUT_MS = 5_000;

const paramsSchemas = {
  getEntries: z.object({}).passthrough(),
  getTip: z.object({}).passthrough(),
  getEntry: z.strictObject({ name: z.string().min(1) }),
  getRecords: z.strictObject({ after: z.number().int().nonnegative().optional() }),
  submitRecords: z.strictObject({ records: z.array(signedRecordSchema).min(1).max(MAX_RECORDS_PER_SUBMIT) }),
};

function parseParams<S extends z.ZodType>(schema: S, params: unknown): z.infer<S> {
  const checked = schema.safeParse(params ?? {});
  if (!checked.success) {
    throw new RpcError('INVALID_PARAMS', checked.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; '));
  }
  return checked.data;
}

export interface SdServer {
  /** Port actually bound (settings may ask for 0). */
  port: number;
  tip(): Tip;
  close(): Promise<void>;
}

/** Creates the stream if missing; an existing stream is left as it is (it may hold the chain). */
async function ensureStream(jsm: JetStreamManager, name: string, log: Logger): Promise<void> {
  try {
    await jsm.streams.info(name);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  // File storage so the chain outlives a nats-server restart; no limits, since the chain is
  // replayed from its first record and must never lose one.
  await jsm.streams.add({ name, subjects: [SD_RECORDS_SUBJECT], storage: StorageType.File, max_msgs: -1, max_bytes: -1, max_age: 0 });
  log.info({ stream: name, subject: SD_RECORDS_SUBJECT }, 'record stream created');
}

/**
 * The service directory: the JetStream stream is the chain's only store and the push channel to
 * servers, and this process is a view of it plus the gate that decides what may be appended.
 * Several sd instances may run: each follows the stream, and appends carry the expected last
 * sequence, so the loser of a race gets STALE_PARENT instead of forking the chain.
 */
export async function startSd(settings: SdSettings, nc: NatsConnection, log: Logger): Promise<SdServer> {
  const tls = readTlsMaterial(settings.tls);
  const admins = new Set(settings.admins.map((p) => fingerprintOf(readFileSync(p))));
  const submitPolicy: SignerPolicy = { rootCa: tls.ca, adminFingerprints: admins };
  // Replayed records were accepted when they were appended; an admin removed since must not make
  // the history unreadable, so replay checks what every client checks, not today's admin list.
  const replayPolicy: SignerPolicy = { rootCa: tls.ca, anyCodeSigningCert: true };

  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, settings.stream, log);
  const js = jetstream(nc);
  const state = new DirectoryState();
  let broken = false;

  let caughtUp!: () => void;
  const replayed = new Promise<void>((resolve) => (caughtUp = resolve));
  const follower = followRecordStream({
    nc,
    stream: settings.stream,
    log,
    tipSeq: () => state.tip().seq,
    onCaughtUp: () => caughtUp(),
    onRecord: (seq, raw) => {
      if (seq <= state.tip().seq || broken) return;
      const verdict = verifyRecord(raw, replayPolicy);
      const applied = verdict.ok
        ? state.applyChained({ seq, hash: recordHash(raw as SignedRecord), record: raw as SignedRecord })
        : verdict;
      if (!applied.ok) {
        broken = true;
        log.error({ seq, code: applied.code, detail: applied.detail }, 'the record stream holds a record that does not verify; refusing further submissions');
      }
    },
  });
  await replayed;
  log.info({ tip: state.tip(), stream: settings.stream }, 'chain replayed from the stream');

  // Submissions run one at a time: each must see the tip the previous one left.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  async function submit(records: SignedRecord[]): Promise<{ accepted: number; tip: Tip }> {
    if (broken) throw new RpcError('INTERNAL_ERROR', 'the stored chain does not verify; see the sd log');
    // Check the whole batch on a copy first, so a bad record late in a batch persists nothing.
    const scratch = state.clone();
    records.forEach((record, i) => {
      const verdict = verifyRecord(record, submitPolicy);
      if (!verdict.ok) throw new RpcError(verdict.code, `record ${i}: ${verdict.detail}`);
      const applied = scratch.append(record);
      if (!applied.ok) throw new RpcError(applied.code, `record ${i}: ${applied.detail}`);
    });
    let accepted = 0;
    for (const record of records) {
      const lastSequence = state.tip().seq;
      const hash = recordHash(record);
      try {
        const ack = await js.publish(SD_RECORDS_SUBJECT, JSON.stringify(record), {
          expect: { lastSequence, streamName: settings.stream },
          msgID: hash,
          timeout: PUBLISH_TIMEOUT_MS,
        });
        if (ack.duplicate) throw new RpcError('STALE_PARENT', `record ${hash} was already appended`);
      } catch (err) {
        if (err instanceof RpcError) throw err;
        const lost = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence;
        if (lost) {
          throw new RpcError('STALE_PARENT', `another sd instance extended the chain after seq ${lastSequence}; fetch the tip and resubmit`, {
            data: { accepted },
          });
        }
        log.error({ err }, 'cannot persist a record');
        throw new RpcError('INTERNAL_ERROR', `the record could not be stored (${(err as Error).message})`, { cause: err, data: { accepted } });
      }
      // The follower may already have applied it from the stream while the ack travelled.
      if (state.tip().seq <= lastSequence) {
        const applied = state.append(record);
        if (!applied.ok) throw new RpcError('INTERNAL_ERROR', `stored record no longer applies: ${applied.detail}`);
      }
      accepted += 1;
      log.info({ seq: state.tip().seq, kind: record.data.kind, signer: record.signer }, 'record appended');
    }
    return { accepted, tip: state.tip() };
  }

  const handle: RpcHandler = async (request) => {
    switch (request.method) {
      case 'getEntries':
        parseParams(paramsSchemas.getEntries, request.params);
        return { entries: [...state.entries().values()], tip: state.tip() };
      case 'getEntry': {
        const { name } = parseParams(paramsSchemas.getEntry, request.params);
        const entry = state.entry(name);
        if (!entry) throw new RpcError('UNKNOWN_OPERATOR', name);
        return entry;
      }
      case 'getRecords': {
        const { after } = parseParams(paramsSchemas.getRecords, request.params);
        return { records: state.records(after ?? 0), tip: state.tip() };
      }
      case 'getTip':
        parseParams(paramsSchemas.getTip, request.params);
        return state.tip();
      case 'submitRecords': {
        const { records } = parseParams(paramsSchemas.submitRecords, request.params);
        return serialized(() => submit(records));
      }
      default:
        throw new RpcError('METHOD_NOT_FOUND', request.method);
    }
  };

  let server: Server;
  try {
    server = await startJsonRpcServer({
      tls,
      host: settings.listen.host,
      port: settings.listen.port,
      maxBodyBytes: settings.maxBodyBytes,
      log,
      handle,
    });
  } catch (err) {
    await follower.stop();
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : settings.listen.port;
  log.info({ host: settings.listen.host, port, admins: [...admins] }, 'sd listening');

  return {
    port,
    tip: () => state.tip(),
    close: async () => {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await follower.stop();
    },
  };
}
