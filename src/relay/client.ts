import { classifyNatsError } from '../bus/bus-errors.js';
import type { NatsConnection } from '../core/nats.js';
import { RELAY_PROTOCOL_VERSION, relayReplySchema, relaySubject } from './protocol.js';

// The rendezvous side of the relay protocol: one request, a validated reply, and every way it can
// fail turned into a RelayUnavailableError whose message says which.

export interface RelaySession {
  sessionId: string;
  token: string;
  endpoint: string;
  dialWithinMs: number;
}

export class RelayUnavailableError extends Error {
  override readonly name = 'RelayUnavailableError';
}

export interface RelayClientOptions {
  nc: NatsConnection;
  proxyOperator: string;
  requester: string;
  timeoutMs: number;
}

export function relayClient(opts: RelayClientOptions): (game: string) => Promise<RelaySession> {
  const subject = relaySubject(opts.proxyOperator);
  return async (game) => {
    let data: unknown;
    const sentAt = Date.now();
    try {
      const msg = await opts.nc.request(subject, JSON.stringify({ v: RELAY_PROTOCOL_VERSION, game, requester: opts.requester }), {
        timeout: opts.timeoutMs,
      });
      data = msg.json();
    } catch (err) {
      const text = (err as Error).message;
      const why = classifyNatsError(err, opts.timeoutMs).type === 'noResponders' ? `no proxy serves relays for ${opts.proxyOperator}` : `the proxy did not answer: ${text}`;
      throw new RelayUnavailableError(why, { cause: err });
    }
    const reply = relayReplySchema.safeParse(data);
    if (!reply.success) throw new RelayUnavailableError(`the proxy's relay reply is malformed: ${reply.error.issues[0]?.message ?? 'invalid'}`);
    if (!reply.data.ok) throw new RelayUnavailableError(`the proxy refused the relay: ${reply.data.error}`);
    const { sessionId, token, endpoint, dialWithinMs } = reply.data;
    // The proxy's window started before its reply left: count the round trip against it, so the
    // grant never looks live after the session has ended.
    return { sessionId, token, endpoint, dialWithinMs: Math.max(0, dialWithinMs - (Date.now() - sentAt)) };
  };
}
