import { jetstreamManager, JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { second } from '../core/constants.js';
import type { Logger } from '../core/logger.js';
import type { NatsConnection } from '../core/nats.js';
import { parseStoredRecord } from './stored-record.js';
import { SD_RECORDS_SUBJECT } from './stream-names.js';

// How readers follow the directory without creating anything on the server. A JetStream consumer
// would need the consumer API, whose deliver_subject nats-server never checks against the
// creator's publish rights: any reader could have the stream delivered into a subject it may not
// publish to (a proxy's relayRequest, another principal's inbox) and leave durables behind. So
// readers ask only read-only questions (stream info, one message by sequence), and learn that
// something was appended from the sd's own publish on the records' subject, which they subscribe
// to as a poke: it carries no sequence, and whatever it holds is never applied, only the stored
// message is.

/** First wait after a failed catch-up, a missing stream or a damaged record; doubles up to the maximum. */
const DEFAULT_RETRY_INITIAL_MS = 250;
/** Long enough not to hammer a down sd, short enough that a starting demo syncs within seconds. */
const DEFAULT_RETRY_MAX_MS = 5 * second;
/** A poke is core NATS, at most once: a catch-up this often anyway bounds what a lost one costs. */
const DEFAULT_RESYNC_MS = 30 * second;

export const DEFAULT_FOLLOW_RETRY = { initialMs: DEFAULT_RETRY_INITIAL_MS, maxMs: DEFAULT_RETRY_MAX_MS };

/**
 * What the follower's owner did with a record: `old` (already held), `applied`, or `stuck` (the
 * record does not extend the chain, or a record is missing before it). After `stuck` the
 * follower reads the same record again with backoff until an operator repairs the stream.
 */
export type RecordOutcome = 'old' | 'applied' | 'stuck';

/** `caughtUp`: holds everything there was; `stuck`: stopped at a record that does not apply. */
export type CatchUpResult = 'caughtUp' | 'stuck';

export const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export interface PokeFollowerOptions {
  nc: NatsConnection;
  log: Logger;
  /** Reads whatever was appended after what the owner holds. Throws when the source cannot be read. */
  catchUp: (signal: AbortSignal) => Promise<CatchUpResult>;
  retry?: { initialMs: number; maxMs: number };
  resyncMs?: number;
}

/**
 * Runs `catchUp` at start, on every poke on the records' subject, after every reconnect (pokes
 * sent while disconnected are lost) and every `resyncMs`; after a failure or a stuck record, again
 * with backoff until it succeeds. Pokes arriving during a catch-up make one more run, not one each.
 */
export function followPokes(opts: PokeFollowerOptions): { stop: () => Promise<void> } {
  const abort = new AbortController();
  const retry = opts.retry ?? DEFAULT_FOLLOW_RETRY;
  const resyncMs = opts.resyncMs ?? DEFAULT_RESYNC_MS;
  let poked = true;
  let wake: (() => void) | undefined;
  const poke = () => {
    poked = true;
    wake?.();
  };
  const sub = opts.nc.subscribe(SD_RECORDS_SUBJECT, { callback: () => poke() });
  const statuses = opts.nc.status();
  void (async () => {
    for await (const s of statuses) if (s.type === 'reconnect') poke();
  })().catch(() => undefined);

  const done = (async () => {
    let wait = retry.initialMs;
    while (!abort.signal.aborted) {
      let failed = false;
      if (poked) {
        poked = false;
        try {
          const result = await opts.catchUp(abort.signal);
          if (result === 'stuck') failed = true;
          else wait = retry.initialMs;
        } catch (err) {
          if (abort.signal.aborted) break;
          failed = true;
          const missing = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
          if (missing) opts.log.debug('record stream does not exist yet; waiting for the sd');
          else opts.log.warn({ err: (err as Error).message }, 'catching up with the directory failed; retrying');
        }
      }
      if (abort.signal.aborted) break;
      if (failed) {
        // Retry on the backoff alone: pokes while stuck change nothing until a repair, and the
        // backoff bounds how soon after it the follower notices.
        await sleep(wait, abort.signal);
        wait = Math.min(wait * 2, retry.maxMs);
        poked = true;
        continue;
      }
      if (!poked) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => {
            poked = true;
            stop();
          }, resyncMs);
          const stop = () => {
            clearTimeout(t);
            abort.signal.removeEventListener('abort', stop);
            resolve();
          };
          wake = stop;
          abort.signal.addEventListener('abort', stop, { once: true });
        });
        wake = undefined;
      }
    }
  })();

  return {
    stop: async () => {
      abort.abort();
      wake?.();
      sub.unsubscribe();
      // nats.js types status() as a plain AsyncIterable; the iterator it returns has stop(), which
      // also removes it from the connection's listeners.
      (statuses as unknown as { stop?: () => void }).stop?.();
      await done;
    },
  };
}

export interface StreamFollowerOptions {
  nc: NatsConnection;
  stream: string;
  log: Logger;
  /** Sequence of the last record already held; every catch-up reads on from the one after it. */
  tipSeq: () => number;
  /** `record` is the parsed JSON, or an UnparsableRecord / ForeignSubject marker. */
  onRecord: (seq: number, record: unknown) => RecordOutcome;
  /** Called whenever the follower knows it holds every record the stream had (may repeat). */
  onCaughtUp: () => void;
  retry?: { initialMs: number; maxMs: number };
  resyncMs?: number;
}

/**
 * Follows the record stream by sequence: STREAM.INFO for the last sequence, then STREAM.MSG.GET
 * for each record after the owner's tip. A deleted message shows as the next stored one arriving
 * early, which the owner reports as a missing record; a message on another subject is handed on
 * as a ForeignSubject, which it reports as damage. The stream may not exist yet (the sd creates
 * it): that is retried with backoff.
 */
export function followRecordStream(opts: StreamFollowerOptions): { stop: () => Promise<void>; catchUp: () => Promise<CatchUpResult> } {
  const never = new AbortController().signal;
  const follower = followPokes({
    nc: opts.nc,
    log: opts.log.child({ stream: opts.stream }),
    retry: opts.retry,
    resyncMs: opts.resyncMs,
    catchUp: (signal) => catchUp(signal),
  });
  /**
   * One catch-up now, beside the loop's: safe, since the owner's onRecord answers `old` for what
   * the other already applied, and each reads on only after its own record applied.
   */
  async function catchUp(signal: AbortSignal): Promise<CatchUpResult> {
    const jsm = await jetstreamManager(opts.nc, { checkAPI: false });
    const last = (await jsm.streams.info(opts.stream)).state.last_seq;
    let seq = opts.tipSeq() + 1;
    while (seq <= last && !signal.aborted) {
      const m = await jsm.streams.getMessage(opts.stream, { seq });
      if (signal.aborted) break;
      if (!m) {
        // Not stored (deleted, or purged from the front): the next stored one tells the owner.
        seq += 1;
        continue;
      }
      const outcome = opts.onRecord(m.seq, parseStoredRecord(m.subject, m.data));
      if (outcome === 'stuck') return 'stuck';
      seq = m.seq + 1;
    }
    if (!signal.aborted) opts.onCaughtUp();
    return 'caughtUp';
  }
  return { stop: follower.stop, catchUp: () => catchUp(never) };
}
