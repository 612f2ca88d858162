import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import type { NatsConnection } from '../core/nats.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { callJsonRpc } from '../jsonrpc/client.js';
import { DirectoryState, isPermitted, type Tip } from './chain.js';
import { applyNext, damageMessage, isNewDamage, type ChainDamage } from './damage.js';
import { DEFAULT_FOLLOW_RETRY, followPokes, followRecordStream, sleep, type CatchUpResult, type RecordOutcome } from './follower.js';
import { DEFAULT_SD_STREAM } from './stream-names.js';
import type { SignerPolicy } from './records.js';
import { signedRecordSchema, type ChainedRecord, type DirectoryEntry } from './types.js';

export { DEFAULT_SD_STREAM, SD_RECORDS_SUBJECT } from './stream-names.js';
export { followRecordStream, type RecordOutcome } from './follower.js';

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
  /**
   * Where records come from after a poke: `stream` reads the directory stream by sequence (the
   * processes of the OPS account, which may read it); `sd` asks the sd's getRecords over HTTPS
   * (games, whose account holds no directory stream and only receives the pokes).
   */
  catchUp?: 'stream' | 'sd';
  retry?: { initialMs: number; maxMs: number };
  resyncMs?: number;
}

export type ChangeListener = (record: ChainedRecord) => void;

/**
 * A server's cached copy of the directory. It loads the chain from the sd over HTTPS and, on each
 * poke on the records' subject, catches up from the stream or from the sd (see `catchUp`), checking every record itself: neither the sd nor the bus is
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
  private loaded = false;

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
    if (this.opts.catchUp === 'sd') {
      this.follower = followPokes({
        nc: this.opts.nc,
        log: this.log,
        retry: this.opts.retry,
        resyncMs: this.opts.resyncMs,
        catchUp: () => this.fetchOnce(),
      });
      return;
    }
    this.follower = followRecordStream({
      nc: this.opts.nc,
      stream: this.stream,
      log: this.log,
      retry: this.opts.retry,
      resyncMs: this.opts.resyncMs,
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
    const retry = this.opts.retry ?? DEFAULT_FOLLOW_RETRY;
    let wait = retry.initialMs;
    while (!this.abort.signal.aborted) {
      try {
        await this.fetchOnce();
        return;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.log.warn({ err: (err as Error).message, url: this.opts.url, retryInMs: wait }, 'cannot load the directory from the sd yet');
      }
      await sleep(wait, this.abort.signal);
      wait = Math.min(wait * 2, retry.maxMs);
    }
  }

  /** Asks the sd for the records after our tip and applies them; throws when the sd cannot answer. */
  private async fetchOnce(): Promise<CatchUpResult> {
    const result = await callJsonRpc({ url: this.opts.url, serverName: this.opts.serverName, tls: this.opts.tls }, 'getRecords', {
      after: this.state.tip().seq,
    });
    if (this.abort.signal.aborted) return 'caughtUp';
    const checked = getRecordsResultSchema.safeParse(result);
    if (!checked.success) throw new Error(`getRecords answered an unexpected shape: ${checked.error.message}`);
    for (const c of checked.data.records) {
      if (this.accept(c.seq, c.record, 'sd') === 'stuck') return 'stuck';
    }
    const first = !this.loaded;
    this.loaded = true;
    this.markReady();
    if (first) this.log.info({ tip: this.state.tip() }, 'directory loaded from the sd');
    return 'caughtUp';
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
