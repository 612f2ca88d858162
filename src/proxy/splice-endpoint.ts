import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import {
  DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS,
  DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS,
  DEFAULT_PREAMBLE_TIMEOUT_MS,
  DEFAULT_REFUSAL_LOG_INTERVAL_MS,
} from '../core/constants.js';
import { SPLICE_CLOSE_REASONS, type SpliceCloseReason } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { PreambleClosed, PreambleInvalid, PreambleTimeout, readPreamble, type Preamble } from '../core/splice-wire.js';
import { timelineMark } from '../core/timeline.js';
import { PendingConnections } from './pending-connections.js';
import { RefusalLog } from './refusal-log.js';
import { tokenId } from './token-store.js';

// The splice endpoint only reads preambles and asks `route` what to do with them (as circuit
// relay's handler asks its reservation store). It owns a socket until `route` says ROUTED, and
// destroys every socket it did not hand over. Connections still sending their preamble are
// capped per source address and in all, so silent ones cannot hold the proxy's descriptors.

/** What route() may answer besides ROUTED: the session's verdict on a complete preamble. */
export type RouteRefusal = Extract<SpliceCloseReason, 'UNKNOWN_TOKEN' | 'TOKEN_USED' | 'WRONG_STATE' | 'BAD_PROOF'>;
export type RouteStatus = 'ROUTED' | RouteRefusal;

/**
 * Decides a socket's fate; on ROUTED the socket (and `rest`) now belong to the callee. It logs
 * its BAD_PROOF verdicts itself (only it knows the leg and why); the endpoint counts them.
 */
export type RouteFn = (preamble: Pick<Preamble, 'token' | 'proof'>, socket: Socket, rest: Buffer) => RouteStatus;

/** Every reason the endpoint closes a socket it did not route (the catalogue is in core/errors.ts). */
export type RejectReason = SpliceCloseReason;
export const REJECT_REASONS = Object.keys(SPLICE_CLOSE_REASONS) as RejectReason[];

export interface SpliceEndpointOptions {
  host: string;
  port: number;
  route: RouteFn;
  log: Logger;
  preambleTimeoutMs?: number;
  /** Connections still sending their preamble, all source addresses together. */
  maxPending?: number;
  /** The same, from one source address (an IPv6 /64). */
  maxPendingPerAddress?: number;
  /** Refusals of one reason are logged at most once per this long, with a count. */
  refusalLogIntervalMs?: number;
}

/** Refusals the route function has already logged (see RouteFn). */
const LOGGED_BY_ROUTE: ReadonlySet<RejectReason> = new Set<RejectReason>(['BAD_PROOF']);

export interface SpliceEndpointEvents {
  rejected: [reason: RejectReason];
  routed: [];
}

export class SpliceEndpoint extends EventEmitter<SpliceEndpointEvents> {
  readonly #server: Server;
  readonly #unrouted: PendingConnections;
  readonly #options: SpliceEndpointOptions;
  readonly #log: Logger;
  readonly #refusals: RefusalLog;
  readonly #preambleTimeoutMs: number;
  #closed = false;

  constructor(options: SpliceEndpointOptions) {
    super();
    this.#options = options;
    this.#log = options.log.child({ component: 'splice-endpoint' });
    this.#preambleTimeoutMs = options.preambleTimeoutMs ?? DEFAULT_PREAMBLE_TIMEOUT_MS;
    this.#unrouted = new PendingConnections(
      options.maxPending ?? DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS,
      options.maxPendingPerAddress ?? DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS,
    );
    this.#refusals = new RefusalLog(this.#log, options.refusalLogIntervalMs ?? DEFAULT_REFUSAL_LOG_INTERVAL_MS, 'splice connection refused');
    // Half-open: a peer that finished sending may still be waiting for the other side's answer.
    this.#server = createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#options.port, this.#options.host, () => {
        this.#server.off('error', reject);
        const address = this.#server.address() as AddressInfo;
        this.#log.info({ host: address.address, port: address.port }, 'splice endpoint listening');
        resolve(address);
      });
    });
  }

  address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  /** Connections still reading their preamble, in all or from one source address. */
  unroutedCount(remoteAddress?: string): number {
    return remoteAddress === undefined ? this.#unrouted.size : this.#unrouted.from(remoteAddress);
  }

  /**
   * Stops accepting and drops connections that were never routed. Resolves once every accepted
   * connection is gone, so shut the session registry down first (or this waits for sessions).
   */
  close(): Promise<void> {
    this.#closed = true;
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#unrouted.sockets()) socket.destroy();
      this.#unrouted.clear();
      this.#refusals.flush();
    });
  }

  async #accept(socket: Socket): Promise<void> {
    timelineMark('splice.accept');
    // Every socket on the path needs this, or small gRPC exchanges stall on Nagle + delayed ACK.
    socket.setNoDelay(true);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    // Stays for the socket's lifetime: whoever owns the socket later adds its own handling, but
    // an 'error' with no listener in some gap would crash the process.
    socket.on('error', (err) => this.#log.debug({ remote, err: err.message }, 'splice socket error'));
    const pending = this.#unrouted.add(socket);
    if (pending !== 'ok') {
      // Unread, before any timer or buffer is spent on it; a reset leaves no TIME_WAIT behind.
      socket.resetAndDestroy();
      const max = pending === 'address' ? this.#unrouted.maxPerSource : this.#unrouted.maxTotal;
      this.#refused('TOO_MANY_PENDING', { remote, limit: pending, max });
      return;
    }

    let preamble: Preamble;
    try {
      preamble = await readPreamble(socket, { timeoutMs: this.#preambleTimeoutMs });
    } catch (err) {
      if (err instanceof PreambleTimeout) this.#reject(socket, 'PREAMBLE_TIMEOUT', { remote, received: err.received });
      else if (err instanceof PreambleClosed) this.#reject(socket, 'PREAMBLE_CLOSED', { remote, received: err.received });
      else if (err instanceof PreambleInvalid) this.#reject(socket, 'PREAMBLE_INVALID', { remote, received: err.received, detail: err.message });
      else this.#reject(socket, 'ROUTE_ERROR', { remote, err: String(err) });
      return;
    }
    if (!this.#unrouted.has(socket)) {
      // close() ran while we were reading.
      socket.destroy();
      return;
    }

    const { token, proof, rest } = preamble;
    timelineMark('splice.preamble');
    let status: RouteStatus;
    try {
      status = this.#options.route({ token, proof }, socket, rest);
    } catch (err) {
      this.#reject(socket, 'ROUTE_ERROR', { remote, tokenId: tokenId(token), err: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (status === 'ROUTED') {
      timelineMark('splice.routed');
      this.#unrouted.delete(socket);
      this.#log.debug({ remote, tokenId: tokenId(token) }, 'splice socket routed');
      this.emit('routed');
      return;
    }
    this.#reject(socket, status, { remote, tokenId: tokenId(token) });
  }

  #reject(socket: Socket, reason: RejectReason, fields: Record<string, unknown>): void {
    this.#unrouted.delete(socket);
    socket.destroy();
    this.#refused(reason, fields);
  }

  #refused(reason: RejectReason, fields: Record<string, unknown>): void {
    // A closed-early dialer is ordinary network noise; a bad token is worth a warning.
    // Once closing, the refusals are the ones close() caused: no log line, and no timer left behind.
    if (!this.#closed && !LOGGED_BY_ROUTE.has(reason)) this.#refusals.refused(reason, reason === 'PREAMBLE_CLOSED' ? 'info' : 'warn', fields);
    this.emit('rejected', reason);
  }
}
