import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from '../core/logger.js';
import { relayRequestSchema, relaySubject, type RelayReply } from '../relay/protocol.js';
import type { OpenedSession, SessionMessengers } from './session-registry.js';

// The proxy side of the relay protocol (src/relay/protocol.ts): each request opens a session of
// the same brokering machine and splicer that EPS operators use, and the reply carries its token.
// Nobody is on the operator bus to notify or confirm, so both messengers succeed at once: "B was
// told" means the rendezvous holds the token, and both peers already hold it when one is spliced.

const RELAY_MESSENGERS: SessionMessengers = {
  notifyB: async () => ({ accepted: true }),
  confirmToA: async () => {},
};

export interface GameRelaysOptions {
  nc: NatsConnection;
  /** The proxy's operator name: the subject is derived from it. */
  operator: string;
  queue: string;
  endpoint: string;
  /** How long the first peer has to dial (the brokering machine's bDialTimeout). */
  dialWithinMs: number;
  open: (request: { a: string; b: string; endpoint: string }, messengers: SessionMessengers) => OpenedSession;
  log: Logger;
}

/** Serves relay requests until the returned subscription is unsubscribed. */
export function serveGameRelays(opts: GameRelaysOptions): Subscription {
  const log = opts.log.child({ component: 'game-relays' });
  return opts.nc.subscribe(relaySubject(opts.operator), {
    queue: opts.queue,
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'relay subscription failed');
      const answer = (reply: RelayReply) => {
        if (!msg.respond(JSON.stringify(reply))) log.warn('relay request without a reply subject dropped');
      };
      let body: unknown;
      try {
        body = msg.json();
      } catch {
        log.warn({ bytes: msg.data.length }, 'relay request is not JSON');
        return answer({ ok: false, error: 'the request is not JSON' });
      }
      const checked = relayRequestSchema.safeParse(body);
      if (!checked.success) {
        const error = checked.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ');
        log.warn({ error }, 'malformed relay request');
        return answer({ ok: false, error: `malformed relay request: ${error}` });
      }
      const { game, requester } = checked.data;
      let session: OpenedSession;
      try {
        session = opts.open({ a: `${requester}/${game}/second`, b: `${requester}/${game}/first`, endpoint: opts.endpoint }, RELAY_MESSENGERS);
      } catch (e) {
        return answer({ ok: false, error: (e as Error).message });
      }
      log.info({ sessionId: session.sessionId, game, requester }, 'relay session opened');
      answer({ ok: true, sessionId: session.sessionId, token: session.token.toString('base64'), endpoint: opts.endpoint, dialWithinMs: opts.dialWithinMs });
    },
  });
}
