import { assign, fromPromise, setup } from 'xstate';

// B's side of a brokered session: P forwarded A's connection request with a token and the
// endpoint to dial. B's directory has judged the request before the actor starts (its verdict is
// the input, so `verifying` decides at once rather than through an invoked check and a turn of
// the event loop on the path of every brokering); B dials P (B opens no listening
// port: dialing out is how it becomes reachable), sends the token, and hands the socket to its
// gRPC server, which then serves A over end-to-end mTLS until the connection closes.
//
// B answers P's forward when it knows how it went: refused at once, failed when the dial fails
// (so that P ends the session then rather than at its own bDialTimeout), and accepted a little
// after its dial is through (`settling`). P reads an acceptance only while it still waits for
// B's socket, and B's token is on its way to P by then, so P nearly always holds the socket first
// and drops the answer unread. Sent at once, the acceptance landed in the few milliseconds in
// which A's confirmation, A's dial and the TLS handshake through P are made: B's signature, the
// bus's forwarding and P's read of it took CPU from that path on every brokering (0.5-1.3 ms of a
// brokered call's p50 on a 2-core machine). Answering before the dial was worse still: the
// signature came ahead of the dial on B's event loop. Whatever ends `settling` sends the
// acceptance on its way out (the delay, a closed connection, a shutdown), so P hears the same
// answers as before, only later.

export type CallbackRefusal = 'notPermitted' | 'wrongProxy' | 'unknownPeer' | 'malformed';

export type CallbackOutput =
  | { outcome: 'refused'; reason: CallbackRefusal; detail: string }
  | { outcome: 'dialFailed'; detail: string }
  | { outcome: 'closed'; detail: string }
  | { outcome: 'shutDown' };

export type CallbackEvent = { type: 'CONNECTION_CLOSED'; detail?: string } | { type: 'SHUTDOWN' };

export interface CallbackInput {
  /** The operator that asked for the connection (A), as the proxy's signed envelope names it. */
  requester: string;
  /** The proxy operator that forwarded the request. */
  proxy: string;
  endpoint: string;
  /** Why B's directory refuses the request; absent when it allows it. */
  refusal?: { reason: CallbackRefusal; detail: string };
}

export const callbackMachine = setup({
  types: {
    input: {} as CallbackInput,
    context: {} as Omit<CallbackInput, 'refusal'> & { detail: string; refusal: CallbackRefusal | undefined },
    events: {} as CallbackEvent,
    output: {} as CallbackOutput,
  },
  actors: {
    dialProxy: fromPromise<void, { endpoint: string }>(async () => {
      throw new Error('dialProxy not provided');
    }),
  },
  actions: {
    /** Tells P (the pending bus reply) that B accepted and its dial went through. */
    answerAccepted: () => {},
    /** Tells P that B refused the request (context.detail says why). */
    answerRefused: () => {},
    /** Tells P that B accepted but could not dial (context.detail says why). */
    answerDialFailed: () => {},
    /** Gives the dialed socket to the gRPC server; from then on gRPC owns it. */
    injectSocket: () => {},
    closeSocket: () => {},
  },
  guards: {
    isRefused: ({ context }) => context.refusal !== undefined,
  },
  // answerDelay: how long B's acceptance waits after the dial (see `settling`).
  delays: { dialTimeout: 10_000, answerDelay: 100 },
}).createMachine({
  id: 'callback',
  // Each final state words its own output; the machine's output is whichever one it reached.
  output: ({ event }) => event.output as CallbackOutput,
  context: ({ input }) => ({
    requester: input.requester,
    proxy: input.proxy,
    endpoint: input.endpoint,
    detail: input.refusal?.detail ?? '',
    refusal: input.refusal?.reason,
  }),
  initial: 'verifying',
  on: { SHUTDOWN: { target: '.shutDown' } },
  states: {
    verifying: {
      always: [{ guard: 'isRefused', target: 'refused', actions: 'answerRefused' }, { target: 'dialing' }],
    },
    dialing: {
      invoke: {
        src: 'dialProxy',
        input: ({ context }) => ({ endpoint: context.endpoint }),
        onDone: { target: 'serving', actions: 'injectSocket' },
        onError: { target: 'dialFailed', actions: assign({ detail: ({ event }) => String((event.error as Error)?.message ?? event.error) }) },
      },
      after: { dialTimeout: { target: 'dialFailed', actions: assign({ detail: 'no connection to the proxy in time' }) } },
    },
    serving: {
      on: { CONNECTION_CLOSED: { target: 'closed', actions: assign({ detail: ({ event }) => event.detail ?? 'peer closed' }) } },
      initial: 'settling',
      states: {
        /** The splice is being made through P; B's acceptance waits, and leaves with any way out. */
        settling: { exit: 'answerAccepted', after: { answerDelay: { target: 'answered' } } },
        answered: {},
      },
    },
    refused: {
      type: 'final',
      output: ({ context }) => ({ outcome: 'refused', reason: context.refusal ?? 'malformed', detail: context.detail }),
    },
    dialFailed: { type: 'final', entry: ['closeSocket', 'answerDialFailed'], output: ({ context }) => ({ outcome: 'dialFailed', detail: context.detail }) },
    closed: { type: 'final', output: ({ context }) => ({ outcome: 'closed', detail: context.detail }) },
    shutDown: { type: 'final', entry: 'closeSocket', output: { outcome: 'shutDown' } },
  },
});
