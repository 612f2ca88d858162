import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { DEFAULT_PREAMBLE_TIMEOUT_MS } from '../core/constants.js';
import { SPLICE_CLOSE_REASONS, type SpliceCloseReason } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { PreambleClosed, PreambleInvalid, PreambleTimeout, readPreamble, type Preamble } from '../core/splice-wire.js';
import { tokenId } from './token-store.js';

// The splice endpoint only reads preambles and asks `route` what to do with them (as circuit
// relay's handler asks its reservation store). It owns a socket until `route` says ROUTED, and
// destroys every socket it did not hand over.

/** What route() may answer besides ROUTED: the session's verdict on a complete preamble. */
export type RouteRefusal = Extract<SpliceCloseReason, 'UNKNOWN_TOKEN' | 'TOKEN_USED' | 'WRONG_STATE' | 'BAD_PROOF'>;
export type RouteStatus = 'ROUTED' | RouteRefusal;

/** Decides a socket's fate; on ROUTED the socket (and `rest`) now belong to the callee. */
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
}

export interface SpliceEndpointEvents {
  rejected: [reason: RejectReason];
  routed: [];
}

export class SpliceEndpoint extends EventEmitter<SpliceEndpointEvents> {
  readonly #server: Server;
  readonly #unrouted = new Set<Socket>();
  readonly #options: SpliceEndpointOptions;
  readonly #log: Logger;
  readonly #preambleTimeoutMs: number;

  constructor(options: SpliceEndpointOptions) {
    super();
    this.#options = options;
    this.#log = options.log.child({ component: 'splice-endpoint' });
    this.#preambleTimeoutMs = options.preambleTimeoutMs ?? DEFAULT_PREAMBLE_TIMEOUT_MS;
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

  /** Connections still reading their preamble. */
  unroutedCount(): number {
    return this.#unrouted.size;
  }

  /**
   * Stops accepting and drops connections that were never routed. Resolves once every accepted
   * connection is gone, so shut the session registry down first (or this waits for sessions).
   */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      for (const socket of this.#unrouted) socket.destroy();
      this.#unrouted.clear();
    });
  }

  async #accept(socket: Socket): Promise<void> {
    // Every socket on the path needs this, or small gRPC exchanges stall on Nagle + delayed ACK.
    socket.setNoDelay(true);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    // Stays for the socket's lifetime: whoever owns the socket later adds its own handling, but
    // an 'error' with no listener in some gap would crash the process.
    socket.on('error', (err) => this.#log.debug({ remote, err: err.message }, 'splice socket error'));
    this.#unrouted.add(socket);

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
    let status: RouteStatus;
    try {
      status = this.#options.route({ token, proof }, socket, rest);
    } catch (err) {
      this.#reject(socket, 'ROUTE_ERROR', { remote, tokenId: tokenId(token), err: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (status === 'ROUTED') {
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
    // A closed-early dialer is ordinary network noise; a bad token is worth a warning.
    const level = reason === 'PREAMBLE_CLOSED' ? 'info' : 'warn';
    this.#log[level]({ ...fields, reason }, 'splice connection refused');
    this.emit('rejected', reason);
  }
}
