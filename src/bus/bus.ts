import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { RpcError } from '../core/errors.js';
import { BusError, classifyNatsError } from './bus-errors.js';
import type { Logger } from '../core/logger.js';
import { isBusConnected, subjectToken, whenConnected } from '../core/nats.js';
import { timelineMark } from '../core/timeline.js';
import {
  ReplayCache,
  openEnvelope,
  sealEnvelope,
  type EnvelopeRefusal,
  type RequestEnvelope,
  type ResponseEnvelope,
  type Signer,
} from './envelope.js';

/** What the bus needs from the directory: certificates to verify senders, permissions to admit calls. */
export interface BusDirectory {
  entry(name: string): { certificate: string; fingerprint: string } | undefined;
  isPermitted(caller: string, target: string, method: string): boolean;
}

/**
 * A handler's answer, sealed before the handler is done: a reply whose content is fixed early
 * (the proxy's confirmation is, from the moment the session opens) can be signed while the process
 * would otherwise wait, so that sending it later costs no signature. Made by `ReplyPreparer`.
 */
export class PreparedReply {
  #sent = false;

  /** @internal */
  constructor(
    readonly result: unknown,
    readonly envelope: ResponseEnvelope,
    readonly sealedAt: number,
    private readonly publish: (reply: PreparedReply) => boolean = () => false,
  ) {}

  /**
   * Sends it now, from inside the handler, when it still fits its request and the bus is up: the
   * reply then leaves within the step that decided it, instead of once the handler's promise has
   * settled and whatever was queued before that has run (the proxy's machine finishing the step
   * that held B's socket: ~0.5 ms cold). False when it cannot; the handler then resolves with it
   * and the bus sends it, or a fresh seal of its result, as any other reply. Sent at most once.
   */
  sendNow(): boolean {
    if (!this.#sent) this.#sent = this.publish(this);
    return this.#sent;
  }

  get sent(): boolean {
    return this.#sent;
  }
}

/** Seals `result` now as the reply to the request being handled. */
export type ReplyPreparer = (result: unknown) => PreparedReply;

/** Resolves with the result, or with a PreparedReply of it (sent as sealed, unless it has aged). */
export type BusHandler = (params: Record<string, unknown>, from: string, prepare?: ReplyPreparer) => Promise<unknown>;

/**
 * A prepared reply older than this (or than a quarter of the bus's own freshness window, when that
 * is shorter) is sealed again when sent: its timestamp must stay well inside the receiver's
 * freshness window, whatever the handler waited for meanwhile. The receiver's window is its own
 * setting, and it is also the clock-skew allowance between the two: every millisecond a reply
 * waits sealed is taken from it. What waiting saves is one signature (well under a millisecond),
 * worth it only on a fast path (B's dial, a few ms), so the bound is short: a handler that waited
 * longer pays the signature rather than the receiver's margin.
 */
const PREPARED_REPLY_MAX_AGE_MS = 100;

/** Whether a prepared reply may go out as sealed: to this very request, and still fresh. */
export function preparedFits(prepared: PreparedReply, id: string | undefined, to: string, now: number, maxAgeMs: number): boolean {
  const fresh = now - prepared.sealedAt <= Math.min(PREPARED_REPLY_MAX_AGE_MS, maxAgeMs / 4);
  return prepared.envelope.id === id && prepared.envelope.to === to && fresh;
}

export interface BusOptions {
  nc: NatsConnection;
  signer: Signer;
  directory: BusDirectory;
  log: Logger;
  maxAgeMs: number;
  maxBytes: number;
  requestTimeoutMs: number;
}

type ReplyCheck = { ok: true; envelope: ResponseEnvelope } | { ok: false; code: string; detail: string };

/** Methods are tokens in a subject, so they must not contain the subject separators. */
const METHOD_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function busSubject(operator: string, method: string): string {
  return `eps.op.${subjectToken(operator)}.${method}`;
}

const refusalCodes: Record<EnvelopeRefusal['code'], ConstructorParameters<typeof RpcError>[0]> = {
  MALFORMED: 'INVALID_REQUEST',
  OVERSIZED: 'INVALID_REQUEST',
  UNKNOWN_SENDER: 'UNKNOWN_OPERATOR',
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  STALE: 'BAD_SIGNATURE',
  REPLAYED: 'BAD_SIGNATURE',
  MISADDRESSED: 'INVALID_REQUEST',
};

/**
 * An operator's presence on the bus (the EPS message system): signed request/response envelopes
 * over NATS request-reply, one subject per operator and method.
 */
export class Bus {
  private readonly replay = new ReplayCache();
  private readonly subs: Subscription[] = [];

  constructor(private readonly opts: BusOptions) {}

  get self(): string {
    return this.opts.signer.name;
  }

  /**
   * Serves `method` for this operator. Several processes may serve the same method in one queue
   * group (proxy instances): NATS then hands each request to exactly one of them.
   */
  serve(method: string, handler: BusHandler, options: { queue?: string } = {}): void {
    if (!METHOD_NAME.test(method)) throw new Error(`bus method ${method} is not a valid subject token`);
    const sub = this.opts.nc.subscribe(busSubject(this.self, method), {
      ...(options.queue ? { queue: options.queue } : {}),
      callback: (err, msg) => {
        timelineMark(`bus.in ${method}`);
        if (err) return this.opts.log.error({ err, method }, 'bus subscription failed');
        this.handle(method, msg, handler).catch((e) => this.opts.log.error({ err: e, method }, 'bus handler crashed'));
      },
    });
    this.subs.push(sub);
  }

  private async handle(method: string, msg: Msg, handler: BusHandler): Promise<void> {
    const log = this.opts.log;
    const checked = this.open(msg.data);
    if (!checked.ok) {
      log.warn({ method, refusal: checked.code, detail: checked.detail }, 'bus envelope rejected');
      const { id, from } = bestEffortAddress(msg.data);
      return this.reply(msg, id, from, new RpcError(refusalCodes[checked.code], `${checked.code}: ${checked.detail}`));
    }
    const env = checked.envelope;
    if (env.kind !== 'request' || env.method !== method) {
      log.warn({ method, from: env.from }, 'bus envelope is not a request for this subject');
      return this.reply(msg, env.id, env.from, new RpcError('INVALID_REQUEST', `envelope is not a ${method} request`));
    }
    if (!this.opts.directory.isPermitted(env.from, this.self, method)) {
      log.warn({ method, from: env.from }, 'bus call not permitted by the directory');
      return this.reply(msg, env.id, env.from, new RpcError('PERMISSION_DENIED', `${env.from} may not call ${this.self}.${method}`));
    }
    let result: unknown;
    const prepare: ReplyPreparer = (value) =>
      new PreparedReply(value, this.sealReply(env.id, env.from, undefined, value), Date.now(), (reply) => this.sendPrepared(msg, reply, env.id, env.from));
    try {
      result = await handler(env.params, env.from, prepare);
    } catch (err) {
      const rpcErr = err instanceof RpcError ? err : new RpcError('INTERNAL_ERROR');
      if (!(err instanceof RpcError)) log.error({ err, method, from: env.from }, 'bus handler failed');
      return this.reply(msg, env.id, env.from, rpcErr);
    }
    if (result instanceof PreparedReply && result.sent) return; // it went out from inside the handler
    return this.reply(msg, env.id, env.from, undefined, result);
  }

  /** PreparedReply.sendNow: publishes at once, or says it cannot (stale, misfit, bus down, no reply subject). */
  private sendPrepared(msg: Msg, reply: PreparedReply, id: string, to: string): boolean {
    if (!msg.reply || !isBusConnected(this.opts.nc) || !preparedFits(reply, id, to, Date.now(), this.opts.maxAgeMs)) return false;
    try {
      msg.respond(JSON.stringify(reply.envelope));
      timelineMark('bus.answer');
      return true;
    } catch (err) {
      this.opts.log.warn({ err }, 'prepared bus reply could not be sent now; sending it as a reply');
      return false;
    }
  }

  private async reply(msg: Msg, id: string | undefined, to: string, error?: RpcError, result?: unknown): Promise<void> {
    if (!msg.reply) return;
    // A reply published while disconnected would be silently dropped; the requester may still be
    // waiting (it has its own timeout), so send it once the bus is back.
    if (!(await whenConnected(this.opts.nc, this.opts.requestTimeoutMs))) {
      this.opts.log.warn({ to, id }, 'bus reply not sent: the bus stayed disconnected');
      return;
    }
    const prepared = !error && result instanceof PreparedReply ? result : undefined;
    const env =
      prepared && preparedFits(prepared, id, to, Date.now(), this.opts.maxAgeMs) ? prepared.envelope : this.sealReply(id, to, error, prepared ? prepared.result : result);
    try {
      msg.respond(JSON.stringify(env));
      timelineMark('bus.answer');
    } catch (err) {
      this.opts.log.warn({ err }, 'bus reply could not be sent');
    }
  }

  private sealReply(id: string | undefined, to: string, error: RpcError | undefined, result: unknown): ResponseEnvelope {
    return sealEnvelope<ResponseEnvelope>(this.opts.signer, {
      kind: 'response',
      from: this.self,
      to,
      id: id ?? 'unknown',
      ...(error ? { error: error.toWire() } : { result: result ?? null }),
    });
  }

  /**
   * Calls `to.method` and returns its result; a refusal by the peer arrives as its RpcError, a
   * bus failure as a BusError (see bus-errors.ts). Whoever can publish on the bus can answer a
   * request first, so a reply that does not verify, or verifies but does not answer this request
   * from `to`, is logged and skipped: the call keeps waiting for the real answer until its deadline.
   * Once `signal` aborts (the caller no longer needs the answer), the call stops listening: a reply
   * still to come is dropped by NATS unread, so no signature is verified for nobody. The call then
   * rejects with the signal's reason.
   */
  async request(to: string, method: string, params: Record<string, unknown>, timeoutMs = this.opts.requestTimeoutMs, signal?: AbortSignal): Promise<unknown> {
    const target = `${to}.${method}`;
    const id = randomUUID();
    const startedAt = Date.now();
    // Published while disconnected, the request would be dropped and only time out: wait for the
    // bus within the same deadline, so a short outage costs a delay and a long one a clear error.
    if (!(await whenConnected(this.opts.nc, timeoutMs))) {
      throw new BusError(target, { type: 'disconnected', waitedMs: timeoutMs });
    }
    if (signal?.aborted) throw signal.reason;
    const remainingMs = Math.max(1, timeoutMs - (Date.now() - startedAt));
    const env = sealEnvelope<RequestEnvelope>(this.opts.signer, { kind: 'request', from: this.self, to, id, method, params });
    let answer: ResponseEnvelope | undefined;
    let rejected = 0;
    let lastRefusal = '';
    try {
      // The timer strategy collects every reply until the deadline; we stop at the first valid one.
      const subject = busSubject(to, method);
      timelineMark(`bus.request ${method}`);
      const replies = await this.opts.nc.requestMany(subject, JSON.stringify(env), { maxWait: remainingMs, strategy: 'timer' });
      // Stopping the iterator ends the loop below and unregisters the request's inbox. (nats.js
      // returns a QueuedIterator, typed only as AsyncIterable: without stop(), the check at the top
      // of the loop still skips whatever comes.)
      const stop = (): void => (replies as { stop?: () => void }).stop?.();
      signal?.addEventListener('abort', stop, { once: true });
      try {
        for await (const msg of replies) {
          // A reply queued before the abort is not checked either.
          if (signal?.aborted) break;
          const checked = this.checkReply(msg.data, to, id);
          if (checked.ok) {
            answer = checked.envelope;
            timelineMark(`bus.answered ${method}`);
            break;
          }
          rejected += 1;
          lastRefusal = `${checked.code}: ${checked.detail}`;
          const { code: refusal, detail } = checked;
          this.opts.log.warn({ to, method, id, refusal, detail, rejected }, 'bus reply rejected; still waiting for a valid one');
        }
      } finally {
        signal?.removeEventListener('abort', stop);
      }
    } catch (err) {
      throw new BusError(target, classifyNatsError(err, timeoutMs), { cause: err });
    }
    if (!answer && signal?.aborted) throw signal.reason;
    if (!answer) {
      const waitedMs = timeoutMs;
      throw new BusError(target, rejected > 0 ? { type: 'replyRejected', waitedMs, rejected, lastRefusal } : { type: 'timeout', waitedMs });
    }
    if (answer.error) throw RpcError.fromWire(answer.error);
    return answer.result;
  }

  /** A reply counts only if it verifies and is `to`'s response to request `id`. */
  private checkReply(data: Uint8Array, to: string, id: string): ReplyCheck {
    const checked = this.open(data);
    if (!checked.ok) return checked;
    const reply = checked.envelope;
    if (reply.kind !== 'response') return { ok: false, code: 'NOT_A_RESPONSE', detail: `a ${reply.kind} envelope from ${reply.from}` };
    if (reply.from !== to) return { ok: false, code: 'WRONG_SENDER', detail: `signed by ${reply.from}, not ${to}` };
    if (reply.id !== id) return { ok: false, code: 'WRONG_ID', detail: `answers request ${reply.id}, not ${id}` };
    return { ok: true, envelope: reply };
  }

  /** Both directions check envelopes the same way: requests served and replies received. */
  private open(data: Uint8Array) {
    return openEnvelope(data, {
      self: this.self,
      certificateOf: (op) => this.opts.directory.entry(op),
      replay: this.replay,
      maxAgeMs: this.opts.maxAgeMs,
      maxBytes: this.opts.maxBytes,
    });
  }

  close(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs.length = 0;
  }

  /**
   * Stops serving without dropping what was already delivered: NATS unsubscribes (so a queue
   * group's next request goes to another member) and the requests already received are handled.
   * Bounded by `timeoutMs`, as a drain waits for the server's acknowledgement and the bus may be away.
   */
  async drain(timeoutMs: number): Promise<void> {
    const subs = this.subs.splice(0);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([Promise.all(subs.map((s) => s.drain().catch(() => s.unsubscribe()))), late]);
    clearTimeout(timer);
    for (const s of subs) if (!s.isClosed()) s.unsubscribe();
  }
}

/** The id and sender of an envelope that failed its checks, so the refusal reaches its sender. */
function bestEffortAddress(data: Uint8Array): { id: string | undefined; from: string } {
  try {
    const raw = JSON.parse(Buffer.from(data).toString('utf8')) as { id?: unknown; from?: unknown };
    const short = (v: unknown) => (typeof v === 'string' && v.length <= 128 ? v : undefined);
    return { id: short(raw.id), from: short(raw.from) ?? 'unknown' };
  } catch {
    return { id: undefined, from: 'unknown' };
  }
}
