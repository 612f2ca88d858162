import { sign, verify, type KeyObject } from 'node:crypto';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { MAX_PROOF_BYTES, TOKEN_BYTES } from './constants.js';
import { listedKey } from './listed-key.js';

// The splice wire format, both ends of it: what a dialer sends first on a splice connection, how
// the proxy reads it, the proof inside it, and the host:port strings that name an endpoint.
//
//   preamble = token (32 bytes) | proof length (uint16, big-endian) | proof (that many bytes)
//
// The token says which session and which leg (A's and B's differ); the proof says who dials: a
// signature by the dialer's operator key over proofMessage(). Sessions without proofs (game
// relays: peers hold no operator key) send a length of 0. The length is capped at MAX_PROOF_BYTES
// so a dialer cannot make the proxy buffer more than a few hundred bytes before it is judged.
// Whatever follows the preamble in the same chunk belongs to the peers' own protocol (a TLS
// ClientHello, say) and is handed on in `rest`, never dropped.

export type Leg = 'a' | 'b';

/** Bytes before the proof: the token and the proof's length. */
export const PREAMBLE_HEADER_BYTES = TOKEN_BYTES + 2;

/** Base64 of exactly TOKEN_BYTES bytes (32 bytes: 43 characters and one '='). */
const TOKEN_BASE64 = /^[A-Za-z0-9+/]{43}=$/;
export const tokenBase64Schema = z.string().regex(TOKEN_BASE64, `expected ${TOKEN_BYTES} bytes in base64`);
/** tokenBase64Schema's check by hand (src/core/shape.ts). */
export const isTokenBase64 = (v: unknown): v is string => typeof v === 'string' && TOKEN_BASE64.test(v);

/** The proxy's challenge travels in the same form as a token. */
export const challengeBase64Schema = tokenBase64Schema;

// --- host:port -------------------------------------------------------------------------------

/** The one host:port parser: a name, IPv4 or [IPv6], then a port in 1..65535. */
export function parseHostPort(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  const portText = hostPort.slice(i + 1);
  const port = Number(portText);
  const rawHost = hostPort.slice(0, i);
  const bracketed = /^\[(.+)\]$/.exec(rawHost);
  const host = bracketed ? bracketed[1]! : rawHost;
  // An unbracketed host with a colon is an IPv6 address whose port cannot be told apart.
  const valid = i > 0 && /^\d{1,5}$/.test(portText) && port > 0 && port <= 65535 && host.length > 0 && (bracketed !== null || !host.includes(':')) && !/[\s/]/.test(host);
  if (!valid) throw new Error(`${hostPort} is not host:port`);
  return { host, port };
}

export function isHostPort(text: string): boolean {
  try {
    parseHostPort(text);
    return true;
  } catch {
    return false;
  }
}

export const hostPortSchema = z.string().max(300).refine(isHostPort, 'expected host:port');
/** hostPortSchema's check by hand (src/core/shape.ts). */
export const isHostPortText = (v: unknown): v is string => typeof v === 'string' && v.length <= 300 && isHostPort(v);

// --- proof -----------------------------------------------------------------------------------

export interface ProofSubject {
  /** The proxy operator the dialer means to reach: a proof for one proxy is useless at another. */
  proxy: string;
  sessionId: string;
  leg: Leg;
  token: Uint8Array;
  /** Random bytes the proxy chose for this session and sent in its signed bus messages. */
  challenge: Uint8Array;
}

const PROOF_DOMAIN = 'eps-splice-proof/v1';

/**
 * The signed bytes. JSON of an array keeps fields unambiguous without a length-prefix scheme of
 * our own, and the domain string keeps a proof from ever verifying as a bus envelope or a
 * directory record (both sign canonical JSON objects, never arrays).
 */
export function proofMessage(s: ProofSubject): Buffer {
  return Buffer.from(
    JSON.stringify([PROOF_DOMAIN, s.proxy, s.sessionId, s.leg, Buffer.from(s.token).toString('base64'), Buffer.from(s.challenge).toString('base64')]),
    'utf8',
  );
}

// Ed25519 and Ed448 take no digest; EC and RSA keys sign SHA-256, as bus envelopes do.
const digestFor = (key: KeyObject): string | null => (key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256');

export function signProof(key: KeyObject, s: ProofSubject): Buffer {
  const proof = sign(digestFor(key), proofMessage(s), key);
  if (proof.length > MAX_PROOF_BYTES) throw new Error(`a ${key.asymmetricKeyType} signature of ${proof.length} bytes exceeds the preamble's ${MAX_PROOF_BYTES}`);
  return proof;
}

export type ProofCheck = { ok: true } | { ok: false; detail: string };

/** Checks a proof against the dialer's certificate as the signed directory lists it. */
export function verifyProof(proof: Uint8Array, s: ProofSubject, listed: { certificate: string; fingerprint: string } | undefined): ProofCheck {
  if (!listed) return { ok: false, detail: 'the dialer is not in the directory' };
  if (proof.length === 0) return { ok: false, detail: 'no proof' };
  const key = listedKey(listed);
  if (typeof key === 'string') return { ok: false, detail: key };
  let valid = false;
  try {
    valid = verify(digestFor(key), proofMessage(s), key, proof);
  } catch {
    valid = false;
  }
  return valid ? { ok: true } : { ok: false, detail: 'the signature does not match the dialer, session, leg or challenge' };
}

// --- the dialer's side -----------------------------------------------------------------------

export function encodePreamble(token: Uint8Array, proof: Uint8Array = new Uint8Array(0)): Buffer {
  if (token.length !== TOKEN_BYTES) throw new Error(`a token has ${TOKEN_BYTES} bytes, not ${token.length}`);
  if (proof.length > MAX_PROOF_BYTES) throw new Error(`a proof has at most ${MAX_PROOF_BYTES} bytes, not ${proof.length}`);
  const header = Buffer.alloc(PREAMBLE_HEADER_BYTES);
  header.set(token, 0);
  header.writeUInt16BE(proof.length, TOKEN_BYTES);
  return Buffer.concat([header, proof]);
}

/** What a dialer presents: its leg's token, and its proof when the session asks for one. */
export interface Presentation {
  token: Uint8Array;
  /** The dialer's operator key and what it signs; absent for sessions without proofs. */
  prove?: { key: KeyObject; subject: Omit<ProofSubject, 'token'> };
}

/** The preamble's bytes (readPreamble's mirror), signed when the presentation proves. */
export function presentationBytes(p: Presentation): Buffer {
  const proof = p.prove ? signProof(p.prove.key, { ...p.prove.subject, token: p.token }) : undefined;
  return encodePreamble(p.token, proof);
}

// --- the proxy's side ------------------------------------------------------------------------

export class PreambleTimeout extends Error {
  override readonly name = 'PreambleTimeout';
  constructor(
    readonly received: number,
    timeoutMs: number,
  ) {
    super(`preamble not complete after ${timeoutMs} ms (${received} bytes received)`);
  }
}

export class PreambleClosed extends Error {
  override readonly name = 'PreambleClosed';
  constructor(
    readonly received: number,
    options?: { cause?: unknown },
  ) {
    super(`peer closed after ${received} preamble bytes`, options);
  }
}

/** The header announced more proof bytes than the cap: refused before they are read. */
export class PreambleInvalid extends Error {
  override readonly name = 'PreambleInvalid';
  constructor(
    readonly received: number,
    message: string,
  ) {
    super(message);
  }
}

export interface PreambleOptions {
  timeoutMs: number;
}

export interface Preamble {
  token: Buffer;
  /** Empty when the dialer sent none. */
  proof: Buffer;
  rest: Buffer;
}

/** A socket, or any readable stream for tests; `setTimeout` is cleared when present. */
export type PreambleSource = Readable & { setTimeout?: (ms: number) => unknown };

/**
 * Reads one preamble. TCP may deliver it in any pieces, so read until there are enough. This
 * never closes the socket: the caller decides, because only it knows whether to refuse or route.
 */
export function readPreamble(socket: PreambleSource, { timeoutMs }: PreambleOptions): Promise<Preamble> {
  return new Promise<Preamble>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let needed = PREAMBLE_HEADER_BYTES;

    // An absolute deadline for the whole preamble, not socket.setTimeout: an idle timer would let
    // a dialer trickle one byte just inside each period and hold the slot forever.
    const timer = setTimeout(() => finish(new PreambleTimeout(received, timeoutMs)), timeoutMs);

    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < needed) return;
      const all = chunks.length === 1 ? chunk : Buffer.concat(chunks, received);
      chunks.splice(0, chunks.length, all);
      if (needed === PREAMBLE_HEADER_BYTES) {
        const proofBytes = all.readUInt16BE(TOKEN_BYTES);
        if (proofBytes > MAX_PROOF_BYTES) {
          finish(new PreambleInvalid(received, `the preamble announces ${proofBytes} proof bytes; at most ${MAX_PROOF_BYTES} are allowed`));
          return;
        }
        needed += proofBytes;
        if (received < needed) return;
      }
      // Copies, so the token does not pin (or alias) the socket's larger read buffer.
      finish(undefined, {
        token: Buffer.from(all.subarray(0, TOKEN_BYTES)),
        proof: Buffer.from(all.subarray(PREAMBLE_HEADER_BYTES, needed)),
        rest: Buffer.from(all.subarray(needed)),
      });
    };
    const onEnd = (): void => finish(new PreambleClosed(received));
    const onClose = (): void => finish(new PreambleClosed(received));
    const onError = (err: Error): void => finish(new PreambleClosed(received, { cause: err }));

    function finish(error: Error | undefined, preamble?: Preamble): void {
      clearTimeout(timer);
      // Pause before removing the listener: with no 'data' listener and the stream still
      // flowing, the next chunk would be emitted to nobody and lost.
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      socket.setTimeout?.(0);
      if (error) reject(error);
      else resolve(preamble as Preamble);
    }

    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
    if (socket.destroyed) {
      finish(new PreambleClosed(0));
      return;
    }
    socket.resume();
  });
}
