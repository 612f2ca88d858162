import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import { RpcError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { TlsMaterial } from '../core/tls-material.js';
import type { CallResponseMessage } from './peer-server.js';

// What both of A's gRPC clients share: the contract the owner sees (PeerClient), the errors below
// JSON-RPC, how B's certificate is checked against the directory, and how B's answer becomes a
// result. The clients differ only in how bytes reach B (src/grpc/spliced-client.ts over a socket A
// already holds, src/grpc/grpc-js-client.ts when A may dial B itself).

/** The operator A expects at the other end, as the signed directory names it. */
export interface ExpectedPeer {
  name: string;
  /** SHA-256 of B's DER certificate, hex (case and colons ignored). */
  fingerprint: string;
}

export type PeerTransportErrorKind =
  /** B's certificate is valid for our CA but is not the one the directory names. */
  | 'identity'
  /** TLS or HTTP/2 set-up failed (B refused our certificate, garbage on the socket, ...). */
  | 'handshake'
  /** No channel within the connect timeout, or no answer within the call timeout. */
  | 'timeout'
  /** The connection is gone (or the client was closed); the owner must broker a new one. */
  | 'closed'
  /** Any other gRPC status: the call never reached B's handler, or B's gRPC layer failed it. */
  | 'transport';

/** Everything that fails below JSON-RPC. A JSON-RPC error answered by B is an RpcError instead. */
export class PeerTransportError extends Error {
  override readonly name = 'PeerTransportError';
  readonly kind: PeerTransportErrorKind;
  readonly grpcCode: grpc.status | undefined;
  constructor(kind: PeerTransportErrorKind, message: string, options?: { cause?: unknown; grpcCode?: grpc.status }) {
    super(message, { cause: options?.cause });
    this.kind = kind;
    this.grpcCode = options?.grpcCode;
  }
}

export interface PeerClient {
  readonly peer: ExpectedPeer;
  /** Resolves with B's result; rejects with RpcError (B's answer) or PeerTransportError. */
  call(method: string, params?: unknown, id?: string): Promise<unknown>;
  /** Idempotent. Rejects calls still in flight with a 'closed' PeerTransportError. */
  close(): void;
  /** Fires once, when the connection is gone for whatever reason (also after close()). */
  onClose(cb: (reason: PeerTransportError) => void): void;
  isOpen(): boolean;
}

export interface PeerClientOptions {
  tls: TlsMaterial;
  expectedPeer: ExpectedPeer;
  /** Already spliced to B (A dialed the proxy and sent its token). The client owns it from now on. */
  socket: Socket | Duplex;
  log: Logger;
  callTimeoutMs?: number;
  /** TLS + HTTP/2 set-up on the held socket. */
  connectTimeoutMs?: number;
}

export interface PeerClientDirectOptions {
  tls: TlsMaterial;
  expectedPeer: ExpectedPeer;
  /** host:port of a peer that accepts inbound connections. */
  address: string;
  log?: Logger;
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
}

export const DEFAULT_CALL_TIMEOUT_MS = 15_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

// Creating a SecureContext parses the key, the certificate and the CA, which cost hd-1 more CPU
// per brokering than anything else of its own when done per channel; the material does not
// change between channels, so each TlsMaterial object gets one context. Only what grpc-js's
// createSsl puts in it (ca, key, cert, and GRPC_SSL_CIPHER_SUITES when set); each client still
// brings its own server identity check.
const secureContexts = new WeakMap<TlsMaterial, SecureContext>();

export function secureContextFor(tls: TlsMaterial): SecureContext {
  let ctx = secureContexts.get(tls);
  if (!ctx) {
    const ciphers = process.env['GRPC_SSL_CIPHER_SUITES'];
    ctx = createSecureContext({ ca: tls.ca, key: tls.key, cert: tls.cert, ...(ciphers ? { ciphers } : {}) });
    secureContexts.set(tls, ctx);
  }
  return ctx;
}

export function normalizeFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toLowerCase();
}

/**
 * Replaces (not follows) Node's default check: B's certificate must be valid for B's name and be
 * exactly the one the directory lists. `refuse` sees every refusal, since TLS reports only that
 * the handshake failed.
 */
export function directoryIdentityCheck(expected: ExpectedPeer, refuse: (err: Error) => Error): (host: string, cert: PeerCertificate) => Error | undefined {
  const fingerprint = normalizeFingerprint(expected.fingerprint);
  return (host, cert) => {
    const nameError = checkServerIdentity(host, cert);
    if (nameError) return refuse(nameError);
    const fp = cert.raw ? createHash('sha256').update(cert.raw).digest('hex') : '';
    if (fp !== fingerprint) {
      return refuse(new Error(`${host} presented certificate ${fp || '(none)'}, but the directory names ${fingerprint}`));
    }
    return undefined;
  };
}

/** Serialises JSON-RPC params for the CallRequest's params_json ('' means none). */
export function paramsJson(params: unknown): string {
  if (params === undefined) return '';
  try {
    return JSON.stringify(params);
  } catch (err) {
    throw new RpcError('INVALID_PARAMS', 'params cannot be serialized to JSON', { cause: err });
  }
}

/** B's CallResponse as A's result, or the RpcError B answered. */
export function resultOf(peer: string, method: string, res: CallResponseMessage | undefined | null): unknown {
  if (!res) throw new PeerTransportError('transport', `${peer} answered ${method} with no message`);
  if (res.error) {
    let data: unknown;
    if (res.error.data_json) {
      try {
        data = JSON.parse(res.error.data_json);
      } catch {
        data = res.error.data_json;
      }
    }
    throw RpcError.fromWire({ code: res.error.code, message: res.error.message, data });
  }
  try {
    return res.result_json === '' ? null : JSON.parse(res.result_json);
  } catch (parseErr) {
    throw new PeerTransportError('transport', `${peer} answered ${method} with a result that is not JSON`, { cause: parseErr });
  }
}

/** Fires every close callback once, each in isolation. */
export function fireCloseCallbacks(callbacks: Array<(reason: PeerTransportError) => void>, reason: PeerTransportError, log: Logger): void {
  for (const cb of callbacks.splice(0)) {
    try {
      cb(reason);
    } catch (err) {
      log.error({ err }, 'onClose callback threw');
    }
  }
}
