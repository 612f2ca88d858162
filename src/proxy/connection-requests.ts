import { z } from 'zod';
import type { BrokeringOutput, NotifyResult } from '../../machines/brokering.js';
import type { Bus } from '../bus/bus.js';
import { busFailureOf } from '../bus/bus-errors.js';
import { RpcError } from '../core/errors.js';
import { proxyFor } from '../directory/chain.js';
import type { DirectoryEntry } from '../directory/types.js';
import type { LegPass, OpenedSession, SessionInfo, SessionMessengers, SessionOptions } from './session-registry.js';

/** A's request to P: connect me to `to`'s gRPC server channel. */
export const connectionRequestSchema = z.strictObject({
  to: z.string().min(1).max(128),
  channel: z.literal('grpc_server').default('grpc_server'),
});

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
}

/**
 * The bus side of brokering. A's connectionRequest stays unanswered while the session brokers:
 * its reply is the confirmation (when the machine reaches bConnected) or the precise reason the
 * session failed before that. Each session gets its own messengers, closed over A's pending reply,
 * so nothing has to look A up by session id.
 */
export class ConnectionRequests {
  constructor(private readonly opts: ConnectionRequestsOptions) {}

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
      let answered = false;
      const messengers: SessionMessengers = {
        notifyB: (session, pass) => this.notifyB(session, pass),
        confirmToA: async (session, pass) => {
          if (answered) throw new Error('A is no longer waiting for its confirmation');
          answered = true;
          resolve({ token: pass.token.toString('base64'), challenge: pass.challenge.toString('base64'), endpoint: session.endpoint, sessionId: session.sessionId });
        },
      };
      const { done } = this.opts.open({ a: from, b: to, endpoint: this.opts.endpoint }, { messengers });
      void done.then((output) => {
        // Once confirmed, later outcomes reach A as a closed connection.
        if (answered) return;
        answered = true;
        reject(this.failure(to, output));
      });
    });
  };

  /** Forwards A's request to B with B's leg token and the challenge. */
  private async notifyB(session: SessionInfo, pass: LegPass): Promise<NotifyResult> {
    try {
      await this.opts.bus.request(session.b, 'connectionForward', {
        requester: session.a,
        token: pass.token.toString('base64'),
        challenge: pass.challenge.toString('base64'),
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
