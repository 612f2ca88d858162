import { z } from 'zod';
import type { BrokeringOutput, NotifyResult } from '../../machines/brokering.js';
import type { Bus } from '../bus/bus.js';
import { busFailureOf } from '../bus/bus-errors.js';
import { RpcError } from '../core/errors.js';
import { proxyFor } from '../directory/chain.js';
import type { DirectoryEntry } from '../directory/types.js';
import type { SessionInfo } from './session-registry.js';

/** A's request to P: connect me to `to`'s gRPC server channel. */
export const connectionRequestSchema = z.strictObject({
  to: z.string().min(1).max(128),
  channel: z.literal('grpc_server').default('grpc_server'),
});

/** What P confirms to A once B's socket is held: the token to present and where. */
export interface Confirmation {
  token: string;
  endpoint: string;
  sessionId: string;
}

interface Pending {
  resolve: (c: Confirmation) => void;
  reject: (e: RpcError) => void;
}

export interface ConnectionRequestsOptions {
  /** The proxy's operator name on the bus. */
  operator: string;
  endpoint: string;
  bDialMs: number;
  bus: Bus;
  directory: { entry(name: string): DirectoryEntry | undefined };
  open: (request: { a: string; b: string; endpoint: string }) => { sessionId: string; done: Promise<BrokeringOutput> };
}

/**
 * The bus side of brokering. A's connectionRequest stays unanswered while the session brokers:
 * its reply is the confirmation (when the machine reaches bConnected) or the precise reason the
 * session failed before that.
 */
export class ConnectionRequests {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly opts: ConnectionRequestsOptions) {}

  get waiting(): number {
    return this.pending.size;
  }

  /** Bus handler for `connectionRequest`; `from` is A, proven by its envelope signature. */
  handle = async (params: Record<string, unknown>, from: string): Promise<Confirmation> => {
    const checked = connectionRequestSchema.safeParse(params);
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
    return new Promise<Confirmation>((resolve, reject) => {
      const { sessionId, done } = this.opts.open({ a: from, b: to, endpoint: this.opts.endpoint });
      this.pending.set(sessionId, { resolve, reject });
      void done.then((output) => this.settleFailure(sessionId, to, output));
    });
  };

  /** Provided to the session registry: forwards A's request to B with the token. */
  notifyB = async (session: SessionInfo, token: Buffer): Promise<NotifyResult> => {
    try {
      await this.opts.bus.request(session.b, 'connectionForward', {
        requester: session.a,
        token: token.toString('base64'),
        endpoint: session.endpoint,
        sessionId: session.sessionId,
      });
      return { accepted: true };
    } catch (err) {
      if (!(err instanceof RpcError)) throw err;
      if (err.code === -32002 || err.code === -32001) return { accepted: false, reason: err.detail, notPermitted: true };
      const failure = busFailureOf(err);
      if (failure?.type === 'noResponders') return { accepted: false, reason: `${session.b} is not on the bus` };
      if (failure) throw err; // a bus failure, not B's answer
      return { accepted: false, reason: err.detail };
    }
  };

  /** Provided to the session registry: answers A's pending request with the confirmation. */
  confirmToA = async (session: SessionInfo, token: Buffer, endpoint: string): Promise<void> => {
    const waiting = this.pending.get(session.sessionId);
    if (!waiting) throw new Error('A is no longer waiting for its confirmation');
    this.pending.delete(session.sessionId);
    waiting.resolve({ token: token.toString('base64'), endpoint, sessionId: session.sessionId });
  };

  private settleFailure(sessionId: string, b: string, output: BrokeringOutput): void {
    const waiting = this.pending.get(sessionId);
    if (!waiting) return; // already confirmed: later outcomes reach A as a closed connection
    this.pending.delete(sessionId);
    const detail = output.detail ? `: ${output.detail}` : '';
    const errors: Partial<Record<BrokeringOutput['outcome'], RpcError>> = {
      bRefused: new RpcError('BROKERING_FAILED', `${b} refused the connection${detail}`),
      bNotPermitted: new RpcError('PERMISSION_DENIED', `${this.opts.operator} may not forward connection requests to ${b}${detail}`),
      bNeverDialed: new RpcError('BROKERING_FAILED', `${b} never dialed the proxy within ${this.opts.bDialMs} ms`),
      busFailed: new RpcError('BROKERING_FAILED', `the bus failed while brokering${detail}`),
      shutDown: new RpcError('BROKERING_FAILED', 'the proxy is shutting down'),
    };
    waiting.reject(errors[output.outcome] ?? new RpcError('BROKERING_FAILED', `session ended as ${output.outcome}${detail}`));
  }
}
