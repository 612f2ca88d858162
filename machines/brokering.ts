import { assertEvent, assign, fromCallback, fromPromise, sendTo, setup } from 'xstate';

// One brokering session in proxy P: A asked (over the bus) to reach B; P forwarded the request
// with B's leg token; B dials P first (so B never needs an open port), then P confirms to A with
// A's leg token, A dials and P splices the two sockets.
//
// Tokens and proofs never enter this machine: the session registry holds the tokens, and only a
// dial with a live token and a valid proof by its leg's operator becomes B_DIALED or A_DIALED.
// Those are facts about who dialed; whether the session can use that dial now (A before its
// confirmation, B twice, A twice) is the machine's call, and it rejects the ones it cannot. Sockets never enter `context` either: they ride on B_DIALED / A_DIALED only long enough to
// be forwarded to the `splicer` child, which owns them and is the one place that closes them.

export interface BrokeringInput {
  sessionId: string;
  /** The requesting operator. */
  a: string;
  /** The target operator, reachable only through this proxy. */
  b: string;
  /** The splice endpoint both sides dial, as announced to them (host:port). */
  endpoint: string;
}

export interface BrokeringContext extends BrokeringInput {
  detail: string | undefined;
  bytesAToB: number;
  bytesBToA: number;
}

export type NotifyResult = { accepted: true } | { accepted: false; reason: string; notPermitted?: boolean };

/**
 * Why the splicer stopped relaying; `completed` means both directions ended cleanly. `idle`,
 * `durationLimit` and `byteLimit` are the proxy's own limits (a relay grant's, or the idle
 * timeout every splice has), so a held session always ends and says which limit ended it.
 */
export const SPLICE_END_REASONS = [
  'completed',
  'aError',
  'bError',
  'aClosed',
  'bClosed',
  'bClosedBeforeA',
  'idle',
  'durationLimit',
  'byteLimit',
] as const;
export type SpliceEndReason = (typeof SPLICE_END_REASONS)[number];

export type BrokeringEvent =
  /** B's socket presented B's token (and proof). `rest` holds bytes B sent after the preamble. */
  | { type: 'B_DIALED'; socket: unknown; rest: Uint8Array }
  /** A's socket presented A's token (and proof). */
  | { type: 'A_DIALED'; socket: unknown; rest: Uint8Array }
  /** Reported by the splicer: B's socket ended or failed before A attached. */
  | { type: 'B_CLOSED'; detail?: string }
  /** Reported by the splicer once both sockets are gone. */
  | { type: 'SPLICE_ENDED'; reason: SpliceEndReason; bytesAToB: number; bytesBToA: number }
  | { type: 'SHUTDOWN' };

/** What the machine tells the splicer: sockets handed over, in this order. */
export type SplicerEvent =
  | { type: 'ATTACH_B'; socket: unknown; rest: Uint8Array }
  | { type: 'ATTACH_A'; socket: unknown; rest: Uint8Array };

export interface SplicerInput {
  sessionId: string;
}

export const BROKERING_OUTCOMES = [
  'closed',
  'bRefused',
  'bNotPermitted',
  'busFailed',
  'bNeverDialed',
  'aNeverDialed',
  'peerClosedEarly',
  'shutDown',
] as const;

export type BrokeringOutcome = (typeof BROKERING_OUTCOMES)[number];

export interface BrokeringOutput {
  outcome: BrokeringOutcome;
  detail?: string;
}

function errorDetail(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function finalState<O extends BrokeringOutcome>(outcome: O) {
  return {
    type: 'final' as const,
    output: ({ context }: { context: BrokeringContext }): BrokeringOutput =>
      context.detail === undefined ? { outcome } : { outcome, detail: context.detail },
  };
}

export const brokeringMachine = setup({
  types: {
    input: {} as BrokeringInput,
    context: {} as BrokeringContext,
    events: {} as BrokeringEvent,
    output: {} as BrokeringOutput,
  },
  actors: {
    /** Forwards A's request to B over the bus (with B's token, which src holds). */
    notifyB: fromPromise<NotifyResult, BrokeringInput>(async () => {
      throw new Error('notifyB not provided');
    }),
    /** Replies to A's pending bus request with A's token and the endpoint. */
    confirmToA: fromPromise<void, BrokeringInput>(async () => {
      throw new Error('confirmToA not provided');
    }),
    /** Owns both sockets from B's dial until the session ends. */
    splicer: fromCallback<SplicerEvent, SplicerInput>(() => {
      throw new Error('splicer not provided');
    }),
  },
  actions: {
    /**
     * A leg dialed at a moment the session cannot use it (A before its confirmation, B or A a
     * second time). The session carries on; src refuses that one socket.
     */
    rejectDial: (_args, _params: { socket: unknown }) => {},
    attachB: sendTo('splicer', ({ event }) => {
      assertEvent(event, 'B_DIALED');
      return { type: 'ATTACH_B' as const, socket: event.socket, rest: event.rest };
    }),
    attachA: sendTo('splicer', ({ event }) => {
      assertEvent(event, 'A_DIALED');
      return { type: 'ATTACH_A' as const, socket: event.socket, rest: event.rest };
    }),
  },
  guards: {
    isAccepted: (_args, result: NotifyResult) => result.accepted,
    isNotPermitted: (_args, result: NotifyResult) => !result.accepted && result.notPermitted === true,
  },
  // src provides the configured values; these only keep the machine runnable on its own.
  delays: {
    bDialTimeout: 10_000,
    aDialTimeout: 10_000,
  },
}).createMachine({
  id: 'brokering',
  context: ({ input }) => ({ ...input, detail: undefined, bytesAToB: 0, bytesBToA: 0 }),
  initial: 'requested',
  // Each final state words its own output; the machine's output is whichever one it reached.
  output: ({ event }) => event.output as BrokeringOutput,
  on: {
    SHUTDOWN: { target: '.shutDown', actions: assign({ detail: 'proxy shutting down' }) },
  },
  states: {
    requested: {
      initial: 'notifying',
      // Covers the bus round trip too: B may even dial before its bus reply reaches P.
      after: { bDialTimeout: { target: 'bNeverDialed', actions: assign({ detail: 'B did not dial in time' }) } },
      on: {
        B_DIALED: { target: 'holding' },
        A_DIALED: { actions: { type: 'rejectDial', params: ({ event }) => ({ socket: event.socket }) } },
      },
      states: {
        notifying: {
          invoke: {
            id: 'notifyB',
            src: 'notifyB',
            input: ({ context }) => ({ sessionId: context.sessionId, a: context.a, b: context.b, endpoint: context.endpoint }),
            onDone: [
              { guard: { type: 'isAccepted', params: ({ event }) => event.output }, target: 'forwarded' },
              {
                guard: { type: 'isNotPermitted', params: ({ event }) => event.output },
                target: '#brokering.bNotPermitted',
                actions: assign({ detail: ({ event }) => (event.output.accepted ? undefined : event.output.reason) }),
              },
              {
                target: '#brokering.bRefused',
                actions: assign({ detail: ({ event }) => (event.output.accepted ? undefined : event.output.reason) }),
              },
            ],
            onError: { target: '#brokering.busFailed', actions: assign({ detail: ({ event }) => errorDetail(event.error) }) },
          },
        },
        /** B accepted over the bus; waiting for its socket. */
        forwarded: {},
      },
    },
    // B's socket is held from here on: the splicer lives exactly as long as this state.
    holding: {
      invoke: { id: 'splicer', src: 'splicer', input: ({ context }) => ({ sessionId: context.sessionId }) },
      initial: 'bConnected',
      on: {
        B_DIALED: { actions: { type: 'rejectDial', params: ({ event }) => ({ socket: event.socket }) } },
      },
      states: {
        bConnected: {
          // Entry, not the B_DIALED transition: the splicer is spawned on entering `holding`,
          // so it exists only by the time this entry action runs.
          entry: 'attachB',
          invoke: {
            id: 'confirmToA',
            src: 'confirmToA',
            input: ({ context }) => ({ sessionId: context.sessionId, a: context.a, b: context.b, endpoint: context.endpoint }),
            onDone: { target: 'confirmed' },
            onError: { target: '#brokering.busFailed', actions: assign({ detail: ({ event }) => errorDetail(event.error) }) },
          },
          on: {
            A_DIALED: { actions: { type: 'rejectDial', params: ({ event }) => ({ socket: event.socket }) } },
            B_CLOSED: {
              target: '#brokering.peerClosedEarly',
              actions: assign({ detail: ({ event }) => event.detail ?? 'B closed before A was confirmed' }),
            },
          },
        },
        confirmed: {
          after: {
            aDialTimeout: { target: '#brokering.aNeverDialed', actions: assign({ detail: 'A did not dial in time' }) },
          },
          on: {
            A_DIALED: { target: 'spliced' },
            B_CLOSED: {
              target: '#brokering.peerClosedEarly',
              actions: assign({ detail: ({ event }) => event.detail ?? 'B closed before A dialed' }),
            },
          },
        },
        spliced: {
          entry: 'attachA',
          on: {
            // A dialing again: its token is spent; the splice already has A's socket.
            A_DIALED: { actions: { type: 'rejectDial', params: ({ event }) => ({ socket: event.socket }) } },
            SPLICE_ENDED: {
              target: '#brokering.closed',
              actions: assign({
                detail: ({ event }) => event.reason,
                bytesAToB: ({ event }) => event.bytesAToB,
                bytesBToA: ({ event }) => event.bytesBToA,
              }),
            },
          },
        },
      },
    },
    closed: finalState('closed'),
    bRefused: finalState('bRefused'),
    bNotPermitted: finalState('bNotPermitted'),
    busFailed: finalState('busFailed'),
    bNeverDialed: finalState('bNeverDialed'),
    aNeverDialed: finalState('aNeverDialed'),
    peerClosedEarly: finalState('peerClosedEarly'),
    shutDown: finalState('shutDown'),
  },
});

export type BrokeringMachine = typeof brokeringMachine;
