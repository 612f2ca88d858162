import { z } from 'zod';
import type { BrokeringOutput, NotifyResult } from '../../machines/brokering.js';
import type { Bus, PreparedReply, ReplyPreparer } from '../bus/bus.js';
import { busFailureOf } from '../bus/bus-errors.js';
import { RpcError, type BrokeringCapacityLimit } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { isRecord, isText, onlyKeys, parseWithTwin } from '../core/shape.js';
import { DEFAULT_MAX_PENDING_BROKERINGS, DEFAULT_MAX_PENDING_BROKERINGS_PER_REQUESTER, DEFAULT_REFUSAL_LOG_INTERVAL_MS } from '../core/constants.js';
import { RefusalLog } from './refusal-log.js';
import { proxyFor } from '../directory/chain.js';
import type { DirectoryEntry } from '../directory/types.js';
import type { LegPass, OpenedSession, SessionInfo, SessionMessengers, SessionOptions } from './session-registry.js';

/** Other sessions not yet spliced up to which A's confirmation is signed ahead of B's dial. */
const PREPARE_WHILE_OTHERS_PENDING_AT_MOST = 1;

/**
 * How far past bDialMs P's forward to B keeps listening for B's answer: enough that the session's
 * own bDialTimeout always fires first (a timer set earlier, a tick ahead), so a forward's bus
 * timeout is never a session's outcome.
 */
const FORWARD_DEADLINE_SLACK_MS = 1_000;

/** A's request to P: connect me to `to`'s gRPC server channel. */
export const connectionRequestSchema = z.strictObject({
  to: z.string().min(1).max(128),
  channel: z.literal('grpc_server').default('grpc_server'),
});

const CONNECTION_REQUEST_KEYS = new Set(['to', 'channel']);
/** connectionRequestSchema's twin (src/core/shape.ts): a cold zod parse on every brokering's path. */
export function connectionRequestTwin(raw: unknown): z.output<typeof connectionRequestSchema> | undefined {
  if (!isRecord(raw) || !onlyKeys(raw, CONNECTION_REQUEST_KEYS) || !isText(raw.to, 1, 128)) return undefined;
  if ('channel' in raw && raw.channel !== 'grpc_server') return undefined;
  return { to: raw.to, channel: 'grpc_server' };
}

/** What P confirms to A once B's socket is held: A's leg token, the challenge its proof signs, and where. */
export interface Confirmation {
  token: string;
  challenge: string;
  endpoint: string;
  sessionId: string;
}

export interface ConnectionRequestsOptions {
  /** The proxy's operator name on the bus. */
  operator: string;
  endpoint: string;
  bDialMs: number;
  bus: Bus;
  directory: { entry(name: string): DirectoryEntry | undefined };
  open: (request: { a: string; b: string; endpoint: string }, via: SessionOptions) => OpenedSession;
  /** Brokered sessions not yet spliced, all requesters together. */
  maxPending?: number;
  /** The same, for one requester (the operator that signed the request). */
  maxPendingPerRequester?: number;
  log: Logger;
}

/**
 * The bus side of brokering. A's connectionRequest stays unanswered while the session brokers:
 * its reply is the confirmation (when the machine reaches bConnected) or the precise reason the
 * session failed before that. Each session gets its own messengers, closed over A's pending reply,
 * so nothing has to look A up by session id.
 */
export class ConnectionRequests {
  #pending = 0;
  readonly #pendingBy = new Map<string, number>();
  readonly #refusals: RefusalLog;

  constructor(private readonly opts: ConnectionRequestsOptions) {
    this.#refusals = new RefusalLog(opts.log, DEFAULT_REFUSAL_LOG_INTERVAL_MS, 'connection request refused: too many brokered sessions not yet spliced');
  }

  /** Brokered sessions not yet spliced, for `requester` or in all. */
  pending(requester?: string): number {
    return requester === undefined ? this.#pending : (this.#pendingBy.get(requester) ?? 0);
  }

  /** Bus handler for `connectionRequest`; `from` is A, proven by its envelope signature. */
  handle = async (params: Record<string, unknown>, from: string, prepare?: ReplyPreparer): Promise<Confirmation | PreparedReply> => {
    const checked = parseWithTwin(connectionRequestSchema, connectionRequestTwin, params);
    if (!checked.success) {
      throw new RpcError('INVALID_PARAMS', checked.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; '));
    }
    const { to } = checked.data;
    if (to === from) throw new RpcError('INVALID_PARAMS', 'an operator cannot ask for a connection to itself');
    const entry = this.opts.directory.entry(to);
    if (!entry) throw new RpcError('UNKNOWN_OPERATOR', to);
    if (proxyFor(entry) !== this.opts.operator) {
      throw new RpcError('PERMISSION_DENIED', `${to} is not reachable through ${this.opts.operator}`);
    }
    // Before B is told: a refused request costs B nothing.
    this.#checkCapacity(from, to);
    return new Promise<Confirmation | PreparedReply>((resolve, reject) => {
      let answered = false;
      let prepared: PreparedReply | undefined;
      const confirmation = (session: SessionInfo, pass: LegPass): Confirmation => ({
        token: pass.token.toString('base64'),
        challenge: pass.challenge.toString('base64'),
        endpoint: session.endpoint,
        sessionId: session.sessionId,
      });
      const messengers: SessionMessengers = {
        notifyB: (session, pass, signal) => this.notifyB(session, pass, signal),
        // Signed while B dials (setImmediate: after the forward to B has gone out), so that B's
        // dial, which A waits on, is followed by a publish rather than by a signature. Only when
        // the proxy is nearly idle: under load B's dial can outlast a prepared reply's 100 ms, and
        // the signature would then be made twice. (Called before this session counts as pending.)
        prepareConfirmation: (session, pass) => {
          if (prepare && this.#pending <= PREPARE_WHILE_OTHERS_PENDING_AT_MOST) {
            setImmediate(() => answered || (prepared = prepare(confirmation(session, pass))));
          }
        },
        confirmToA: async (session, pass) => {
          if (answered) throw new Error('A is no longer waiting for its confirmation');
          answered = true;
          // Out now, within the step that held B's socket, rather than after the machine has
          // finished that step (src/bus/bus.ts, PreparedReply.sendNow); else the bus sends it.
          prepared?.sendNow();
          resolve(prepared ?? confirmation(session, pass));
        },
      };
      const { done, spliced } = this.opts.open({ a: from, b: to, endpoint: this.opts.endpoint }, { messengers });
      this.#hold(from, spliced);
      // Once confirmed, later outcomes reach A as a closed connection. Waiting on `spliced` first,
      // so that a spliced session (possibly idle for hours) keeps nothing of this request alive.
      void spliced.then(async (wasSpliced) => {
        if (wasSpliced || answered) return;
        const output = await done;
        if (answered) return;
        answered = true;
        reject(this.failure(to, output));
      });
    });
  };

  #checkCapacity(from: string, to: string): void {
    const { maxPending = DEFAULT_MAX_PENDING_BROKERINGS, maxPendingPerRequester = DEFAULT_MAX_PENDING_BROKERINGS_PER_REQUESTER } = this.opts;
    const mine = this.pending(from);
    // The requester's own cap first: when both are full, that is the one it can do something about.
    const refusal: { limit: BrokeringCapacityLimit; max: number; detail: string } | undefined =
      mine >= maxPendingPerRequester
        ? { limit: 'requester', max: maxPendingPerRequester, detail: `${from} has ${mine} brokered sessions not yet spliced, its limit of ${maxPendingPerRequester} per requester; retry shortly` }
        : this.#pending >= maxPending
          ? { limit: 'proxy', max: maxPending, detail: `the proxy has ${this.#pending} brokered sessions not yet spliced, its limit of ${maxPending}; retry shortly` }
          : undefined;
    if (!refusal) return;
    // A requester at its cap may keep asking: one line per requester and cap per interval.
    this.#refusals.refused(`${refusal.limit}:${from}`, 'warn', { from, to, limit: refusal.limit, max: refusal.max });
    throw new RpcError('BROKERING_CAPACITY', refusal.detail, { data: { limit: refusal.limit, max: refusal.max } });
  }

  /** Counts a session against its requester until it is spliced or ends. */
  #hold(from: string, spliced: Promise<boolean>): void {
    this.#pending++;
    this.#pendingBy.set(from, (this.#pendingBy.get(from) ?? 0) + 1);
    void spliced.then(() => {
      this.#pending--;
      const left = (this.#pendingBy.get(from) ?? 1) - 1;
      if (left > 0) this.#pendingBy.set(from, left);
      else this.#pendingBy.delete(from);
    });
  }

  /**
   * Forwards A's request to B with B's leg token and the challenge. B dials as it answers, and its
   * socket usually reaches P first: the machine then leaves `requested`, `signal` aborts, and B's
   * late answer is dropped unread instead of costing P a parse and a signature verification.
   */
  private async notifyB(session: SessionInfo, pass: LegPass, signal?: AbortSignal): Promise<NotifyResult> {
    try {
      await this.opts.bus.request(
        session.b,
        'connectionForward',
        {
          requester: session.a,
          token: pass.token.toString('base64'),
          challenge: pass.challenge.toString('base64'),
          endpoint: session.endpoint,
          sessionId: session.sessionId,
        },
        // B answers once its dial is through (machines/callback.ts), so the answer may take as long
        // as B may take to dial. The session's bDialTimeout bounds the wait and stops this request;
        // the bus's own deadline lies past it, so a slow B ends as bNeverDialed (or is spliced),
        // whatever timeouts.busRequestMs says, and notifyB fails only for a bus that is gone.
        this.opts.bDialMs + FORWARD_DEADLINE_SLACK_MS,
        signal,
      );
      return { accepted: true };
    } catch (err) {
      if (!(err instanceof RpcError)) throw err;
      if (err.code === -32002 || err.code === -32001) return { accepted: false, reason: err.detail, notPermitted: true };
      const failure = busFailureOf(err);
      if (failure?.type === 'noResponders') return { accepted: false, reason: `${session.b} is not on the bus` };
      if (failure) throw err; // a bus failure, not B's answer
      return { accepted: false, reason: err.detail };
    }
  }

  private failure(b: string, output: BrokeringOutput): RpcError {
    const detail = output.detail ? `: ${output.detail}` : '';
    const errors: Partial<Record<BrokeringOutput['outcome'], RpcError>> = {
      bRefused: new RpcError('BROKERING_FAILED', `${b} refused the connection${detail}`),
      bNotPermitted: new RpcError('PERMISSION_DENIED', `${this.opts.operator} may not forward connection requests to ${b}${detail}`),
      bNeverDialed: new RpcError('BROKERING_FAILED', `${b} never dialed the proxy within ${this.opts.bDialMs} ms`),
      busFailed: new RpcError('BROKERING_FAILED', `the bus failed while brokering${detail}`),
      shutDown: new RpcError('BROKERING_FAILED', 'the proxy is shutting down'),
    };
    return errors[output.outcome] ?? new RpcError('BROKERING_FAILED', `session ended as ${output.outcome}${detail}`);
  }
}
