import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, Socket, type Server as NetServer } from 'node:net';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { RpcError } from '../core/errors.js';
import { childOnDemand, type Logger } from '../core/logger.js';
import { commonNameOf, fingerprintOf, type TlsMaterial } from '../core/tls-material.js';
import { timelineMark } from '../core/timeline.js';

// ---------------------------------------------------------------------------------------------
// The wire contract, shared with peer-client.ts.

/** Field names as in proto/eps.proto: the loader runs with keepCase, so snake_case stays. */
export interface CallRequestMessage {
  method: string;
  params_json: string;
  id: string;
  from: string;
}

export interface ErrorObjectMessage {
  code: number;
  message: string;
  data_json: string;
}

export interface CallResponseMessage {
  result_json: string;
  /** null when absent: proto3 tracks presence of message fields. */
  error: ErrorObjectMessage | null;
}

/** Walks up from this module until it finds proto/eps.proto, so src/ (vitest) and dist/src/ (node) both work. */
export function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'proto', 'eps.proto');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`proto/eps.proto not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

let cachedService: grpc.ServiceDefinition | undefined;

/** The eps.v1.Peer service, loaded once per process. */
export function peerServiceDefinition(): grpc.ServiceDefinition {
  if (cachedService) return cachedService;
  const pkg = protoLoader.loadSync(protoPath(), {
    // keepCase: the JSON-carrying fields read the same in TypeScript as in the .proto.
    keepCase: true,
    longs: String,
    enums: String,
    // defaults: empty strings arrive as '' rather than undefined; absent messages as null.
    defaults: true,
    oneofs: true,
  });
  const service = pkg['eps.v1.Peer'];
  if (!service || !('Call' in service)) throw new Error('eps.v1.Peer missing from proto/eps.proto');
  cachedService = service as unknown as grpc.ServiceDefinition;
  return cachedService;
}

export function callMethodDefinition(): grpc.MethodDefinition<CallRequestMessage, CallResponseMessage> {
  const def = peerServiceDefinition()['Call'];
  if (!def) throw new Error('eps.v1.Peer/Call missing from proto/eps.proto');
  return def as grpc.MethodDefinition<CallRequestMessage, CallResponseMessage>;
}

// ---------------------------------------------------------------------------------------------
// B's side.

/** Who is calling, as proven by the client certificate of the mTLS connection. */
export interface PeerIdentity {
  commonName: string;
  /** SHA-256 of the DER certificate, lower-case hex, as the directory records it. */
  fingerprint: string;
}

export interface PeerCall {
  method: string;
  params: unknown;
  id: string;
  /** Always equal to the certificate's CN: a request claiming another name is refused. */
  from: string;
}

/** Returns the result; throw RpcError to answer a JSON-RPC error. Anything else becomes INTERNAL_ERROR. */
export type PeerCallHandler = (call: PeerCall, peer: PeerIdentity) => Promise<unknown>;

export interface PeerServerOptions {
  tls: TlsMaterial;
  log: Logger;
  handle: PeerCallHandler;
  /** true lets the call through; false or a reason string refuses it with PERMISSION_DENIED. */
  authorizePeer?: (peer: PeerIdentity) => boolean | string;
  /** How long close() lets in-flight calls finish before cutting the connections. */
  shutdownGraceMs?: number;
}

export interface PeerServer {
  /**
   * Serves gRPC on a socket that is already connected (B dialed the proxy and sent its token).
   * The TLS handshake, with B as the TLS server, starts on this socket; the caller must not read
   * from it afterwards.
   */
  injectSocket(socket: Socket | Duplex): void;
  /** For operators that do accept inbound connections. Resolves with the bound port. */
  listen(host: string, port: number): Promise<number>;
  /** Graceful (GOAWAY, in-flight calls finish) up to the grace period, then forced. */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;

export function createPeerServer(opts: PeerServerOptions): PeerServer {
  const log = opts.log.child({ component: 'peer-server' });
  const server = new grpc.Server({
    // Peer calls carry small JSON documents; 4 MiB (the default) is ample either way, but state it.
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    // channelz (grpc-js's introspection service) is never served here; its per-connection and
    // per-call trackers were a share of B's CPU per brokering.
    'grpc.enable_channelz': 0,
  });
  // `true`: a connection without a client certificate signed by our CA never gets as far as HTTP/2.
  const credentials = grpc.ServerCredentials.createSsl(opts.tls.ca, [{ cert_chain: opts.tls.cert, private_key: opts.tls.key }], true);
  const injector = server.createConnectionInjector(credentials);
  const sockets = new Set<Socket | Duplex>();
  const listeners = new Set<NetServer>();
  let closed = false;

  server.addService(peerServiceDefinition(), {
    Call: (call: grpc.ServerUnaryCall<CallRequestMessage, CallResponseMessage>, callback: grpc.sendUnaryData<CallResponseMessage>) => {
      timelineMark('call.in');
      void serveCall(call, opts, log).then(
        (res) => {
          timelineMark('call.out');
          callback(null, res);
        },
        (err: grpc.ServerErrorResponse) => callback(err),
      );
    },
  });

  const injectSocket = (socket: Socket | Duplex): void => {
    if (closed) {
      socket.destroy();
      throw new Error('peer server is closed');
    }
    // Small gRPC frames through a relay otherwise wait ~40 ms for Nagle to meet a delayed ACK.
    if (socket instanceof Socket) socket.setNoDelay(true);
    sockets.add(socket);
    // The TLS layer reports errors on its own socket; this keeps a reset on the raw one from
    // becoming an uncaught exception before the TLS socket exists.
    socket.on('error', (err: Error) => log.debug({ err: err.message }, 'peer socket error'));
    socket.once('close', () => {
      sockets.delete(socket);
      log.debug('peer socket closed');
    });
    timelineMark('tls.inject');
    injector.injectConnection(socket);
  };

  const listen = (host: string, port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      // Our own listener rather than bindAsync, so accepted sockets get noDelay like injected ones.
      const l = createServer({ noDelay: true }, (socket) => {
        try {
          injectSocket(socket);
        } catch {
          socket.destroy();
        }
      });
      l.once('error', reject);
      l.listen(port, host, () => {
        l.off('error', reject);
        l.on('error', (err) => log.error({ err }, 'peer listener error'));
        listeners.add(l);
        const addr = l.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });

  const close = async (graceMs = opts.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> => {
    if (closed) return;
    closed = true;
    // Stop accepting now, but wait for the close callbacks only at the end: a net.Server reports
    // closed only after its accepted connections are gone, which the shutdown below arranges.
    const listenersClosed = [...listeners].map((l) => new Promise<void>((r) => l.close(() => r())));
    listeners.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log.warn({ graceMs }, 'peer calls still running after the grace period: forcing shutdown');
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // Sockets still in the TLS handshake have no HTTP/2 session yet, so the shutdown above
    // does not know them.
    for (const s of sockets) s.destroy();
    sockets.clear();
    await Promise.all(listenersClosed);
  };

  return { injectSocket, listen, close };
}

/** The caller's identity from the verified client certificate, or undefined when there is none. */
export function peerIdentityOf(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): PeerIdentity | undefined {
  // grpc-js fills sslPeerCertificate only for a TLS socket whose peer certificate verified.
  const ctx = call.getAuthContext();
  const raw = ctx?.transportSecurityType === 'ssl' ? ctx.sslPeerCertificate?.raw : undefined;
  if (!raw || raw.length === 0) return undefined;
  const der = raw.toString('base64');
  const cached = identities.get(der);
  if (cached) return cached;
  const x509 = new X509Certificate(raw);
  const commonName = commonNameOf(x509);
  if (!commonName) return undefined;
  const identity = { commonName, fingerprint: fingerprintOf(x509) };
  if (identities.size >= MAX_CACHED_IDENTITIES) identities.clear();
  identities.set(der, identity);
  return identity;
}

// Parsing the (already verified) client certificate on every call cost more than the rest of
// serving a `_ping`; name and fingerprint follow from the DER bytes alone, so they are kept per
// certificate. The TLS layer still verifies the chain on every connection.
const MAX_CACHED_IDENTITIES = 1024;
const identities = new Map<string, PeerIdentity>();

function statusError(code: grpc.status, details: string): grpc.ServerErrorResponse {
  return Object.assign(new Error(details), { code, details });
}

function errorResponse(err: RpcError): CallResponseMessage {
  let data_json = '';
  if (err.data !== undefined) {
    try {
      data_json = JSON.stringify(err.data);
    } catch {
      data_json = '';
    }
  }
  return { result_json: '', error: { code: err.code, message: err.message, data_json } };
}

async function serveCall(
  call: grpc.ServerUnaryCall<CallRequestMessage, CallResponseMessage>,
  opts: PeerServerOptions,
  log: Logger,
): Promise<CallResponseMessage> {
  const peer = peerIdentityOf(call);
  // With client certificates required this should not happen; if it does, no handler may run
  // without knowing who asks.
  if (!peer) throw statusError(grpc.status.UNAUTHENTICATED, 'no verified client certificate');

  const req = call.request;
  // Made only when the call logs (a refusal, a failure): a pino child per call cost ~40 µs on
  // the cold path of every call, logged or not.
  const clog = childOnDemand(log, { peer: peer.commonName, method: req.method, id: req.id });

  if (req.from && req.from !== peer.commonName) {
    clog().warn({ claimed: req.from }, 'caller claims a name other than its certificate CN');
    return errorResponse(new RpcError('PERMISSION_DENIED', `from '${req.from}' does not match the certificate CN '${peer.commonName}'`));
  }
  if (opts.authorizePeer) {
    const verdict = opts.authorizePeer(peer);
    if (verdict !== true) {
      const reason = typeof verdict === 'string' ? verdict : `${peer.commonName} may not call this server`;
      clog().info({ reason }, 'peer call refused');
      return errorResponse(new RpcError('PERMISSION_DENIED', reason));
    }
  }

  let params: unknown;
  if (req.params_json !== '') {
    try {
      params = JSON.parse(req.params_json);
    } catch {
      return errorResponse(new RpcError('INVALID_PARAMS', 'params_json is not valid JSON'));
    }
  }

  try {
    const result = await opts.handle({ method: req.method, params, id: req.id, from: peer.commonName }, peer);
    return { result_json: JSON.stringify(result === undefined ? null : result), error: null };
  } catch (err) {
    if (err instanceof RpcError) return errorResponse(err);
    // The message may describe internals: log it here, send only the generic code.
    clog().error({ err }, 'peer call handler failed');
    return errorResponse(new RpcError('INTERNAL_ERROR'));
  }
}
