import { assign, fromPromise, setup } from 'xstate';

// A's side of a brokered channel to one peer B: take B's route as the directory gave it, ask B's
// proxy for a session, dial the proxy with the token, run TLS and gRPC over the spliced socket,
// then keep the channel open for later calls until it idles out or the connection is lost. Actors
// are placeholders: src/eps/peer-channels.ts provides the implementations that do the I/O.
//
// The route is looked up before the actor starts and comes in as input (a route, or why there is
// none), so `resolving` decides at once: an invoked look-up cost a child actor and a turn of the
// event loop on the path of every new channel, for what is a read of the directory in memory.

export type Route = { type: 'proxy'; proxy: string } | { type: 'direct'; address: string };
export interface Ticket {
  endpoint: string;
}

export type PeerConnectionFailure =
  | 'unknownPeer'
  | 'noRoute'
  | 'brokeringFailed'
  | 'dialFailed'
  | 'dialTimedOut'
  | 'tlsFailed'
  | 'cancelled';

export type PeerConnectionOutput =
  | { outcome: 'closed'; detail: 'idle' | 'lost' | 'closed' }
  | { outcome: 'failed'; reason: PeerConnectionFailure; detail: string };

export type PeerConnectionEvent =
  | { type: 'CALL_STARTED' }
  | { type: 'CALL_FINISHED' }
  | { type: 'CONNECTION_LOST'; detail?: string }
  | { type: 'CLOSE' };

/** What the directory says of the peer: its route, or why A has none. */
export type PeerConnectionInput = { peer: string; route: Route } | { peer: string; failure: { reason: 'unknownPeer' | 'noRoute'; detail: string } };

export interface PeerConnectionContext {
  peer: string;
  route: Route | undefined;
  callsInFlight: number;
  failure: { reason: PeerConnectionFailure; detail: string } | undefined;
}

/** Errors from actors carry the failure reason so the final output names it. */
export class PeerConnectionError extends Error {
  override readonly name = 'PeerConnectionError';
  constructor(
    readonly reason: PeerConnectionFailure,
    message: string,
    readonly code?: number,
  ) {
    super(message);
  }
}

function toFailure(err: unknown, fallback: PeerConnectionFailure): { reason: PeerConnectionFailure; detail: string } {
  if (err instanceof PeerConnectionError) return { reason: err.reason, detail: err.message };
  return { reason: fallback, detail: err instanceof Error ? err.message : String(err) };
}

export const peerConnectionMachine = setup({
  types: {
    input: {} as PeerConnectionInput,
    context: {} as PeerConnectionContext,
    events: {} as PeerConnectionEvent,
    output: {} as PeerConnectionOutput,
  },
  actors: {
    requestConnection: fromPromise<Ticket, { peer: string; proxy: string }>(async () => {
      throw new Error('requestConnection not provided');
    }),
    dialPeer: fromPromise<void, { peer: string; route: Route }>(async () => {
      throw new Error('dialPeer not provided');
    }),
    openChannel: fromPromise<void, { peer: string }>(async () => {
      throw new Error('openChannel not provided');
    }),
  },
  actions: {
    /** Releases whatever socket or channel the I/O layer holds for this peer. */
    releaseChannel: () => {},
  },
  guards: {
    hasNoRoute: ({ context }) => context.route === undefined,
    viaProxy: ({ context }) => context.route?.type === 'proxy',
    isIdle: ({ context }) => context.callsInFlight === 0,
  },
  delays: {
    dialTimeout: 10_000,
    idleTimeout: 60_000,
  },
}).createMachine({
  id: 'peerConnection',
  // Each final state words its own output; the machine's output is whichever one it reached.
  output: ({ event }) => event.output as PeerConnectionOutput,
  context: ({ input }) => ({
    peer: input.peer,
    route: 'route' in input ? input.route : undefined,
    callsInFlight: 0,
    failure: 'failure' in input ? input.failure : undefined,
  }),
  initial: 'resolving',
  on: { CLOSE: { target: '.cancelled' } },
  states: {
    resolving: {
      always: [{ guard: 'hasNoRoute', target: 'failed' }, { guard: 'viaProxy', target: 'requesting' }, { target: 'dialing' }],
    },
    requesting: {
      invoke: {
        src: 'requestConnection',
        input: ({ context }) => ({ peer: context.peer, proxy: (context.route as { proxy: string }).proxy }),
        onDone: { target: 'dialing' },
        onError: { target: 'failed', actions: assign({ failure: ({ event }) => toFailure(event.error, 'brokeringFailed') }) },
      },
    },
    dialing: {
      invoke: {
        src: 'dialPeer',
        input: ({ context }) => ({ peer: context.peer, route: context.route! }),
        onDone: { target: 'securing' },
        onError: { target: 'failed', actions: assign({ failure: ({ event }) => toFailure(event.error, 'dialFailed') }) },
      },
      after: {
        dialTimeout: {
          target: 'failed',
          actions: assign({ failure: ({ context }) => ({ reason: 'dialTimedOut' as const, detail: `no connection to ${context.peer} in time` }) }),
        },
      },
    },
    securing: {
      invoke: {
        src: 'openChannel',
        input: ({ context }) => ({ peer: context.peer }),
        onDone: { target: 'open' },
        onError: { target: 'failed', actions: assign({ failure: ({ event }) => toFailure(event.error, 'tlsFailed') }) },
      },
      on: {
        CONNECTION_LOST: {
          target: 'failed',
          actions: assign({ failure: ({ event }) => ({ reason: 'tlsFailed' as const, detail: event.detail ?? 'connection lost during TLS' }) }),
        },
      },
    },
    open: {
      // The idle timer restarts on every call event; it only closes a channel with no call in flight.
      after: { idleTimeout: [{ guard: 'isIdle', target: 'idle' }, { target: 'open', reenter: true }] },
      on: {
        CALL_STARTED: { target: 'open', reenter: true, actions: assign({ callsInFlight: ({ context }) => context.callsInFlight + 1 }) },
        CALL_FINISHED: { target: 'open', reenter: true, actions: assign({ callsInFlight: ({ context }) => Math.max(0, context.callsInFlight - 1) }) },
        CONNECTION_LOST: { target: 'lost' },
      },
    },
    idle: { type: 'final', entry: 'releaseChannel', output: { outcome: 'closed', detail: 'idle' } },
    lost: { type: 'final', entry: 'releaseChannel', output: { outcome: 'closed', detail: 'lost' } },
    cancelled: {
      type: 'final',
      entry: 'releaseChannel',
      output: ({ context }) => ({ outcome: 'failed', reason: 'cancelled', detail: `channel to ${context.peer} closed by its owner` }),
    },
    failed: {
      type: 'final',
      entry: 'releaseChannel',
      output: ({ context }) => ({
        outcome: 'failed',
        reason: context.failure?.reason ?? 'dialFailed',
        detail: context.failure?.detail ?? 'unknown failure',
      }),
    },
  },
});
