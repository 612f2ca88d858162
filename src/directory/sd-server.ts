import type { Server } from 'node:https';
import { readFileSync } from 'node:fs';
import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { RpcError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { whenConnected, type NatsConnection } from '../core/nats.js';
import { fingerprintOf, readTlsMaterial } from '../core/tls-material.js';
import { startJsonRpcServer, type RpcHandler } from '../jsonrpc/server.js';
import type { SdSettings } from '../settings/schemas.js';
import { DirectoryState, type Tip } from './chain.js';
import { followRecordStream } from './follower.js';
import { SD_RECORDS_SUBJECT } from './stream-names.js';
import { applyNext, damageMessage, isNewDamage, missingRecord, type ChainDamage } from './damage.js';
import { recordHash, verifyRecord, type SignerPolicy } from './records.js';
import { signedRecordSchema, type SignedRecord } from './types.js';

/** How long a submit waits for the bus and JetStream to answer after a bus restart before it fails. */
const JETSTREAM_READY_WAIT_MS = 10_000;
/** One attempt within that wait: long enough for a loaded JetStream, short enough to try again. */
const JETSTREAM_ATTEMPT_MS = 2_000;

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
async function ensureStream(jsm: JetStreamManager, name: string, replicas: number, log: Logger): Promise<void> {
  try {
    await jsm.streams.info(name);
    return;
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) throw err;
  }
  // File storage so the chain outlives a nats-server restart; no limits, since the chain is
  // replayed from its first record and must never lose one. On a cluster JetStream keeps
  // `replicas` copies on as many nodes: the chain outlives the loss of a node too.
  await jsm.streams.add({ name, subjects: [SD_RECORDS_SUBJECT], storage: StorageType.File, max_msgs: -1, max_bytes: -1, max_age: 0, num_replicas: replicas });
  log.info({ stream: name, subject: SD_RECORDS_SUBJECT, replicas }, 'record stream created');
}

/**
 * The service directory: the JetStream stream is the chain's only store, each append's publish is
 * the servers' poke to read it (src/directory/follower.ts), and this process is a view of it plus
 * the gate that decides what may be appended.
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

  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const quickJsm = await jetstreamManager(nc, { checkAPI: false, timeout: JETSTREAM_ATTEMPT_MS });
  await ensureStream(jsm, settings.stream, settings.replicas, log);
  const js = jetstream(nc);
  let state = new DirectoryState();
  /** Set while the stream holds a record that does not verify: reads serve the records before it. */
  let damage: ChainDamage | undefined;
  let follower: ReturnType<typeof followRecordStream> | undefined;

  /** (Re)builds the state from the stream: at start, and after an operator reset or truncated it. */
  async function replay(): Promise<void> {
    await follower?.stop();
    state = new DirectoryState();
    damage = undefined;
    let caughtUp!: () => void;
    const replayed = new Promise<void>((resolve) => (caughtUp = resolve));
    follower = followRecordStream({
      nc,
      stream: settings.stream,
      log,
      tipSeq: () => state.tip().seq,
      onCaughtUp: () => caughtUp(),
      onRecord: (seq, raw) => {
        const tip = state.tip().seq;
        if (seq <= tip) return 'old';
        const result = applyNext(state, settings.stream, seq, raw, replayPolicy);
        if (!result.ok) {
          const d = result.damage;
          if (isNewDamage(damage, d)) {
            damage = d;
            log.error({ stream: d.stream, seq: d.seq, code: d.code, detail: d.detail }, damageMessage(d));
          }
          // The good prefix is all there is to replay: serve it.
          caughtUp();
          return 'stuck';
        }
        if (damage) {
          log.info({ stream: settings.stream, seq }, 'a verifying record replaced the damaged one; accepting submissions again');
          damage = undefined;
        }
        return 'applied';
      },
    });
    await replayed;
    const damagedAt = (damage as ChainDamage | undefined)?.seq;
    log.info({ tip: state.tip(), stream: settings.stream, damagedAt }, 'chain replayed from the stream');
  }
  await replay();

  /**
   * The stream's info, asked again for a few seconds while JetStream does not answer: right after a
   * nats-server restart the sd may still be reconnecting (and nats.js drops what is published
   * meanwhile, so a request sent then only times out), or JetStream may not have recovered its
   * streams yet; a submit then should wait for both rather than fail. Each attempt has a short
   * timeout of its own, so one lost request does not use up the whole wait.
   */
  async function streamInfoWhenReady() {
    const deadline = Date.now() + JETSTREAM_READY_WAIT_MS;
    for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
      if (!(await whenConnected(nc, Math.max(1, deadline - Date.now())))) {
        throw new Error(`the bus stayed disconnected for ${JETSTREAM_READY_WAIT_MS} ms`);
      }
      try {
        return await quickJsm.streams.info(settings.stream);
      } catch (err) {
        if (err instanceof JetStreamApiError || Date.now() + wait > deadline) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /**
   * Before a submit, looks at the stream itself: an operator may have repaired it (the bad tail
   * is gone, so the stream ends at our tip) or reset it (it is gone or shorter than our chain).
   */
  async function reconcile(): Promise<void> {
    let lastSeq = 0;
    try {
      lastSeq = (await streamInfoWhenReady()).state.last_seq;
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound)) {
        throw new RpcError('INTERNAL_ERROR', `the record stream cannot be read (${(err as Error).message})`, { cause: err });
      }
      await ensureStream(jsm, settings.stream, settings.replicas, log);
    }
    const stored = (seq: number) => jsm.streams.getMessage(settings.stream, { seq }).then((m) => m !== null);
    // The stream is the truth: if it no longer holds what we replayed (reset, repaired, a record
    // deleted), replay it rather than append to a chain nobody else can read.
    const tip = state.tip();
    if (lastSeq < tip.seq || (tip.seq > 0 && !(await stored(tip.seq)))) {
      log.warn({ stream: settings.stream, lastSeq, tip }, 'the record stream no longer holds the replayed chain (reset, repaired or a record deleted); replaying it');
      await replay();
    }
    // Whatever was stored without a poke (a message on another subject, a poke lost) is read now,
    // so the submit is refused for the record that is wrong rather than as a stale parent.
    if (!damage && lastSeq > state.tip().seq) {
      await follower?.catchUp().catch((err: unknown) => {
        throw new RpcError('INTERNAL_ERROR', `the record stream cannot be read (${(err as Error).message})`, { cause: err });
      });
    }
    const now = state.tip().seq;
    if (!damage && lastSeq > now && !(await stored(now + 1))) {
      // Records deleted from the end leave no gap for a follower to see, but the stream's counter
      // stays ahead of the chain, so no append could match the expected last sequence.
      damage = missingRecord(settings.stream, now + 1, undefined);
      log.error({ stream: settings.stream, seq: damage.seq, code: damage.code, detail: damage.detail }, damageMessage(damage));
    } else if (damage && lastSeq === now) {
      log.info({ stream: settings.stream, tip: state.tip() }, 'the damaged records are gone from the stream; accepting submissions again');
      damage = undefined;
    }
  }

  // Submissions run one at a time: each must see the tip the previous one left.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  async function submit(records: SignedRecord[]): Promise<{ accepted: number; tip: Tip }> {
    await reconcile();
    if (damage) {
      const { stream, seq, code, detail } = damage;
      const data = { damage: { stream, seq, code, detail } };
      throw new RpcError('INTERNAL_ERROR', `${damageMessage(damage)}; submissions are refused until then`, { data });
    }
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
    await follower?.stop();
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
      await follower?.stop();
    },
  };
}
