import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { status, type status as GrpcStatus } from '@grpc/grpc-js';
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
  readonly grpcCode: GrpcStatus | undefined;
  constructor(kind: PeerTransportErrorKind, message: string, options?: { cause?: unknown; grpcCode?: GrpcStatus }) {
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
  /** True when TLS resumed an earlier session with this peer (src/grpc/tls-sessions.ts). */
  readonly resumed?: boolean;
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
  /**
   * Called with the client as soon as it exists, before the set-up is through: a call made on it
   * then leaves with the handshake's last flight instead of a round trip later. HTTP/2 holds it
   * until TLS is through, so it never goes out before B's identity was checked; should the set-up
   * fail, it fails as the set-up does.
   */
  onStarted?: (client: PeerClient) => void;
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

function normalizeFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toLowerCase();
}

/**
 * Replaces (not follows) Node's default check (grpc-js too calls it instead of Node's own): B's certificate must be valid for B's name and be
 * exactly the one the directory lists. `refuse` sees every refusal, since TLS reports only that
 * the handshake failed.
 */
function directoryIdentityCheck(expected: ExpectedPeer, refuse: (err: Error) => Error): (host: string, cert: PeerCertificate) => Error | undefined {
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

export interface PendingCall {
  fail(reason: PeerTransportError): void;
}

/**
 * What both clients do alike: one connection, calls in flight failed when it goes, close
 * callbacks fired once, B's refusals and gRPC statuses mapped to PeerTransportErrors. A subclass
 * brings the transport: it releases it in releaseTransport() and records why B's certificate was
 * refused through refuseIdentity().
 */
export abstract class PeerClientBase implements PeerClient {
  readonly peer: ExpectedPeer;
  /** B checks it against our certificate's CN; sent so B's logs name the caller even on refusal. */
  protected readonly from: string;
  protected readonly callTimeoutMs: number;
  protected readonly pending = new Set<PendingCall>();
  protected closedReason: PeerTransportError | undefined;
  private readonly closeCallbacks: Array<(reason: PeerTransportError) => void> = [];
  /** Why our identity check refused B: TLS reports only a failed handshake. */
  private identityError: Error | undefined;

  private readonly logger: Logger | (() => Logger);

  /** `log` may be a getter (src/core/logger.ts childOnDemand): the child is then made when first used. */
  constructor(tls: TlsMaterial, expected: ExpectedPeer, log: Logger | (() => Logger), callTimeoutMs: number | undefined) {
    this.logger = log;
    this.peer = { name: expected.name, fingerprint: normalizeFingerprint(expected.fingerprint) };
    this.from = tls.commonName;
    this.callTimeoutMs = callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  }

  protected get log(): Logger {
    return typeof this.logger === 'function' ? this.logger() : this.logger;
  }

  abstract call(method: string, params?: unknown, id?: string): Promise<unknown>;

  /** Closes the connection underneath; called once, from closeWith. */
  protected abstract releaseTransport(): void;

  close(): void {
    this.closeWith(new PeerTransportError('closed', `channel to ${this.peer.name} closed by its owner`));
  }

  onClose(cb: (reason: PeerTransportError) => void): void {
    if (this.closedReason) {
      const reason = this.closedReason;
      queueMicrotask(() => cb(reason));
    } else this.closeCallbacks.push(cb);
  }

  offClose(cb: (reason: PeerTransportError) => void): void {
    const at = this.closeCallbacks.indexOf(cb);
    if (at >= 0) this.closeCallbacks.splice(at, 1);
  }

  isOpen(): boolean {
    return this.closedReason === undefined;
  }

  /** The server identity check for TLS: the directory's certificate for B, refusals recorded. */
  protected identityCheck(): (host: string, cert: PeerCertificate) => Error | undefined {
    return directoryIdentityCheck(this.peer, (err) => {
      // A CA-valid certificate that is not the directory's is worth a warning: a stale directory
      // entry at best, someone else's key at worst.
      this.log.warn({ reason: err.message }, 'peer certificate refused');
      return (this.identityError = err);
    });
  }

  protected closeWith(reason: PeerTransportError): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.log.debug({ reason: reason.message }, 'peer channel closed');
    for (const p of [...this.pending]) p.fail(reason);
    this.releaseTransport();
    for (const cb of this.closeCallbacks.splice(0)) {
      try {
        cb(reason);
      } catch (err) {
        this.log.error({ err }, 'onClose callback threw');
      }
    }
  }

  protected handshakeError(cause?: Error): PeerTransportError {
    if (this.identityError) {
      return new PeerTransportError('identity', `refusing ${this.peer.name}: ${this.identityError.message}`, { cause: this.identityError });
    }
    return new PeerTransportError('handshake', `TLS/HTTP2 set-up with ${this.peer.name} failed${cause ? ` (${cause.message})` : ''}: ${setUpFailureHint(cause)}`, { cause });
  }

  /** A gRPC status other than OK, as the owner needs it: timeout, connection gone, or other. */
  protected statusError(method: string, code: number, details: string, cause?: unknown): PeerTransportError {
    if (code === status.DEADLINE_EXCEEDED) {
      return new PeerTransportError('timeout', `${this.peer.name} did not answer ${method} within ${this.callTimeoutMs} ms`, { cause, grpcCode: code });
    }
    if (code === status.UNAVAILABLE || code === status.CANCELLED) {
      return this.closedReason ?? new PeerTransportError('closed', `connection to ${this.peer.name} lost during ${method}: ${details}`, { cause, grpcCode: code });
    }
    return new PeerTransportError('transport', `${method} to ${this.peer.name} failed with gRPC ${status[code] ?? code}: ${details}`, { cause, grpcCode: code });
  }
}

/**
 * What most likely broke a TLS/HTTP2 set-up, from how it broke: a TLS alert is the peer refusing
 * us; a reset or a close with no alert is the path going away (the proxy splicing us, or the
 * peer) as often as a refusal; anything else suggests the other end does not speak our protocol.
 */
export function setUpFailureHint(cause: (Error & { code?: string }) | undefined): string {
  if (cause && /alert/i.test(cause.message)) return 'the peer refused our certificate (TLS alert)';
  if (!cause || cause.code === 'ECONNRESET' || cause.code === 'EPIPE' || /socket hang up|closed|ECONNRESET/i.test(cause.message)) {
    return 'the connection closed during set-up: the proxy splicing us or the peer went away, or the peer refused our certificate';
  }
  return 'is the other end a peer server?';
}
