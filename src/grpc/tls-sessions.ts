import type { TlsMaterial } from '../core/tls-material.js';
import type { ExpectedPeer } from './peer-transport.js';

// A's TLS sessions with its peers, for resumption. A full end-to-end mTLS handshake costs A an
// ECDSA signature (its client certificate), B's chain verified and Node's getPeerCertificate(true)
// (which turns B's whole chain into objects: 0.7 ms of A's 6 ms per brokering), and B as much
// again. A TLS 1.3 resumption still runs a fresh ECDHE key exchange (psk_dhe_ke), but both ends
// skip the certificates: the session carries the identities proven in the full handshake it came
// from, and B's grpc-js server still sees A's certificate through it.
//
// A session is only ever offered to the peer it was made with: the key is the operator's name
// and the certificate fingerprint the directory lists for it, both checked in that full
// handshake. A ticket offered to anybody else (the proxy splicing A to the wrong party) cannot be
// decrypted by it, so that handshake is a full one and meets the directory identity check; only
// the server that issued the ticket can complete a resumption (see resumedPeerMatches in
// spliced-client.ts). Per TlsMaterial: a session belongs to A's own certificate.

const MAX_PEERS = 1024;
const byMaterial = new WeakMap<TlsMaterial, Map<string, Buffer>>();

const keyOf = (peer: ExpectedPeer): string => `${peer.name}\n${peer.fingerprint.replace(/:/g, '').toLowerCase()}`;

/** The last session A kept with this peer, to offer in its next handshake. */
export function sessionFor(tls: TlsMaterial, peer: ExpectedPeer): Buffer | undefined {
  return byMaterial.get(tls)?.get(keyOf(peer));
}

/** Keeps a session (a TLS 1.3 ticket) of a connection whose peer passed the identity check. */
export function rememberSession(tls: TlsMaterial, peer: ExpectedPeer, session: Buffer): void {
  let sessions = byMaterial.get(tls);
  if (!sessions) byMaterial.set(tls, (sessions = new Map()));
  // Clearing all at once keeps this bounded without bookkeeping; A has far fewer peers.
  if (sessions.size >= MAX_PEERS) sessions.clear();
  sessions.set(keyOf(peer), session);
}

/** Drops the peer's session (a resumption that failed its check, or a handshake that failed). */
export function forgetSession(tls: TlsMaterial, peer: ExpectedPeer): void {
  byMaterial.get(tls)?.delete(keyOf(peer));
}
