import { busFailureOf } from '../bus/bus-errors.js';
import type { Bus } from '../bus/bus.js';
import { RpcError } from '../core/errors.js';
import { RELAY_METHOD, RELAY_PROTOCOL_VERSION, relayGrantSchema, type RelayLimits } from './protocol.js';

// The rendezvous side of `relayRequest`: one signed request to the proxy operator, whose signed
// reply the bus has already checked against the directory (a reply from anyone else is rejected
// there), then the grant validated here, and every way it can fail turned into a
// RelayUnavailableError whose message says which.

export interface RelaySession {
  sessionId: string;
  /** base64 of each peer's own token. */
  tokens: { host: string; guest: string };
  endpoint: string;
  dialWithinMs: number;
  limits: RelayLimits;
}

export class RelayUnavailableError extends Error {
  override readonly name = 'RelayUnavailableError';
}

export interface RelayClientOptions {
  bus: Pick<Bus, 'request'>;
  proxyOperator: string;
  timeoutMs: number;
}

export function relayClient(opts: RelayClientOptions): (game: string) => Promise<RelaySession> {
  return async (game) => {
    let result: unknown;
    const sentAt = Date.now();
    try {
      result = await opts.bus.request(opts.proxyOperator, RELAY_METHOD, { v: RELAY_PROTOCOL_VERSION, game }, opts.timeoutMs);
    } catch (err) {
      if (!(err instanceof RpcError)) throw err;
      const failure = busFailureOf(err);
      // games asks across NATS accounts (a service import), and nats-server 2.9 answers no
      // "no responders" there: a proxy that is down shows as no answer until the deadline.
      const why =
        failure?.type === 'noResponders'
          ? `no proxy serves relays for ${opts.proxyOperator}`
          : failure?.type === 'timeout'
            ? `no proxy answered relays for ${opts.proxyOperator} within ${failure.waitedMs} ms (down, or too busy)`
            : `the proxy refused or failed: ${err.message}`;
      throw new RelayUnavailableError(why, { cause: err });
    }
    const grant = relayGrantSchema.safeParse(result);
    if (!grant.success) {
      const detail = grant.error.issues.map((i) => `${i.path.join('.') || 'grant'}: ${i.message}`).join('; ');
      throw new RelayUnavailableError(`the proxy's relay grant is malformed: ${detail}`);
    }
    const { sessionId, tokens, endpoint, dialWithinMs, limits } = grant.data;
    // The proxy's window started before its reply left: count the round trip against it, so the
    // grant never looks live after the session has ended.
    return { sessionId, tokens, endpoint, limits, dialWithinMs: Math.max(0, dialWithinMs - (Date.now() - sentAt)) };
  };
}
