import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { RpcError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { subjectToken, whenConnected } from '../core/nats.js';
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

export type BusHandler = (params: Record<string, unknown>, from: string) => Promise<unknown>;

export interface BusOptions {
  nc: NatsConnection;
  signer: Signer;
  directory: BusDirectory;
  log: Logger;
  maxAgeMs: number;
  maxBytes: number;
  requestTimeoutMs: number;
}

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
    try {
      result = await handler(env.params, env.from);
    } catch (err) {
      const rpcErr = err instanceof RpcError ? err : new RpcError('INTERNAL_ERROR');
      if (!(err instanceof RpcError)) log.error({ err, method, from: env.from }, 'bus handler failed');
      return this.reply(msg, env.id, env.from, rpcErr);
    }
    return this.reply(msg, env.id, env.from, undefined, result);
  }

  private async reply(msg: Msg, id: string | undefined, to: string, error?: RpcError, result?: unknown): Promise<void> {
    if (!msg.reply) return;
    // A reply published while disconnected would be silently dropped; the requester may still be
    // waiting (it has its own timeout), so send it once the bus is back.
    if (!(await whenConnected(this.opts.nc, this.opts.requestTimeoutMs))) {
      this.opts.log.warn({ to, id }, 'bus reply not sent: the bus stayed disconnected');
      return;
    }
    const env = sealEnvelope<ResponseEnvelope>(this.opts.signer, {
      kind: 'response',
      from: this.self,
      to,
      id: id ?? 'unknown',
      ...(error ? { error: error.toWire() } : { result: result ?? null }),
    });
    try {
      msg.respond(JSON.stringify(env));
    } catch (err) {
      this.opts.log.warn({ err }, 'bus reply could not be sent');
    }
  }

  /**
   * Calls `to.method` and returns its result; a refusal by the peer arrives as its RpcError, a
   * bus failure (no responder, timeout, disconnect) as PEER_UNREACHABLE or PEER_TIMEOUT.
   */
  async request(to: string, method: string, params: Record<string, unknown>, timeoutMs = this.opts.requestTimeoutMs): Promise<unknown> {
    const id = randomUUID();
    const startedAt = Date.now();
    // Published while disconnected, the request would be dropped and only time out: wait for the
    // bus within the same deadline, so a short outage costs a delay and a long one a clear error.
    if (!(await whenConnected(this.opts.nc, timeoutMs))) {
      throw new RpcError('PEER_UNREACHABLE', `${to}.${method}: the bus is disconnected (not back within ${timeoutMs} ms)`);
    }
    const remainingMs = Math.max(1, timeoutMs - (Date.now() - startedAt));
    const env = sealEnvelope<RequestEnvelope>(this.opts.signer, { kind: 'request', from: this.self, to, id, method, params });
    let msg: Msg;
    try {
      msg = await this.opts.nc.request(busSubject(to, method), JSON.stringify(env), { timeout: remainingMs });
    } catch (err) {
      const text = String((err as Error).message ?? err);
      if (/timeout/i.test(text) || (err as Error).name === 'TimeoutError') {
        throw new RpcError('PEER_TIMEOUT', `${to}.${method}: no answer on the bus within ${timeoutMs} ms`, { cause: err });
      }
      if (/no responders/i.test(text) || (err as Error).name === 'NoRespondersError') {
        throw new RpcError('PEER_UNREACHABLE', `${to}.${method}: nobody serves it on the bus`, { cause: err });
      }
      throw new RpcError('PEER_UNREACHABLE', `${to}.${method}: bus failure: ${text}`, { cause: err });
    }
    const checked = this.open(msg.data);
    if (!checked.ok) {
      this.opts.log.warn({ to, method, refusal: checked.code, detail: checked.detail }, 'bus reply rejected');
      throw new RpcError('PEER_UNREACHABLE', `${to}.${method}: reply rejected (${checked.code}: ${checked.detail})`);
    }
    const reply = checked.envelope;
    if (reply.kind !== 'response' || reply.from !== to || reply.id !== id) {
      throw new RpcError('PEER_UNREACHABLE', `${to}.${method}: reply does not answer this request`);
    }
    if (reply.error) throw RpcError.fromWire(reply.error);
    return reply.result;
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
