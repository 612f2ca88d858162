import { NoRespondersError, PermissionViolationError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { RpcError, type JsonRpcErrorName } from '../core/errors.js';

// Why a bus request failed, as a value: callers branch on `failure.type`, never on message text,
// and this file is the only place that looks at what nats.js threw.

export type BusFailure =
  /** Nothing subscribes to the subject: the peer is not on the bus (NATS answered 503 at once). */
  | { type: 'noResponders' }
  /** Nothing answered within the deadline. */
  | { type: 'timeout'; waitedMs: number }
  /**
   * Replies came but none verified (junk, forged, misaddressed, replayed, answering another
   * request), and no valid one followed before the deadline. Each was logged when it arrived.
   */
  | { type: 'replyRejected'; waitedMs: number; rejected: number; lastRefusal: string }
  /** The connection was down for the whole deadline, closed, or draining. */
  | { type: 'disconnected'; waitedMs?: number; detail?: string }
  /** The server refused our publish or our inbox subscription (per-principal permissions). */
  | { type: 'notPermitted'; detail: string };

const codes: Record<BusFailure['type'], JsonRpcErrorName> = {
  noResponders: 'PEER_UNREACHABLE',
  timeout: 'PEER_TIMEOUT',
  // The deadline passed without a valid answer: for the caller that is a timeout, whoever else spoke.
  replyRejected: 'PEER_TIMEOUT',
  disconnected: 'PEER_UNREACHABLE',
  notPermitted: 'PEER_UNREACHABLE',
};

function describe(f: BusFailure): string {
  switch (f.type) {
    case 'noResponders':
      return 'nobody serves it on the bus';
    case 'timeout':
      return `no answer on the bus within ${f.waitedMs} ms`;
    case 'replyRejected':
      return `no valid answer on the bus within ${f.waitedMs} ms; ${f.rejected} ${f.rejected === 1 ? 'reply' : 'replies'} rejected (last: ${f.lastRefusal})`;
    case 'disconnected':
      return f.waitedMs !== undefined ? `the bus is disconnected (not back within ${f.waitedMs} ms)` : `the bus connection failed: ${f.detail ?? 'closed'}`;
    case 'notPermitted':
      return `the bus refused the request: ${f.detail}`;
  }
}

/**
 * A failed bus request. It is an RpcError (PEER_UNREACHABLE or PEER_TIMEOUT) so that it can be
 * passed on over JSON-RPC as it is; in-process callers read `failure` instead of the message.
 */
export class BusError extends RpcError {
  constructor(
    readonly target: string,
    readonly failure: BusFailure,
    options?: { cause?: unknown },
  ) {
    super(codes[failure.type], `${target}: ${describe(failure)}`, options);
  }
}

/** The failure carried by `err` if it is a bus failure, else undefined (e.g. the peer's own refusal). */
export function busFailureOf(err: unknown): BusFailure | undefined {
  return err instanceof BusError ? err.failure : undefined;
}

/** Maps what nats.js throws from a request to a failure; `waitedMs` is the request's deadline. */
export function classifyNatsError(err: unknown, waitedMs: number): BusFailure {
  const cause = err instanceof RequestError && err.cause instanceof Error ? err.cause : err;
  if (cause instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) return { type: 'noResponders' };
  if (cause instanceof TimeoutError) return { type: 'timeout', waitedMs };
  if (cause instanceof PermissionViolationError) return { type: 'notPermitted', detail: cause.message };
  return { type: 'disconnected', detail: cause instanceof Error ? cause.message : String(cause) };
}
