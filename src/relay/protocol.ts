import { z } from 'zod';
import { hostPortSchema, tokenBase64Schema } from '../core/splice-wire.js';

// How the game rendezvous asks the public proxy for a relay when two peers could not punch a
// direct path (a NAT that maps each destination to a new port defeats hole punching).
//
// It is a method of the proxy operator on the signed operator bus (src/bus/bus.ts): the
// rendezvous (`games run`) is a directory operator with its own certificate, and the directory
// says who may call `relayRequest` (dev: the `rendezvous` group). The request is signed by the
// rendezvous, the grant by the proxy operator, and each side checks the other's signature against
// the directory, so whoever else can publish on NATS can neither open relay sessions nor hand the
// peers a grant of its own (another endpoint, its own tokens).
//
// The grant carries one single-use token per peer: the rendezvous hands each peer only its own,
// so one peer's token cannot stand in for the other's leg. Either peer may dial first; the first
// is held (the brokering machine's B) until the other dials (its A), then the two are spliced.

export const RELAY_METHOD = 'relayRequest';
export const RELAY_PROTOCOL_VERSION = 1;

/** The params of `relayRequest`. The requester is the envelope's signer, never a param. */
export const relayRequestParamsSchema = z.strictObject({
  v: z.literal(RELAY_PROTOCOL_VERSION),
  /** For the proxy's logs only: the peers are never named on the wire. */
  game: z.string().min(1).max(64),
});
export type RelayRequestParams = z.infer<typeof relayRequestParamsSchema>;

/** base64 of the 32 token bytes a peer sends first on the splice endpoint (src/core/splice-wire.ts). */
export const relayTokenSchema = tokenBase64Schema;

/** What the splicer enforces on a relayed session; it ends the session with the limit's name. */
export const relayLimitsSchema = z.strictObject({
  /** From the moment both peers are spliced. */
  maxDurationMs: z.number().int().positive(),
  /** In each direction. */
  maxBytesPerDirection: z.number().int().positive(),
});
export type RelayLimits = z.infer<typeof relayLimitsSchema>;

/** The result of `relayRequest`, inside the proxy operator's signed response envelope. */
export const relayGrantSchema = z.strictObject({
  v: z.literal(RELAY_PROTOCOL_VERSION),
  sessionId: z.string().min(1).max(64),
  /** One token per peer (host is the session's leg a, guest its leg b); each works once. */
  tokens: z.strictObject({ host: relayTokenSchema, guest: relayTokenSchema }),
  /** The splice endpoint the proxy signed: host:port. */
  endpoint: hostPortSchema,
  /** Both peers must have dialed within this long of the grant being sent; the session ends then. */
  dialWithinMs: z.number().int().positive(),
  limits: relayLimitsSchema,
});
export type RelayGrantWire = z.infer<typeof relayGrantSchema>;
