import type { Socket } from 'node:net';
import { dialTcp } from '../core/dial.js';

// A new brokered channel waits ~10 ms for the proxy's confirmation and only then dials the
// endpoint it names: the TCP connect, and the turn of the event loop that reports it, sat on the
// critical path of every brokering. The proxy's endpoint rarely changes, so A dials the one its
// last confirmation named while the request is still in flight, and presents its preamble on that
// socket once the confirmation arrives. The connection carries nothing before the preamble, so
// the proxy learns nothing from it and routes it exactly as a later dial: a stranger holding such
// a socket still needs the token and A's proof to be spliced. Whatever does not fit (another
// endpoint, a closed or old socket) is closed and A dials the confirmed endpoint as before.

export interface WarmDialsOptions {
  /**
   * A warm socket older than this is not used: the proxy closes connections that send no
   * preamble in time (`splice.timeouts.preambleMs`, 3 s by default), and a preamble written just
   * as it does would be lost with the channel.
   */
  maxAgeMs: number;
  /**
   * Warm sockets waiting per proxy. The proxy caps the connections one address holds open
   * without a preamble (`splice.maxPendingPerAddress`, 16 by default); warm sockets beyond a few
   * would take the places A's own confirmed dials need.
   */
  maxPerProxy: number;
}

export const DEFAULT_WARM_DIALS: WarmDialsOptions = { maxAgeMs: 1_000, maxPerProxy: 4 };

/** One early dial to a proxy's last-known endpoint, for one channel. */
export interface WarmDial {
  /**
   * The socket, when it is connected to `endpoint`, open and fresh; otherwise closes it. Never
   * waits: a dial not through by the time the confirmation is (several bus hops later) is one
   * the confirmed dial would not beat.
   */
  take(endpoint: string): Socket | undefined;
  /** Closes the socket unless it was taken. Idempotent. */
  discard(): void;
}

export class WarmDials {
  /** Each proxy's endpoint as its last verified confirmation named it. */
  private readonly endpoints = new Map<string, string>();
  /** Warm dials per proxy not yet taken or discarded. */
  private readonly waiting = new Map<string, number>();

  constructor(
    private readonly options: WarmDialsOptions = DEFAULT_WARM_DIALS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records where `proxy` asked A to dial (from a confirmation whose signature was checked). */
  learn(proxy: string, endpoint: string): void {
    this.endpoints.set(proxy, endpoint);
  }

  /** Starts a dial to `proxy`'s last endpoint, or returns undefined when there is none to start. */
  start(proxy: string): WarmDial | undefined {
    const endpoint = this.endpoints.get(proxy);
    const waiting = this.waiting.get(proxy) ?? 0;
    if (endpoint === undefined || waiting >= this.options.maxPerProxy) return undefined;
    this.waiting.set(proxy, waiting + 1);

    let state: 'waiting' | 'taken' | 'discarded' = 'waiting';
    let socket: Socket | undefined;
    let connectedAt = 0;
    // A socket nobody took within maxAgeMs is of no use any more (take would refuse it): closed
    // then, and its place freed, rather than left silent on the proxy's port until the request
    // ends (up to busRequestMs) and held against this proxy's maxPerProxy all that time.
    let expiry: NodeJS.Timeout | undefined;
    const end = (next: 'taken' | 'discarded'): void => {
      state = next;
      clearTimeout(expiry);
      const left = (this.waiting.get(proxy) ?? 1) - 1;
      if (left > 0) this.waiting.set(proxy, left);
      else this.waiting.delete(proxy);
    };
    // Bounded by maxAgeMs as well: a dial not through by then is of no use, and one discarded
    // while still connecting (a proxy port that does not answer SYNs) would otherwise hold its
    // descriptor for the kernel's SYN retries, outside the maxPerProxy count.
    dialTcp(endpoint, { timeoutMs: this.options.maxAgeMs }).then(
      (s) => {
        s.on('error', () => {}); // a warm socket the proxy reset is simply not used
        if (state === 'discarded') s.destroy();
        else {
          socket = s;
          connectedAt = this.now();
          expiry = setTimeout(discard, this.options.maxAgeMs);
          expiry.unref();
        }
      },
      () => discard(), // the endpoint moved or is down: the confirmed dial will say so; its place is free
    );
    const discard = (): void => {
      if (state !== 'waiting') return;
      end('discarded');
      socket?.destroy();
    };
    return {
      take: (wanted) => {
        const s = socket;
        const usable = state === 'waiting' && s !== undefined && wanted === endpoint && !s.destroyed && s.readyState === 'open' && this.now() - connectedAt <= this.options.maxAgeMs;
        if (!usable) {
          discard();
          return undefined;
        }
        end('taken'); // from here on the channel owns it
        return s;
      },
      discard,
    };
  }
}
