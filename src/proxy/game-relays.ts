import type { BusHandler } from '../bus/bus.js';
import { RpcError, type RelayCapacityLimit } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { RELAY_PROTOCOL_VERSION, relayRequestParamsSchema, type RelayGrantWire, type RelayLimits } from '../relay/protocol.js';
import type { OpenedSession, SessionMessengers, SessionOptions } from './session-registry.js';

// The proxy side of `relayRequest` (src/relay/protocol.ts), served on the signed bus: by the time
// the handler runs, the bus has checked the envelope's signature against the directory and that
// its signer may call relayRequest, so `from` is a proven rendezvous operator. Each request opens
// a session of the same brokering machine and splicer that EPS operators use.
//
// Nobody is on the bus to notify or confirm, so both messengers succeed at once: "B was told"
// means the rendezvous holds the grant. They must stay free of I/O: a second peer dialing right
// behind the first is accepted only once confirmToA is done, which today happens in the same
// microtask drain as B_DIALED.

const RELAY_MESSENGERS: SessionMessengers = {
  notifyB: async () => ({ accepted: true }),
  confirmToA: async () => {},
};

export interface GameRelaysOptions {
  endpoint: string;
  /** Both peers must have dialed this long after the grant; the session ends then otherwise. */
  dialWithinMs: number;
  /** Relay sessions open at once (waiting or spliced), all requesters together. */
  maxLive: number;
  /** The same, for one requester: a flood from one rendezvous leaves room for the others. */
  maxLivePerRequester: number;
  limits: RelayLimits;
  open: (request: { a: string; b: string; endpoint: string }, via: SessionOptions) => OpenedSession;
  log: Logger;
}

export class GameRelays {
  readonly #opts: GameRelaysOptions;
  readonly #log: Logger;
  #live = 0;
  readonly #liveBy = new Map<string, number>();

  constructor(opts: GameRelaysOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'game-relays' });
  }

  /** Relay sessions open now, for `requester` or in all. */
  live(requester?: string): number {
    return requester === undefined ? this.#live : (this.#liveBy.get(requester) ?? 0);
  }

  /** Bus handler for `relayRequest`; `from` is the rendezvous, proven by its envelope signature. */
  handle: BusHandler = async (params, from) => {
    const checked = relayRequestParamsSchema.safeParse(params);
    if (!checked.success) {
      const detail = checked.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`).join('; ');
      this.#log.warn({ from, detail }, 'malformed relay request');
      throw new RpcError('INVALID_PARAMS', detail);
    }
    const { game } = checked.data;
    const { maxLive, maxLivePerRequester } = this.#opts;
    const mine = this.live(from);
    // The requester's own cap first: when both are full, that is the one it can do something about.
    if (mine >= maxLivePerRequester) {
      this.#log.warn({ from, game, live: mine }, 'relay refused: the requester holds its limit of relay sessions');
      throw new RpcError('RELAY_CAPACITY', `${from} has ${mine} relay sessions open, its limit of ${maxLivePerRequester} per requester; retry shortly`, {
        data: { limit: 'requester' satisfies RelayCapacityLimit, max: maxLivePerRequester },
      });
    }
    if (this.#live >= maxLive) {
      this.#log.warn({ from, game, live: this.#live }, 'relay refused: too many relay sessions open');
      throw new RpcError('RELAY_CAPACITY', `the proxy has ${this.#live} relay sessions open, its limit of ${maxLive}; retry shortly`, {
        data: { limit: 'proxy' satisfies RelayCapacityLimit, max: maxLive },
      });
    }
    const { endpoint, dialWithinMs, limits } = this.#opts;
    const session = this.#opts.open(
      // Labels for logs and the inspector: which peer dials first is not known yet.
      { a: `${from}/${game}/second`, b: `${from}/${game}/first`, endpoint },
      { messengers: RELAY_MESSENGERS, dialWithinMs, proofs: false, limits },
    );
    this.#live++;
    this.#liveBy.set(from, mine + 1);
    void session.done.then(() => {
      this.#live--;
      const left = (this.#liveBy.get(from) ?? 1) - 1;
      if (left > 0) this.#liveBy.set(from, left);
      else this.#liveBy.delete(from);
    });
    this.#log.info({ sessionId: session.sessionId, game, from }, 'relay session opened');
    const grant: RelayGrantWire = {
      v: RELAY_PROTOCOL_VERSION,
      sessionId: session.sessionId,
      tokens: { host: session.tokens.a.toString('base64'), guest: session.tokens.b.toString('base64') },
      endpoint,
      dialWithinMs,
      limits,
    };
    return grant;
  };
}
