import { randomUUID } from 'node:crypto';
import { connect as http2Connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { status } from '@grpc/grpc-js';
import { childOnDemand, type Logger } from '../core/logger.js';
import { timelineMark } from '../core/timeline.js';
import { decodeGrpcMessage, frameMessage, GRPC_CONTENT_TYPE, grpcTimeout, MessageReader } from './grpc-wire.js';
import { callMethodDefinition, type CallRequestMessage } from './peer-server.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  paramsJson,
  PeerClientBase,
  PeerTransportError,
  resultOf,
  secureContextFor,
  type PeerClient,
  type PendingCall,
  type PeerClientOptions,
} from './peer-transport.js';
import { forgetSession, rememberSession, sessionFor } from './tls-sessions.js';

/**
 * gRPC over a socket A already holds (spliced to B by the proxy).
 *
 * grpc-js 1.14 has no client-side counterpart to Server.createConnectionInjector: a channel always
 * dials its target itself (grpc-node issues #2359, #1660), so A used to put a private unix-socket
 * bridge in front of it, which cost every byte of every call two more socket hops and every
 * brokering a listener. A subclass of grpc-js's credentials could swap the socket inside its
 * connector, but that connector runs only after grpc-js has dialed its target (transport.js,
 * Http2SubchannelConnector.connect), so a bridge or a dummy target would still be needed, and the
 * seam is internal to one grpc-js version. Here Node's own TLS and HTTP/2 run on the held socket
 * and this file speaks gRPC's unary wire format itself (src/grpc/grpc-wire.ts): public Node APIs
 * only, the same bytes on the wire as grpc-js sends (checked against the real grpc-js server in
 * test/integration/grpc-relay.test.ts and test/integration/spliced-client.test.ts).
 */
export async function connectSplicedPeerClient(opts: PeerClientOptions): Promise<PeerClient> {
  const client = startSplicedPeerClient(opts);
  opts.onStarted?.(client);
  await client.ready(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  return client;
}

/** A client whose TLS set-up has started; `ready` waits for TLS and B's HTTP/2 settings. */
export interface StartedPeerClient extends PeerClient {
  /** Resolves once the set-up is through (at once if it already is); the deadline starts now. */
  ready(timeoutMs: number): Promise<void>;
}

/**
 * Starts TLS on `opts.socket` and returns without waiting for it: A starts its client on a socket
 * whose first flight is held (src/grpc/held-first-flight.ts) while its connection request is on
 * the bus, and waits for `ready` once the held flight is on its way.
 */
export function startSplicedPeerClient(opts: Omit<PeerClientOptions, 'onStarted' | 'connectTimeoutMs'>): StartedPeerClient {
  // Made on first use: most channels never log, and a pino child costs ~40 µs on a cold path.
  const log = childOnDemand(opts.log, { component: 'peer-client', peer: opts.expectedPeer.name });
  if (opts.socket.destroyed) throw new PeerTransportError('closed', 'the held socket is already closed');
  return new SplicedPeerClient(opts, log);
}

class SplicedPeerClient extends PeerClientBase {
  private readonly method = callMethodDefinition();
  private readonly held: PeerClientOptions['socket'];
  private readonly tlsOptions: PeerClientOptions['tls'];
  private readonly tlsSocket: TLSSocket;
  private readonly session: ClientHttp2Session;
  private isReady = false;
  /** Resolves when B's HTTP/2 settings came and passed the ALPN check (onRemoteSettings). */
  private readonly settingsCame: Promise<void>;
  private markReady!: () => void;
  resumed = false;

  constructor(opts: PeerClientOptions, log: () => Logger) {
    super(opts.tls, opts.expectedPeer, log, opts.callTimeoutMs);
    const held = (this.held = opts.socket);
    this.tlsOptions = opts.tls;
    // Nagle on the relay leg would add ~40 ms per small call (delayed ACK on the other side).
    if (held instanceof Socket) held.setNoDelay(true);
    held.on('error', (err: Error) => this.log.debug({ err: err.message }, 'held socket error'));
    held.once('close', () => this.closeWith(new PeerTransportError('closed', `connection to ${this.peer.name} closed`)));

    const offered = sessionFor(opts.tls, this.peer);
    this.tlsSocket = tlsConnect({
      socket: held,
      secureContext: secureContextFor(opts.tls),
      // B must prove it is the operator we asked for; the proxy's address means nothing to TLS.
      servername: this.peer.name,
      ALPNProtocols: ['h2'],
      checkServerIdentity: this.identityCheck(),
      // src/grpc/tls-sessions.ts: the last session with this very peer, resumed when B agrees.
      ...(offered ? { session: offered } : {}),
    });
    // TLS 1.3 tickets arrive after the handshake, so after the identity check; one that came
    // before it (or with a check that failed) is never kept.
    timelineMark('tls.start');
    let verified = false;
    this.tlsSocket.once('secureConnect', () => {
      timelineMark('tls.done');
      this.resumed = this.tlsSocket.isSessionReused();
      if (this.resumed && !this.resumedPeerMatches()) return;
      verified = true;
    });
    this.tlsSocket.on('session', (session: Buffer) => {
      if (verified && !this.closedReason) rememberSession(opts.tls, this.peer, session);
    });
    // A failed handshake keeps the peer's session: a ticket B cannot use (B restarted, the ticket
    // expired) only costs a full handshake, and whoever else A is spliced to cannot make A drop it.
    const lost = (err: Error): void =>
      this.closeWith(this.isReady ? new PeerTransportError('closed', `connection to ${this.peer.name} lost: ${err.message}`, { cause: err }) : this.handshakeError(err));
    this.tlsSocket.on('error', lost);
    this.session = http2Connect(`https://${this.peer.name}`, {
      createConnection: () => this.tlsSocket,
      settings: { enablePush: false },
    });
    this.session.on('error', lost);
    this.session.once('connect', () => timelineMark('h2.connect'));
    // After a GOAWAY no new call may start: the one connection we have is done, as when grpc-js's
    // channel left READY.
    this.session.once('goaway', () => this.closeWith(new PeerTransportError('closed', `${this.peer.name} ended the connection (GOAWAY)`)));
    this.session.once('close', () => this.closeWith(new PeerTransportError('closed', `connection to ${this.peer.name} closed`)));
    this.settingsCame = new Promise((resolve) => (this.markReady = resolve));
    this.session.once('remoteSettings', () => this.onRemoteSettings());
  }

  /**
   * Node skips checkServerIdentity when a session is resumed, and a resumed client session has no
   * peer certificate to show (OpenSSL keeps only the server's side of it). What stands for it:
   * the session was only ever offered to this peer (name and directory fingerprint, checked in
   * the full handshake it came from), and only the holder of that session's secret, the server
   * that issued the ticket, can complete a resumption. Should Node ever show the certificate, it
   * must still be the directory's.
   */
  private resumedPeerMatches(): boolean {
    const presented = this.tlsSocket.getPeerX509Certificate()?.fingerprint256.replace(/:/g, '').toLowerCase();
    if (presented === undefined || presented === this.peer.fingerprint) return true;
    forgetSession(this.tlsOptions, this.peer);
    this.log.warn({ presented }, 'resumed TLS session does not match the directory; refused');
    this.closeWith(new PeerTransportError('identity', `refusing ${this.peer.name}: the resumed session's certificate ${presented} is not the directory's ${this.peer.fingerprint}`));
    return false;
  }

  /** Resolves once TLS (both ways) and B's HTTP/2 settings are through, as grpc-js's READY. */
  ready(timeoutMs: number): Promise<void> {
    if (this.isReady) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new PeerTransportError('timeout', `no gRPC channel to ${this.peer.name} within ${timeoutMs} ms`);
        this.closeWith(err);
        reject(err);
      }, timeoutMs);
      const stop = (): void => {
        clearTimeout(timer);
        this.offClose(onClosed);
      };
      const onClosed = (reason: PeerTransportError): void => {
        stop();
        reject(reason.kind === 'closed' ? this.handshakeError(reason) : reason);
      };
      this.onClose(onClosed);
      void this.settingsCame.then(() => {
        stop();
        resolve();
      });
    });
  }

  /** B's HTTP/2 settings: listened for from the start, since `ready` may be asked for after them. */
  private onRemoteSettings(): void {
    timelineMark('h2.ready');
    if (this.closedReason) return;
    // grpc-js's server refuses a connection without ALPN h2; a server that is not one would
    // not have sent HTTP/2 settings. Checked anyway: the bytes after this are gRPC frames.
    if (this.tlsSocket.alpnProtocol !== 'h2') {
      this.closeWith(this.handshakeError(new Error(`ALPN negotiated ${String(this.tlsSocket.alpnProtocol)}, not h2`)));
      return;
    }
    this.isReady = true;
    this.log.debug('peer channel ready');
    this.markReady();
  }

  call(method: string, params?: unknown, id: string = randomUUID()): Promise<unknown> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    let request: CallRequestMessage;
    try {
      request = { method, params_json: paramsJson(params), id, from: this.from };
    } catch (err) {
      return Promise.reject(err);
    }
    let stream: ClientHttp2Stream;
    try {
      stream = this.session.request(
        {
          [h2.HTTP2_HEADER_METHOD]: 'POST',
          [h2.HTTP2_HEADER_PATH]: this.method.path,
          // As grpc-js sends it (grpc.default_authority): the operator's name, no port.
          [h2.HTTP2_HEADER_AUTHORITY]: this.peer.name,
          [h2.HTTP2_HEADER_CONTENT_TYPE]: GRPC_CONTENT_TYPE,
          [h2.HTTP2_HEADER_TE]: 'trailers',
          'grpc-timeout': grpcTimeout(this.callTimeoutMs),
        },
        { endStream: false },
      );
    } catch (err) {
      // The session went away and its close event is still to come.
      return Promise.reject(new PeerTransportError('closed', `connection to ${this.peer.name} lost before ${method}: ${(err as Error).message}`, { cause: err }));
    }
    return new Promise<unknown>((resolve, reject) => {
      const reader = new MessageReader();
      let responseStatus: number | undefined;
      let grpcStatus: number | undefined;
      let grpcMessage = '';
      let settled = false;
      const finish = (outcome: () => unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        this.pending.delete(entry);
        try {
          resolve(outcome());
        } catch (err) {
          reject(err);
        }
      };
      const fail = (reason: PeerTransportError): void => {
        finish(() => {
          throw reason;
        });
        if (!stream.closed) stream.close(h2.NGHTTP2_CANCEL);
      };
      const entry: PendingCall = { fail };
      this.pending.add(entry);
      const deadline = setTimeout(
        () => fail(new PeerTransportError('timeout', `${this.peer.name} did not answer ${method} within ${this.callTimeoutMs} ms`, { grpcCode: status.DEADLINE_EXCEEDED })),
        this.callTimeoutMs,
      );
      const readStatus = (headers: IncomingHttpHeaders): void => {
        const raw = headers['grpc-status'];
        if (raw === undefined) return;
        grpcStatus = Number(raw);
        grpcMessage = decodeGrpcMessage(headers['grpc-message']);
      };
      stream.on('response', (headers) => {
        responseStatus = Number(headers[h2.HTTP2_HEADER_STATUS]);
        const type = String(headers[h2.HTTP2_HEADER_CONTENT_TYPE] ?? '');
        if (responseStatus !== 200 || !type.startsWith(GRPC_CONTENT_TYPE)) {
          fail(new PeerTransportError('transport', `${this.peer.name} answered ${method} with HTTP ${responseStatus} (${type || 'no content-type'}), not gRPC`));
          return;
        }
        readStatus(headers); // a trailers-only answer
      });
      stream.on('data', (chunk: Buffer) => {
        const read = reader.push(chunk);
        if (read.type === 'tooLarge') {
          fail(new PeerTransportError('transport', `${this.peer.name} answered ${method} with a ${read.bytes}-byte message, over the limit`, { grpcCode: status.RESOURCE_EXHAUSTED }));
        } else if (reader.messages.length > 1) {
          // A unary answer is one message; buffering more would let B fill our memory.
          fail(new PeerTransportError('transport', `${this.peer.name} answered ${method} with more than one message`, { grpcCode: status.INTERNAL }));
        } else if (read.type === 'compressed') {
          fail(new PeerTransportError('transport', `${this.peer.name} answered ${method} with a compressed message it was not offered`, { grpcCode: status.INTERNAL }));
        }
      });
      stream.on('trailers', readStatus);
      stream.on('error', (err: Error) => this.log.debug({ err: err.message, method }, 'peer call stream error'));
      stream.once('close', () => {
        if (settled) return;
        if (grpcStatus === undefined) {
          fail(this.closedReason ?? new PeerTransportError('closed', `connection to ${this.peer.name} lost during ${method} (stream reset, code ${stream.rstCode})`, { grpcCode: status.UNAVAILABLE }));
          return;
        }
        if (grpcStatus !== status.OK) {
          fail(this.statusError(method, grpcStatus, grpcMessage));
          return;
        }
        if (reader.messages.length !== 1 || reader.leftover !== 0) {
          fail(new PeerTransportError('transport', `${this.peer.name} answered ${method} with ${reader.messages.length === 0 ? 'no message' : 'an incomplete message'}, not one`, { grpcCode: status.INTERNAL }));
          return;
        }
        finish(() => resultOf(this.peer.name, method, this.method.responseDeserialize(reader.messages[0]!)));
      });
      stream.end(frameMessage(this.method.requestSerialize(request)));
    });
  }

  protected releaseTransport(): void {
    this.session.destroy();
    this.tlsSocket.destroy();
    this.held.destroy();
  }
}
