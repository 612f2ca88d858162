import { z } from 'zod';
import { RELAY_REFUSALS, type RelayRefusal } from '../core/errors.js';
import { subjectToken } from '../core/nats.js';
import { hostPortSchema, tokenBase64Schema } from '../core/splice-wire.js';

// How the game rendezvous asks the public proxy for a relay when two peers could not punch a
// direct path (a NAT that maps each destination to a new port defeats hole punching).
//
// This is plain NATS request-reply, not the signed operator bus: game peers are not directory
// operators, and the rendezvous and the proxy belong to the same operator, so who may publish on
// the subject is a NATS account permission, not a directory one. The proxy answers at once with
// the session's two leg tokens: the rendezvous hands each peer its own (a peer that learns the
// other's token still cannot dial twice), and whichever dials first is held (the brokering
// machine's B) until the other dials (its A) and the two are spliced. Peers send no proof.

export const RELAY_PROTOCOL_VERSION = 1;

/** One subject per proxy operator; proxy instances share a queue group on it. */
export const relaySubject = (proxyOperator: string): string => `eps.relay.${subjectToken(proxyOperator)}.request`;

/** A relay request names the game only for the proxy's logs: the peers are never named on the wire. */
export const relayRequestSchema = z.strictObject({
  v: z.literal(RELAY_PROTOCOL_VERSION),
  game: z.string().min(1).max(64),
  /** The rendezvous instance asking, for the proxy's logs. */
  requester: z.string().min(1).max(128),
});
export type RelayRequest = z.infer<typeof relayRequestSchema>;

export const relayReplySchema = z.discriminatedUnion('ok', [
  z.strictObject({
    ok: z.literal(true),
    sessionId: z.string().min(1).max(64),
    /** base64 of each leg's 32-byte token; the rendezvous gives `b` to the host and `a` to the guest. */
    tokens: z.strictObject({ a: tokenBase64Schema, b: tokenBase64Schema }),
    endpoint: hostPortSchema,
    /** Both peers must have dialed within this long of the reply being sent; the session ends then. */
    dialWithinMs: z.number().int().positive(),
  }),
  z.strictObject({
    ok: z.literal(false),
    reason: z.enum(Object.keys(RELAY_REFUSALS) as [RelayRefusal, ...RelayRefusal[]]),
    error: z.string().min(1).max(1000),
  }),
]);
export type RelayReply = z.infer<typeof relayReplySchema>;
