import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import type { Logger } from '../core/logger.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { callMethodDefinition, type CallRequestMessage, type CallResponseMessage } from './peer-server.js';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  paramsJson,
  PeerClientBase,
  PeerTransportError,
  resultOf,
  secureContextFor,
  type ExpectedPeer,
  type PeerClient,
  type PeerClientDirectOptions,
  type PendingCall,
} from './peer-transport.js';

/** Largest delay setTimeout honours; grpc-js would otherwise drop an idle channel after 30 min. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A grpc-js client for a peer that can be dialed directly; grpc-js dials (and sets noDelay)
 * itself. It is also what an operator would run instead of brokering, the anchor of
 * bench/brokering.ts. (Over a socket A already holds, see src/grpc/spliced-client.ts.)
 */
export async function connectPeerClientDirect(opts: PeerClientDirectOptions): Promise<PeerClient> {
  const log = (opts.log ?? silentLogger()).child({ component: 'peer-client', peer: opts.expectedPeer.name, address: opts.address });
  const client = new GrpcPeerClient(opts.address, opts.tls, opts.expectedPeer, log, opts.callTimeoutMs);
  await client.waitReady(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  return client;
}

class GrpcPeerClient extends PeerClientBase {
  private readonly client: grpc.Client;
  private readonly method = callMethodDefinition();

  constructor(target: string, tls: TlsMaterial, expected: ExpectedPeer, log: Logger, callTimeoutMs: number | undefined) {
    super(tls, expected, log, callTimeoutMs);
    // grpc-js calls checkServerIdentity with the override name below.
    const credentials = grpc.credentials.createFromSecureContext(secureContextFor(tls), { checkServerIdentity: this.identityCheck() });
    this.client = new grpc.Client(target, credentials, {
      // B must prove it is the operator we asked for, whatever address it was dialed at.
      'grpc.ssl_target_name_override': expected.name,
      'grpc.default_authority': expected.name,
      // One PeerClient, one connection: never share a subchannel with another client to the same target.
      'grpc.use_local_subchannel_pool': 1,
      // A retry would need a new connection, which the held socket cannot give.
      'grpc.enable_retries': 0,
      // The owner decides when an unused channel goes away (DEFAULT_CHANNEL_IDLE_TIMEOUT_MS).
      'grpc.client_idle_timeout_ms': MAX_TIMER_MS,
      // No reconnect tuning: the channel is closed as soon as it leaves READY. (Huge backoff
      // values also overflow grpc-js's BackoffTimeout.reset into a 1 ms timer.)
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

  call(method: string, params?: unknown, id: string = randomUUID()): Promise<unknown> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    let params_json: string;
    try {
      params_json = paramsJson(params);
    } catch (err) {
      return Promise.reject(err);
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
          if (err) return reject(this.statusError(method, err.code, err.details, err));
          try {
            resolve(resultOf(this.peer.name, method, res));
          } catch (answered) {
            reject(answered);
          }
        },
      );
      this.pending.add(entry);
    });
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

  protected releaseTransport(): void {
    this.client.close();
  }
}

function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
