import { jetstream, jetstreamManager, JetStreamApiCodes, JetStreamApiError, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { z } from 'zod';
import { second } from '../core/constants.js';
import type { Logger } from '../core/logger.js';
import type { NatsConnection } from '../core/nats.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { callJsonRpc } from '../jsonrpc/client.js';
import { DirectoryState, isPermitted, type Tip } from './chain.js';
import { applyNext, damageMessage, isNewDamage, UnparsableRecord, type ChainDamage } from './damage.js';
import type { SignerPolicy } from './records.js';
import { signedRecordSchema, type ChainedRecord, type DirectoryEntry } from './types.js';

/** The subject the sd publishes accepted records on; the stream captures exactly this subject. */
export const SD_RECORDS_SUBJECT = 'eps.sd.records';
/** Same default as `sdSettingsSchema.stream`: clients have no sd settings to read it from. */
export const DEFAULT_SD_STREAM = 'EPS_SD_RECORDS';

/** First wait after a failed fetch or a missing stream; doubles up to the maximum. */
const DEFAULT_RETRY_INITIAL_MS = 250;
/** Long enough not to hammer a down sd, short enough that a starting demo syncs within seconds. */
const DEFAULT_RETRY_MAX_MS = 5 * second;

const sleep = (ms: number, signal: AbortSignal) =>
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

/**
 * What the follower's owner did with a record: `old` (already held), `applied`, or `stuck` (the
 * record does not extend the chain, or a record is missing before it). After `stuck` the follower
 * drops its consumer and, with backoff, starts again after the owner's tip: a damaged record is
 * read again until an operator repairs the stream, and then the repaired stream is followed.
 */
export type RecordOutcome = 'old' | 'applied' | 'stuck';

export interface StreamFollowerOptions {
  nc: NatsConnection;
  stream: string;
  log: Logger;
  /** Sequence of the last record already held; the follower resumes after it on every restart. */
  tipSeq: () => number;
  /** `record` is the parsed JSON, or an UnparsableRecord. */
  onRecord: (seq: number, record: unknown) => RecordOutcome;
  /** Called whenever the follower knows it holds every record the stream had (may repeat). */
  onCaughtUp: () => void;
  retry?: { initialMs: number; maxMs: number };
}

/**
 * Follows the record stream with an ordered consumer: the server pushes each record as it is
 * stored, and the library recreates the consumer from the last seen sequence after a gap or a
 * reconnect, so nothing is missed without polling. The stream may not exist yet (the sd creates
 * it), so creating the consumer is retried with backoff.
 */
export function followRecordStream(opts: StreamFollowerOptions): { stop: () => Promise<void> } {
  const abort = new AbortController();
  const retry = opts.retry ?? { initialMs: DEFAULT_RETRY_INITIAL_MS, maxMs: DEFAULT_RETRY_MAX_MS };
  let messages: ConsumerMessages | undefined;
  const done = (async () => {
    let wait = retry.initialMs;
    let stuck = false;
    const js = jetstream(opts.nc);
    while (!abort.signal.aborted) {
      try {
        const jsm = await jetstreamManager(opts.nc, { checkAPI: false });
        const info = await jsm.streams.info(opts.stream);
        if (info.state.last_seq <= opts.tipSeq()) opts.onCaughtUp();
        const consumer = await js.consumers.get(opts.stream, { opt_start_seq: opts.tipSeq() + 1, filter_subjects: SD_RECORDS_SUBJECT });
        if (abort.signal.aborted) break;
        messages = await consumer.consume({ max_messages: 256 });
        // A consumer that starts is progress, unless the last one stopped at a bad record.
        if (!stuck) wait = retry.initialMs;
        stuck = false;
        for await (const m of messages) {
          const outcome = handle(m);
          if (outcome === 'applied') wait = retry.initialMs;
          if (outcome === 'stuck') {
            stuck = true;
            break;
          }
        }
        if (stuck) await messages.close().catch(() => undefined);
      } catch (err) {
        if (abort.signal.aborted) break;
        const missing = err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
        if (missing) opts.log.debug({ stream: opts.stream }, 'record stream does not exist yet; waiting for the sd');
        else opts.log.warn({ err, stream: opts.stream }, 'following the record stream failed; retrying');
      }
      await sleep(wait, abort.signal);
      wait = Math.min(wait * 2, retry.maxMs);
    }
  })();

  function handle(m: JsMsg): RecordOutcome {
    let record: unknown;
    try {
      record = m.json();
    } catch {
      record = new UnparsableRecord(m.string().slice(0, 200));
    }
    const outcome = opts.onRecord(m.seq, record);
    if (outcome !== 'stuck' && m.info.pending === 0) opts.onCaughtUp();
    return outcome;
  }

  return {
    stop: async () => {
      abort.abort();
      await messages?.close().catch(() => undefined);
      await done;
    },
  };
}

const getRecordsResultSchema = z.object({
  records: z.array(z.object({ seq: z.number().int().positive(), hash: z.string(), record: signedRecordSchema })),
});

export interface DirectoryClientOptions {
  /** The sd's JSON-RPC URL and the name its certificate carries. */
  url: string;
  serverName: string;
  /** This server's own mTLS material; its CA is also the root record signers must chain to. */
  tls: Pick<TlsMaterial, 'ca' | 'cert' | 'key'>;
  nc: NatsConnection;
  log: Logger;
  stream?: string;
  retry?: { initialMs: number; maxMs: number };
}

export type ChangeListener = (record: ChainedRecord) => void;

/**
 * A server's cached copy of the directory. It loads the chain from the sd over HTTPS and follows
 * the JetStream stream for changes, checking every record itself: neither the sd nor the bus is
 * trusted to hand out entries, only the admins' signatures are. Once loaded, entries stay served
 * from memory whether or not the sd is reachable.
 */
export class DirectoryClient {
  private readonly state = new DirectoryState();
  private readonly listeners = new Set<ChangeListener>();
  private readonly policy: SignerPolicy;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private follower: { stop: () => Promise<void> } | undefined;
  private readonly readyPromise: Promise<void>;
  private markReady!: () => void;
  /** The first stored record that does not verify, until a record that does takes its place. */
  private damaged: ChainDamage | undefined;

  private get stream(): string {
    return this.opts.stream ?? DEFAULT_SD_STREAM;
  }

  constructor(private readonly opts: DirectoryClientOptions) {
    this.log = opts.log.child({ component: 'directory-client' });
    // The client holds no admin list; see SignerPolicy for why codeSigning certs are accepted.
    this.policy = { rootCa: opts.tls.ca, anyCodeSigningCert: true };
    this.readyPromise = new Promise((resolve) => (this.markReady = resolve));
  }

  /** Starts syncing; does not wait for the sd (see `ready()`). */
  start(): void {
    if (this.follower) return;
    this.follower = followRecordStream({
      nc: this.opts.nc,
      stream: this.stream,
      log: this.log,
      retry: this.opts.retry,
      tipSeq: () => this.state.tip().seq,
      onRecord: (seq, record) => this.accept(seq, record, 'stream'),
      onCaughtUp: () => this.markReady(),
    });
    void this.fetchUntilLoaded();
  }

  /** Resolves once the chain was loaded, from the sd or from the stream, whichever answers first. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  entry(name: string): DirectoryEntry | undefined {
    return this.state.entry(name);
  }

  entries(): DirectoryEntry[] {
    return [...this.state.entries().values()];
  }

  isPermitted(caller: string, target: string, method: string): boolean {
    return isPermitted(this.state.entries(), caller, target, method);
  }

  tip(): Tip {
    return this.state.tip();
  }

  /** Set while the chain stops at a record that does not verify; entries are those before it. */
  damage(): ChainDamage | undefined {
    return this.damaged;
  }

  /** Called for every record applied after this call; returns the function that unsubscribes. */
  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.follower?.stop();
    // An in-flight fetch is not awaited (a blackholed sd holds it for the call timeout); it
    // notices the abort and applies nothing.
    this.listeners.clear();
  }

  private async fetchUntilLoaded(): Promise<void> {
    const retry = this.opts.retry ?? { initialMs: DEFAULT_RETRY_INITIAL_MS, maxMs: DEFAULT_RETRY_MAX_MS };
    let wait = retry.initialMs;
    while (!this.abort.signal.aborted) {
      try {
        const result = await callJsonRpc(
          { url: this.opts.url, serverName: this.opts.serverName, tls: this.opts.tls },
          'getRecords',
          { after: this.state.tip().seq },
        );
        if (this.abort.signal.aborted) return;
        const checked = getRecordsResultSchema.safeParse(result);
        if (!checked.success) throw new Error(`getRecords answered an unexpected shape: ${checked.error.message}`);
        for (const c of checked.data.records) this.accept(c.seq, c.record, 'sd');
        this.markReady();
        this.log.info({ tip: this.state.tip() }, 'directory loaded from the sd');
        return;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.log.warn({ err: (err as Error).message, url: this.opts.url, retryInMs: wait }, 'cannot load the directory from the sd yet');
      }
      await sleep(wait, this.abort.signal);
      wait = Math.min(wait * 2, retry.maxMs);
    }
  }

  /** Both channels deliver the same records; whichever comes first applies, the other is skipped. */
  private accept(seq: number, raw: unknown, via: 'sd' | 'stream'): RecordOutcome {
    const tip = this.state.tip().seq;
    if (seq <= tip) return 'old';
    const result = applyNext(this.state, this.stream, seq, raw, this.policy);
    if (!result.ok) {
      const d = result.damage;
      if (isNewDamage(this.damaged, d)) {
        this.damaged = d;
        this.log.error({ stream: d.stream, seq: d.seq, code: d.code, detail: d.detail, via }, damageMessage(d));
      }
      // What verified is all there is: serve it rather than wait for a repair.
      this.markReady();
      return 'stuck';
    }
    if (this.damaged) {
      this.log.info({ stream: this.stream, seq }, 'the directory stream was repaired; following it again');
      this.damaged = undefined;
    }
    const { chained } = result.status;
    this.log.debug({ seq, kind: chained.record.data.kind, via }, 'directory record applied');
    for (const l of this.listeners) {
      try {
        l(chained);
      } catch (err) {
        this.log.error({ err }, 'directory change listener failed');
      }
    }
    return 'applied';
  }
}
