import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { createServer, Socket, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { checkServerIdentity, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { RpcError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { callMethodDefinition, type CallRequestMessage, type CallResponseMessage } from './peer-server.js';

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

const DEFAULT_CALL_TIMEOUT_MS = 15_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Largest delay setTimeout honours; grpc-js would otherwise drop an idle channel after 30 min. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * gRPC over a socket A already holds.
 *
 * grpc-js 1.14 has no client-side counterpart to Server.createConnectionInjector: a channel always
 * dials its target itself (grpc-node issues #2359, #1660). So the client gets a private target to
 * dial: a unix socket in a fresh 0700 temp dir that accepts exactly one connection and pipes it
 * to the held socket, then stops listening. TLS still runs end to end between grpc-js and B: the
 * bridge only moves ciphertext. A unix socket rather than 127.0.0.1:0 because only our user can
 * reach it, so no other local process can race grpc-js to the single connection.
 */
export async function connectPeerClient(opts: PeerClientOptions): Promise<PeerClient> {
  const log = opts.log.child({ component: 'peer-client', peer: opts.expectedPeer.name });
  const bridge = await openBridge(opts.socket, log);
  const client = new GrpcPeerClient(`unix:${bridge.path}`, opts.tls, opts.expectedPeer, log, opts.callTimeoutMs, () => bridge.dispose());
  bridge.onGone(() => client.connectionLost(`connection to ${opts.expectedPeer.name} closed`));
  await client.waitReady(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  return client;
}

/** The same client for a peer that can be dialed directly; grpc-js dials (and sets noDelay) itself. */
export async function connectPeerClientDirect(opts: PeerClientDirectOptions): Promise<PeerClient> {
  const log = (opts.log ?? silentLogger()).child({ component: 'peer-client', peer: opts.expectedPeer.name, address: opts.address });
  const client = new GrpcPeerClient(opts.address, opts.tls, opts.expectedPeer, log, opts.callTimeoutMs, () => undefined);
  await client.waitReady(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  return client;
}

// ---------------------------------------------------------------------------------------------

interface Bridge {
  path: string;
  onGone(cb: () => void): void;
  dispose(): void;
}

// One private directory (0700, mkdtemp's mode) per process holds every bridge's socket, each under
// a random name: creating and removing a directory per brokering cost hd-1 more than the bridge's
// own I/O. Only our user can enter it, as before; it goes when the process exits, or is made anew
// if something removed it meanwhile.
let bridgeDir: string | undefined;

function bridgeDirectory(): string {
  if (!bridgeDir) {
    const dir = mkdtempSync(join(tmpdir(), 'eps-peer-'));
    bridgeDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return bridgeDir;
}

function openBridge(held: Socket | Duplex, log: Logger): Promise<Bridge> {
  if (held.destroyed) return Promise.reject(new PeerTransportError('closed', 'the held socket is already closed'));
  const dir = bridgeDirectory();
  const path = join(dir, `${randomUUID()}.sock`);
  let inner: Socket | undefined;
  let gone = false;
  const goneCallbacks: Array<() => void> = [];
  const listener: NetServer = createServer();

  const stopListening = (): void => {
    if (listener.listening) listener.close();
    try {
      unlinkSync(path);
    } catch {
      // already gone: libuv unlinks a unix socket's path when its server closes
    }
  };
  const markGone = (): void => {
    if (gone) return;
    gone = true;
    stopListening();
    inner?.destroy();
    held.destroy();
    for (const cb of goneCallbacks.splice(0)) cb();
  };

  // Nagle on the relay leg would add ~40 ms per small call (delayed ACK on the other side).
  if (held instanceof Socket) held.setNoDelay(true);
  held.on('error', (err: Error) => log.debug({ err: err.message }, 'held socket error'));
  held.once('close', markGone);

  listener.on('connection', (local: Socket) => {
    // The held socket can carry one TLS session only; a reconnect attempt must fail, not reuse it.
    if (inner || gone) {
      local.destroy();
      return;
    }
    inner = local;
    stopListening();
    local.on('error', (err: Error) => log.debug({ err: err.message }, 'bridge socket error'));
    local.once('close', markGone);
    held.pipe(local);
    local.pipe(held);
  });

  return new Promise((resolve, reject) => {
    listener.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' && bridgeDir === dir) bridgeDir = undefined;
      markGone();
      reject(new PeerTransportError('transport', `cannot open the local gRPC bridge: ${err.message}`, { cause: err }));
    });
    listener.listen(path, () => {
      if (gone) {
        // markGone ran before the listener was up, so it could not close it.
        stopListening();
        reject(new PeerTransportError('closed', 'the held socket closed before the gRPC channel started'));
        return;
      }
      resolve({
        path,
        onGone: (cb) => {
          if (gone) queueMicrotask(cb);
          else goneCallbacks.push(cb);
        },
        dispose: markGone,
      });
    });
  });
}

// createSsl parses the key, the certificate and the CA into a new SecureContext for every client,
// which cost hd-1 more CPU per brokering than anything else of its own; the material does not
// change between channels, so each TlsMaterial object gets one context. Only what createSsl puts
// in it (ca, key, cert, and GRPC_SSL_CIPHER_SUITES when set); each client still brings its own
// checkServerIdentity.
const secureContexts = new WeakMap<TlsMaterial, SecureContext>();

function secureContextFor(tls: TlsMaterial): SecureContext {
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

interface PendingCall {
  fail(reason: PeerTransportError): void;
}

class GrpcPeerClient implements PeerClient {
  readonly peer: ExpectedPeer;
  /** B checks it against our certificate's CN; sent so B's logs name the caller even on refusal. */
  private readonly from: string;
  private readonly client: grpc.Client;
  private readonly method = callMethodDefinition();
  private readonly pending = new Set<PendingCall>();
  private readonly closeCallbacks: Array<(reason: PeerTransportError) => void> = [];
  private closedReason: PeerTransportError | undefined;
  /** Why our checkServerIdentity refused B: grpc-js reports only TRANSIENT_FAILURE. */
  private identityError: Error | undefined;

  constructor(
    target: string,
    tls: TlsMaterial,
    expected: ExpectedPeer,
    private readonly log: Logger,
    private readonly callTimeoutMs = DEFAULT_CALL_TIMEOUT_MS,
    private readonly disposeTransport: () => void,
  ) {
    this.peer = { name: expected.name, fingerprint: normalizeFingerprint(expected.fingerprint) };
    this.from = tls.commonName;
    const refuse = (err: Error): Error => {
      // A CA-valid certificate that is not the directory's is worth a warning: a stale directory
      // entry at best, someone else's key at worst.
      this.log.warn({ reason: err.message }, 'peer certificate refused');
      return (this.identityError = err);
    };
    const credentials = grpc.credentials.createFromSecureContext(secureContextFor(tls), {
      // grpc-js calls this instead of (not after) Node's default check, with the override name.
      checkServerIdentity: (host: string, cert: PeerCertificate): Error | undefined => {
        const nameError = checkServerIdentity(host, cert);
        if (nameError) return refuse(nameError);
        const fp = cert.raw ? createHash('sha256').update(cert.raw).digest('hex') : '';
        if (fp !== this.peer.fingerprint) {
          return refuse(new Error(`${host} presented certificate ${fp || '(none)'}, but the directory names ${this.peer.fingerprint}`));
        }
        return undefined;
      },
    });
    this.client = new grpc.Client(target, credentials, {
      // The bridge target means nothing to TLS; B must prove it is the operator we asked for.
      'grpc.ssl_target_name_override': expected.name,
      'grpc.default_authority': expected.name,
      // One PeerClient, one connection: never share a subchannel with another client to the same target.
      'grpc.use_local_subchannel_pool': 1,
      // A retry would need a new connection, which the held socket cannot give.
      'grpc.enable_retries': 0,
      // The owner decides when an unused channel goes away (DEFAULT_CHANNEL_IDLE_TIMEOUT_MS).
      'grpc.client_idle_timeout_ms': MAX_TIMER_MS,
      // No reconnect tuning: the channel is closed as soon as it leaves READY, and the bridge
      // refuses a second connection anyway. (Huge backoff values also overflow grpc-js's
      // BackoffTimeout.reset into a 1 ms timer.)
    });
  }

  /** Resolves once TLS (both ways) and HTTP/2 settings are through; then watches for loss. */
  waitReady(timeoutMs: number): Promise<void> {
    const channel = this.client.getChannel();
    const deadline = Date.now() + timeoutMs;
    return new Promise<void>((resolve, reject) => {
      const fail = (err: PeerTransportError): void => {
        this.closeWith(err);
        reject(err);
      };
      const step = (): void => {
        if (this.closedReason) return fail(this.handshakeError(this.closedReason));
        const state = channel.getConnectivityState(true);
        if (state === grpc.connectivityState.READY) {
          this.log.debug('peer channel ready');
          this.watchForLoss(channel);
          return resolve();
        }
        if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
          return fail(this.handshakeError());
        }
        channel.watchConnectivityState(state, deadline, (err) => {
          if (err) return fail(new PeerTransportError('timeout', `no gRPC channel to ${this.peer.name} within ${timeoutMs} ms`));
          step();
        });
      };
      step();
    });
  }

  /** Called when the transport underneath is known to be gone (the held socket closed). */
  connectionLost(message: string): void {
    this.closeWith(new PeerTransportError('closed', message));
  }

  call(method: string, params?: unknown, id: string = randomUUID()): Promise<unknown> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    let params_json = '';
    if (params !== undefined) {
      try {
        params_json = JSON.stringify(params);
      } catch (err) {
        return Promise.reject(new RpcError('INVALID_PARAMS', 'params cannot be serialized to JSON', { cause: err }));
      }
    }
    const request: CallRequestMessage = { method, params_json, id, from: this.from };
    return new Promise<unknown>((resolve, reject) => {
      let settled = false;
      const entry: PendingCall = {
        fail: (reason) => {
          if (settled) return;
          settled = true;
          this.pending.delete(entry);
          reject(reason);
          call.cancel();
        },
      };
      const call = this.client.makeUnaryRequest<CallRequestMessage, CallResponseMessage>(
        this.method.path,
        this.method.requestSerialize,
        this.method.responseDeserialize,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + this.callTimeoutMs },
        (err, res) => {
          if (settled) return;
          settled = true;
          this.pending.delete(entry);
          if (err) return reject(this.callError(method, err));
          if (!res) return reject(new PeerTransportError('transport', `${this.peer.name} answered ${method} with no message`));
          if (res.error) {
            let data: unknown;
            if (res.error.data_json) {
              try {
                data = JSON.parse(res.error.data_json);
              } catch {
                data = res.error.data_json;
              }
            }
            return reject(RpcError.fromWire({ code: res.error.code, message: res.error.message, data }));
          }
          try {
            resolve(res.result_json === '' ? null : JSON.parse(res.result_json));
          } catch (parseErr) {
            reject(new PeerTransportError('transport', `${this.peer.name} answered ${method} with a result that is not JSON`, { cause: parseErr }));
          }
        },
      );
      this.pending.add(entry);
    });
  }

  close(): void {
    this.closeWith(new PeerTransportError('closed', `channel to ${this.peer.name} closed by its owner`));
  }

  onClose(cb: (reason: PeerTransportError) => void): void {
    if (this.closedReason) {
      const reason = this.closedReason;
      queueMicrotask(() => cb(reason));
    } else this.closeCallbacks.push(cb);
  }

  isOpen(): boolean {
    return this.closedReason === undefined;
  }

  private watchForLoss(channel: grpc.ChannelInterface): void {
    const watch = (state: grpc.connectivityState): void => {
      if (this.closedReason) return;
      // Any move away from READY means the one connection we have is gone: pick_first goes IDLE
      // after a GOAWAY or a dropped socket, and we never let it reconnect.
      channel.watchConnectivityState(state, Infinity, () => {
        if (this.closedReason) return;
        const now = channel.getConnectivityState(false);
        if (now === grpc.connectivityState.READY) return watch(now);
        this.closeWith(new PeerTransportError('closed', `connection to ${this.peer.name} lost (channel ${grpc.connectivityState[now]})`));
      });
    };
    watch(grpc.connectivityState.READY);
  }

  private closeWith(reason: PeerTransportError): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.log.debug({ reason: reason.message }, 'peer channel closed');
    for (const p of [...this.pending]) p.fail(reason);
    this.client.close();
    this.disposeTransport();
    for (const cb of this.closeCallbacks.splice(0)) {
      try {
        cb(reason);
      } catch (err) {
        this.log.error({ err }, 'onClose callback threw');
      }
    }
  }

  private handshakeError(cause?: PeerTransportError): PeerTransportError {
    if (this.identityError) {
      return new PeerTransportError('identity', `refusing ${this.peer.name}: ${this.identityError.message}`, { cause: this.identityError });
    }
    return new PeerTransportError(
      'handshake',
      `TLS/HTTP2 set-up with ${this.peer.name} failed${cause ? ` (${cause.message})` : ''}: did it refuse our certificate, or is the other end not a peer server?`,
      { cause },
    );
  }

  private callError(method: string, err: grpc.ServiceError): PeerTransportError {
    const code = err.code;
    if (code === grpc.status.DEADLINE_EXCEEDED) {
      return new PeerTransportError('timeout', `${this.peer.name} did not answer ${method} within ${this.callTimeoutMs} ms`, { cause: err, grpcCode: code });
    }
    if (code === grpc.status.UNAVAILABLE || code === grpc.status.CANCELLED) {
      return this.closedReason ?? new PeerTransportError('closed', `connection to ${this.peer.name} lost during ${method}: ${err.details}`, { cause: err, grpcCode: code });
    }
    return new PeerTransportError('transport', `${method} to ${this.peer.name} failed with gRPC ${grpc.status[code]}: ${err.details}`, { cause: err, grpcCode: code });
  }
}

function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
