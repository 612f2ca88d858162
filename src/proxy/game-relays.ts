import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { RELAY_REFUSALS } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { relayRequestSchema, relaySubject, type RelayReply } from '../relay/protocol.js';
import type { OpenedSession, SessionMessengers, SessionOptions } from './session-registry.js';

// The proxy side of the relay protocol (src/relay/protocol.ts): each request opens a session of
// the same brokering machine and splicer that EPS operators use, without proofs (game peers hold
// no operator key), and the reply carries its two leg tokens.
// Nobody is on the operator bus to notify or confirm, so both messengers succeed at once: "B was
// told" means the rendezvous holds the tokens, and both peers already hold theirs when one is spliced.
// They must stay free of I/O: a second peer dialing right behind the first is accepted only once
// confirmToA is done, which today happens in the same microtask drain as B_DIALED.
//
// The subject is plain NATS (see src/relay/protocol.ts), so a publisher is trusted only as far as
// NATS permissions say; the cap on live relay sessions bounds what a flood of requests can hold.

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
  /** Both peers must have dialed this long after the grant; the session ends then otherwise. */
  dialWithinMs: number;
  /** Relay sessions open at once (waiting or spliced); more requests are refused until some end. */
  maxLive: number;
  open: (request: { a: string; b: string; endpoint: string }, via: SessionOptions) => OpenedSession;
  log: Logger;
}

/** Serves relay requests until the returned subscription is unsubscribed. */
export function serveGameRelays(opts: GameRelaysOptions): Subscription {
  const log = opts.log.child({ component: 'game-relays' });
  let live = 0;
  return opts.nc.subscribe(relaySubject(opts.operator), {
    queue: opts.queue,
    callback: (err, msg) => {
      if (err) return log.warn({ err }, 'relay subscription failed');
      // Nobody could receive the token: opening a session would only hold a slot until it expires.
      if (!msg.reply) return log.warn('relay request without a reply subject dropped');
      const answer = (reply: RelayReply) => {
        if (!msg.respond(JSON.stringify(reply))) log.warn('relay request without a reply subject dropped');
      };
      let body: unknown;
      try {
        body = msg.json();
      } catch {
        log.warn({ bytes: msg.data.length }, 'relay request is not JSON');
        return answer({ ok: false, reason: 'NOT_JSON', error: RELAY_REFUSALS.NOT_JSON });
      }
      const checked = relayRequestSchema.safeParse(body);
      if (!checked.success) {
        const error = checked.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ');
        log.warn({ error }, 'malformed relay request');
        return answer({ ok: false, reason: 'MALFORMED', error: `malformed relay request: ${error}` });
      }
      const { game, requester } = checked.data;
      if (live >= opts.maxLive) {
        log.warn({ live, game, requester }, 'relay refused: too many relay sessions open');
        return answer({ ok: false, reason: 'TOO_MANY_SESSIONS', error: `the proxy has ${opts.maxLive} relay sessions open, its limit; retry shortly` });
      }
      let session: OpenedSession;
      try {
        session = opts.open(
          { a: `${requester}/${game}/second`, b: `${requester}/${game}/first`, endpoint: opts.endpoint },
          { messengers: RELAY_MESSENGERS, dialWithinMs: opts.dialWithinMs, proofs: false },
        );
      } catch (e) {
        return answer({ ok: false, reason: 'UNAVAILABLE', error: (e as Error).message });
      }
      live++;
      void session.done.then(() => live--);
      log.info({ sessionId: session.sessionId, game, requester }, 'relay session opened');
      const tokens = { a: session.tokens.a.toString('base64'), b: session.tokens.b.toString('base64') };
      answer({ ok: true, sessionId: session.sessionId, tokens, endpoint: opts.endpoint, dialWithinMs: opts.dialWithinMs });
    },
  });
}
