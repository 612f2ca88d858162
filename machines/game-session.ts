import { assign, setup } from 'xstate';
import { jsonEqual } from './json-equal.js';

// One game on the rendezvous server: a host registered a name, polls with its candidates, and
// any number of guests start with theirs; the server only swaps candidates, the peers punch.
//
// Pairings are per-guest entries in `context.guests`, not spawned child actors: the whole session
// must fit in one KV record that any `games run` instance can rebuild and step, and a spawned
// actor's persisted snapshot would multiply the record's shape for a two-flag state. A pairing's
// `status` is a tagged field: `waiting` → `swapped` once both peers were answered each other's
// candidates, → `relayed` once the proxy granted the pair a brokered session because punching
// failed (RELAY_GRANTED). Whether a punch succeeded is known only to the peers, so it is not a state here.
//
// Time is never read here. Every event that matters for expiry carries `at`, the reading of the
// clock src injects, so the `hostPollTimedOut` guard gives the same answer on every instance and
// in tests. The named delay `hostPollTimeout` expresses the same rule for a live actor (an
// in-process session, or a test with a simulated clock); the persisted path, which never keeps an
// actor running between requests, relies on CLOCK_TICKED from requests and the periodic sweep.

export type PairingStatus = 'waiting' | 'swapped' | 'relayed';

/**
 * A brokered session the proxy opened for one pairing: both peers dial `endpoint`, each presenting
 * its own token (base64 of the 32 bytes; only the host is handed `tokens.host`, only the guest
 * `tokens.guest`). Valid until `expiresAt`, when the proxy stops waiting for a dial; once spliced,
 * the proxy ends the session at `limits`.
 */
export interface RelayGrant {
  sessionId: string;
  tokens: { host: string; guest: string };
  endpoint: string;
  expiresAt: number;
  limits: { maxDurationMs: number; maxBytesPerDirection: number };
}

export interface GuestPairing {
  peerId: string;
  addresses: string[];
  startedAt: number;
  lastSeenAt: number;
  /** The host has been answered a poll that carried this guest's current candidates. */
  hostHasCandidates: boolean;
  /** This guest has been answered a start that carried the host's candidates. */
  guestHasCandidates: boolean;
  status: PairingStatus;
  relay?: RelayGrant;
}

export interface GameSessionInput {
  name: string;
  hostPeerId: string;
  /** When the host registered: counts as its first sign of life. */
  at: number;
  hostPollTimeoutMs: number;
  maxGuests: number;
}

export interface GameSessionContext {
  name: string;
  hostPeerId: string;
  createdAt: number;
  lastPollAt: number;
  hostAddresses: string[];
  guests: GuestPairing[];
  hostPollTimeoutMs: number;
  maxGuests: number;
}

export type GameSessionEvent =
  | { type: 'HOST_POLLED'; at: number; addresses: string[] }
  | { type: 'GUEST_STARTED'; at: number; peerId: string; addresses: string[] }
  /** The injected clock's reading: expires the game or prunes silent guests. */
  | { type: 'CLOCK_TICKED'; at: number }
  /** The proxy granted the pairing of guest `peerId` a relay session (punching failed). */
  | { type: 'RELAY_GRANTED'; at: number; peerId: string; relay: RelayGrant }
  | { type: 'RENAMED'; newName: string }
  | { type: 'DELETED' };

export const GAME_SESSION_OUTCOMES = ['closed', 'expired'] as const;
export type GameSessionOutcome = (typeof GAME_SESSION_OUTCOMES)[number];

export interface GameSessionOutput {
  outcome: GameSessionOutcome;
  name: string;
  guests: number;
  detail: string;
}

/** The states a game is in while it is open; `expired` and `closed` are final. */
export const OPEN_STATES = ['registered', 'hosting', 'paired'] as const;
export type OpenState = (typeof OPEN_STATES)[number];

const sameList = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

const pairingStatus = (g: Omit<GuestPairing, 'status'>): PairingStatus =>
  g.relay ? 'relayed' : g.hostHasCandidates && g.guestHasCandidates ? 'swapped' : 'waiting';

/** A grant the proxy still honours at `at`; an older one is replaced by the next grant. */
export const relayIsLive = (relay: RelayGrant | undefined, at: number): relay is RelayGrant => relay !== undefined && at < relay.expiresAt;

/**
 * One relay request per pairing. The rendezvous records the request it is about to make to the
 * proxy (in the game's record, with a revision check) before making it, so concurrent asks for
 * the same pairing, on any instance, wait for that one instead of each opening a proxy session.
 * `until` bounds it: a request whose instance crashed stops blocking the pairing then.
 */
export interface RelayInFlight {
  id: string;
  until: number;
}

/** What a relay ask for a pairing must do: hand out the live grant, wait for the one in flight, or ask the proxy itself. */
export type RelayNext = { type: 'live'; relay: RelayGrant } | { type: 'wait'; until: number } | { type: 'ask' };

export function relayNext(pairing: Pick<GuestPairing, 'relay'>, inFlight: RelayInFlight | undefined, at: number): RelayNext {
  if (relayIsLive(pairing.relay, at)) return { type: 'live', relay: pairing.relay };
  if (inFlight && at < inFlight.until) return { type: 'wait', until: inFlight.until };
  return { type: 'ask' };
}

/** Drops the in-flight marks that ended or whose pairing is gone, so a record never accumulates them. */
export function liveInFlight(inFlight: Record<string, RelayInFlight> | undefined, guests: Pick<GuestPairing, 'peerId'>[], at: number): Record<string, RelayInFlight> {
  return Object.fromEntries(Object.entries(inFlight ?? {}).filter(([peerId, f]) => at < f.until && guests.some((g) => g.peerId === peerId)));
}

/**
 * A relay session counted against a cap (per client address, per game name) until it can no
 * longer be open: the proxy ends it at its dial deadline if nobody dialed, else at most
 * `maxDurationMs` after. The rendezvous cannot see when a spliced session ends sooner, so it
 * counts the worst case: a client that dials both legs and trickles bytes holds its slot as long
 * as the proxy would let it hold the session.
 */
export interface RelayHold {
  id: string;
  until: number;
}

export const relayHeldUntil = (grant: Pick<RelayGrant, 'expiresAt' | 'limits'>): number => grant.expiresAt + grant.limits.maxDurationMs;

export type RelayHoldResult = { type: 'taken'; holds: RelayHold[] } | { type: 'full'; holds: RelayHold[]; retryAt: number };

/** Takes one of `cap` slots (ended holds free theirs); a full list says when its first slot frees. */
export function takeRelayHold(holds: RelayHold[], hold: RelayHold, cap: number, at: number): RelayHoldResult {
  const live = holds.filter((h) => at < h.until && h.id !== hold.id);
  if (live.length >= cap) return { type: 'full', holds: live, retryAt: Math.min(...live.map((h) => h.until)) };
  return { type: 'taken', holds: [...live, hold] };
}

/** Moves a hold's end (to the granted session's worst case), or frees it with `until` undefined. */
export function moveRelayHold(holds: RelayHold[], id: string, until: number | undefined, at: number): RelayHold[] {
  return holds.flatMap((h) => (h.id !== id ? (at < h.until ? [h] : []) : until === undefined ? [] : [{ id, until }]));
}

/**
 * A stored liveness reading (the host's lastPollAt, a guest's lastSeenAt) may lag the truth by
 * up to this part of the host timeout. A step that only moves those readings forward, by less
 * than the slack each, need not be stored: the game stays alive as long as its peers call at
 * least every (1 − REFRESH_SLACK_FRACTION) of the timeout (peers call twice a second), and host
 * polls and repeated starts stop rewriting, and contending for, the game's one record.
 */
export const REFRESH_SLACK_FRACTION = 1 / 3;

/** The context's liveness readings: the host's, and each guest's (no other field has these names). */
const LIVENESS_READINGS: ReadonlySet<string> = new Set(['lastPollAt', 'lastSeenAt']);

export const refreshSlackMs = (hostPollTimeoutMs: number): number => Math.floor(hostPollTimeoutMs * REFRESH_SLACK_FRACTION);

/**
 * Whether `next` differs from `stored` only by liveness readings each moved forward by less than
 * `slackMs` (so storing `stored` again would lose nothing the expiry rules need).
 */
export function onlyLivenessRefreshed(stored: GameSessionContext, next: GameSessionContext, slackMs: number): boolean {
  const fresh = (from: number, to: number) => to >= from && to - from < slackMs;
  if (!fresh(stored.lastPollAt, next.lastPollAt) || stored.guests.length !== next.guests.length) return false;
  if (!next.guests.every((g, i) => g.peerId === stored.guests[i]!.peerId && fresh(stored.guests[i]!.lastSeenAt, g.lastSeenAt))) return false;
  return jsonEqual(stored, next, LIVENESS_READINGS);
}

/**
 * The same rule for one pairing, stored in its own record (src/games/pairing-records.ts): `next`
 * differs from `stored` only by the guest's liveness reading moved forward by less than `slackMs`.
 */
export function pairingOnlyRefreshed(stored: GuestPairing, next: GuestPairing, slackMs: number): boolean {
  const moved = next.lastSeenAt - stored.lastSeenAt;
  return moved >= 0 && moved < slackMs && jsonEqual(stored, next, LIVENESS_READINGS);
}

/**
 * The open state `settling` lands in for a context: what a game whose record no longer says it
 * (the game key is not written when a guest's pairing completes: src/games/pairing-records.ts)
 * reads as. The same rules as the guards `settling` checks, in the same order.
 */
export function settledState(context: Pick<GameSessionContext, 'guests' | 'hostAddresses'>): OpenState {
  if (context.guests.some((g) => g.status !== 'waiting')) return 'paired';
  return context.hostAddresses.length > 0 ? 'hosting' : 'registered';
}

/**
 * Whether CLOCK_TICKED at `at` would only settle the state: the host has not timed out
 * (`hostPollTimedOut`) and no guest went silent (`pruneSilentGuests` keeps them all). Every
 * request starts with a tick, so src skips stepping one that is quiet and resolves the settled
 * state instead; a unit test holds the two to the same snapshot.
 */
export function clockTickIsQuiet(context: Pick<GameSessionContext, 'lastPollAt' | 'guests' | 'hostPollTimeoutMs'>, at: number): boolean {
  const timeout = context.hostPollTimeoutMs;
  return at - context.lastPollAt <= timeout && context.guests.every((g) => at - g.lastSeenAt <= timeout);
}

export const gameSessionMachine = setup({
  types: {
    input: {} as GameSessionInput,
    context: {} as GameSessionContext,
    events: {} as GameSessionEvent,
    output: {} as GameSessionOutput,
  },
  actions: {
    /** The host's poll answer carries every current guest, so each pairing gains that half. */
    recordHostPoll: assign(({ context, event }) => {
      if (event.type !== 'HOST_POLLED') return {};
      const hostAddresses = event.addresses.length > 0 ? event.addresses : context.hostAddresses;
      return {
        lastPollAt: event.at,
        hostAddresses,
        guests: context.guests.map((g) => {
          const next = { ...g, hostHasCandidates: true };
          return { ...next, status: pairingStatus(next) };
        }),
      };
    }),
    recordGuestStart: assign(({ context, event }) => {
      if (event.type !== 'GUEST_STARTED') return {};
      const existing = context.guests.find((g) => g.peerId === event.peerId);
      const guestHasCandidates = context.hostAddresses.length > 0;
      if (existing) {
        // New candidates (the guest's NAT mapping changed) must reach the host again.
        const hostHasCandidates = existing.hostHasCandidates && sameList(existing.addresses, event.addresses);
        const next = { ...existing, addresses: event.addresses, lastSeenAt: event.at, hostHasCandidates, guestHasCandidates };
        return { guests: context.guests.map((g) => (g === existing ? { ...next, status: pairingStatus(next) } : g)) };
      }
      const fresh = {
        peerId: event.peerId,
        addresses: event.addresses,
        startedAt: event.at,
        lastSeenAt: event.at,
        hostHasCandidates: false,
        guestHasCandidates,
      };
      return { guests: [...context.guests, { ...fresh, status: pairingStatus(fresh) }] };
    }),
    /** A guest that stopped calling start for a whole host timeout has given up. */
    pruneSilentGuests: assign(({ context, event }) => {
      if (event.type !== 'CLOCK_TICKED') return {};
      return { guests: context.guests.filter((g) => event.at - g.lastSeenAt <= context.hostPollTimeoutMs) };
    }),
    /** Keeps a live grant: two peers asking at once must end up holding the same token. */
    recordRelay: assign(({ context, event }) => {
      if (event.type !== 'RELAY_GRANTED') return {};
      return {
        guests: context.guests.map((g) => {
          if (g.peerId !== event.peerId || relayIsLive(g.relay, event.at)) return g;
          const next = { ...g, relay: event.relay };
          return { ...next, status: pairingStatus(next) };
        }),
      };
    }),
    rename: assign(({ event }) => (event.type === 'RENAMED' ? { name: event.newName } : {})),
  },
  guards: {
    hostPollTimedOut: ({ context, event }) =>
      'at' in event && event.at - context.lastPollAt > context.hostPollTimeoutMs,
    /** A returning guest always fits; a new one only while there is room. */
    hasRoomForGuest: ({ context, event }) =>
      event.type === 'GUEST_STARTED' &&
      (context.guests.some((g) => g.peerId === event.peerId) || context.guests.length < context.maxGuests),
    anyPairingSwapped: ({ context }) => settledState(context) === 'paired',
    /**
     * A relay is for a pair that swapped candidates and could not punch: never before the first
     * swap. A relayed pairing stays relayed (a guest's new candidates do not undo the failed
     * punch), so it may be granted a fresh relay once its last grant has expired.
     */
    pairingSwapped: ({ context, event }) =>
      event.type === 'RELAY_GRANTED' && context.guests.some((g) => g.peerId === event.peerId && g.status !== 'waiting'),
    hostHasCandidates: ({ context }) => context.hostAddresses.length > 0,
  },
  // src provides the configured value; this default only keeps the machine runnable on its own.
  delays: {
    hostPollTimeout: ({ context }) => context.hostPollTimeoutMs,
  },
}).createMachine({
  id: 'game',
  context: ({ input }) => ({
    name: input.name,
    hostPeerId: input.hostPeerId,
    createdAt: input.at,
    lastPollAt: input.at,
    hostAddresses: [],
    guests: [],
    hostPollTimeoutMs: input.hostPollTimeoutMs,
    maxGuests: input.maxGuests,
  }),
  initial: 'open',
  output: ({ event }) => event.output as GameSessionOutput,
  states: {
    open: {
      // One timer for the whole open life, restarted only by the host's poll (re-entering
      // `open`); a guest starting moves between children without touching it.
      after: { hostPollTimeout: { target: 'expired' } },
      initial: 'settling',
      on: {
        // Expiry is checked before anything else an event would do: a late poll cannot revive
        // a game another instance may already have swept.
        // Pruning re-settles: a pruned guest may have been the only swapped pairing, and a game
        // left in `paired` without one would misreport its state until the next poll or start.
        CLOCK_TICKED: [{ guard: 'hostPollTimedOut', target: 'expired' }, { target: '.settling', actions: 'pruneSilentGuests' }],
        HOST_POLLED: { target: 'open', reenter: true, actions: 'recordHostPoll' },
        GUEST_STARTED: { guard: 'hasRoomForGuest', target: '.settling', actions: 'recordGuestStart' },
        RELAY_GRANTED: { guard: 'pairingSwapped', target: '.settling', actions: 'recordRelay' },
        RENAMED: { actions: 'rename' },
        DELETED: { target: 'closed' },
      },
      states: {
        // Transient: lands in the state the pairings describe, so a rebuilt or re-entered
        // session never needs to remember which child it was in.
        settling: {
          always: [
            { guard: 'anyPairingSwapped', target: 'paired' },
            { guard: 'hostHasCandidates', target: 'hosting' },
            { target: 'registered' },
          ],
        },
        /** The host has not polled with candidates yet. */
        registered: {},
        /** The host's candidates are known; no pairing is complete. */
        hosting: {},
        /** At least one guest and the host have each been answered the other's candidates (or were granted a relay). */
        paired: {},
      },
    },
    expired: {
      type: 'final',
      output: ({ context }) => ({
        outcome: 'expired' as const,
        name: context.name,
        guests: context.guests.length,
        detail: `the host did not poll for ${context.hostPollTimeoutMs} ms`,
      }),
    },
    closed: {
      type: 'final',
      output: ({ context }) => ({
        outcome: 'closed' as const,
        name: context.name,
        guests: context.guests.length,
        detail: 'deleted by the host',
      }),
    },
  },
});

export type GameSessionMachine = typeof gameSessionMachine;
