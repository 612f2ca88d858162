import { expect } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { gameSessionMachine, onlyLivenessRefreshed, refreshSlackMs, type GameSessionContext } from '../../machines/game-session.js';
import { GameService, type PollResult, type StartResult } from '../../src/games/game-service.js';
import { KvGameStore } from '../../src/games/game-store.js';
import { KvLobby } from '../../src/games/lobby.js';
import { GameRelays } from '../../src/proxy/game-relays.js';
import { RELAY_METHOD } from '../../src/relay/protocol.js';
import { fixedDirectory, testBus } from '../helpers/relay-bus.js';
import { SessionRegistry } from '../../src/proxy/session-registry.js';
import { relayClient } from '../../src/relay/client.js';
import type { Driver, DriverStep, Drivers } from './cases.js';
import type { ModelStep } from './derive.js';
import { BUS_ADMIN, connectNats, leafOf, log, Trace } from './harness.js';

// One game driven through src/games/game-service.ts over a real JetStream KV bucket (one per case),
// with the clock injected: every model event is the service operation a host, a guest or the
// sweeper performs, and each step checks what they are answered and that the stored record is
// the machine's state (or gone once it ended).
//
// The service never keeps an actor: each request rebuilds the machine from the record and steps
// it with xstate's pure transition(). So the trace is recorded at the machine itself, from every
// snapshot the service's transition()/initialTransition() calls produce for this case's game.

export const HOST_POLL_TIMEOUT_MS = 30_000;
export const MAX_GUESTS = 2;
const HOST_ADDRESSES = ['198.51.100.7:4000', '10.0.0.7:4000'];
const R = 'open.registered';
const H = 'open.hosting';
const P = 'open.paired';
const START = 'open.settling';

export interface GameCtx {
  trace: Trace;
  id: number;
  nc: NatsConnection;
  store: KvGameStore;
  lobby: KvLobby;
  service: GameService;
  clock: { t: number };
  name: string;
  host: string;
  secret: string;
  /** The context of the last snapshot the real machine produced for this game. */
  machineContext?: GameSessionContext;
  registered: Promise<Awaited<ReturnType<GameService['register']>>>;
  /** A path that pairs a guest from `hosting` on its start needs one that joined in `registered`. */
  plan: { earlyGuest: boolean };
  guestCount: number;
  /** Off while a step is checked: looking must not count as the machine taking a step. */
  recording: boolean;
  restore?: () => void;
  /** The proxy side of game relays, in process on the same nats-server: a real registry, served on a signed bus. */
  relays: { registry: SessionRegistry; stop: () => void };
}

let cases = 0;

export function newGameCtx(): GameCtx {
  const id = ++cases;
  return {
    trace: new Trace(START),
    id,
    clock: { t: 1_700_000_000_000 },
    name: `game ${id}`,
    host: `host-${id}`,
    plan: { earlyGuest: false },
    guestCount: 0,
    recording: true,
  } as GameCtx;
}

type Machine = { transition: (...a: unknown[]) => unknown; getInitialSnapshot: (...a: unknown[]) => unknown };
type Snap = { value: unknown; status: string; output?: unknown; context?: GameSessionContext };

/**
 * Records every snapshot the real machine produces for this case's game (told apart by its host),
 * as the inspect hook would for a live actor. Other games (a name holder, a second host) are left out.
 */
function recordMachine(ctx: GameCtx): () => void {
  const m = gameSessionMachine as unknown as Machine;
  const proto = Object.getPrototypeOf(m) as Machine;
  const push = (event: string, s: Snap) => {
    if (!ctx.recording || s.context?.hostPeerId !== ctx.host) return;
    ctx.machineContext = s.context;
    ctx.trace.entries.push({ event, leaf: leafOf(s.value), status: s.status, output: s.output });
  };
  m.transition = function (this: unknown, ...args: unknown[]) {
    const next = proto.transition.apply(this, args) as Snap;
    push((args[1] as { type: string }).type, next);
    return next;
  };
  m.getInitialSnapshot = function (this: unknown, ...args: unknown[]) {
    const s = proto.getInitialSnapshot.apply(this, args) as Snap;
    // createActor's eager (input-less) initial snapshot throws before this; only real starts land here.
    push('xstate.init', s);
    return s;
  };
  return () => {
    delete (m as Partial<Machine>).transition;
    delete (m as Partial<Machine>).getInitialSnapshot;
  };
}

export async function setupGame(ctx: GameCtx, natsUrl: string): Promise<void> {
  // The game machine is under test here, not the bus's rights: one admin connection serves the
  // per-case bucket and the per-case relay operator, which no generated principal holds.
  ctx.nc = await connectNats(natsUrl, BUS_ADMIN);
  ctx.store = await KvGameStore.open(ctx.nc, `games_model_${ctx.id}`);
  ctx.lobby = await KvLobby.open(ctx.nc, `games_model_${ctx.id}`);
  const proxy = { name: `relay-proxy-${process.pid}-${ctx.id}`, cert: 'public-proxy-eps-1' };
  const rendezvous = { name: `rendezvous-${process.pid}-${ctx.id}`, cert: 'games-1' };
  const directory = fixedDirectory([proxy, rendezvous], [[rendezvous.name, proxy.name, RELAY_METHOD]]);
  // Relay sessions carry no proofs, so the registry is never asked for a certificate.
  const registry = new SessionRegistry({ log, operator: proxy.name, certificateOf: () => undefined });
  const relays = new GameRelays({
    endpoint: '127.0.0.1:9',
    dialWithinMs: 10_000,
    maxLive: 100,
    maxLivePerRequester: 100,
    limits: { maxDurationMs: 60_000, maxBytesPerDirection: 1 << 20 },
    open: (request, via) => registry.open(request, via),
    log,
  });
  const proxyBus = testBus(ctx.nc, proxy, directory);
  proxyBus.serve(RELAY_METHOD, relays.handle, { queue: 'model' });
  ctx.relays = { registry, stop: () => proxyBus.close() };
  ctx.service = new GameService({
    store: ctx.store,
    lobby: ctx.lobby,
    now: () => ctx.clock.t,
    hostPollTimeoutMs: HOST_POLL_TIMEOUT_MS,
    maxGuests: MAX_GUESTS,
    log,
    requestRelay: relayClient({ bus: testBus(ctx.nc, rendezvous, directory), proxyOperator: proxy.name, timeoutMs: 2_000 }),
  });
  ctx.restore = recordMachine(ctx);
}

/** The host registers the game; the machine starts (and settles) inside this call. */
export function startGame(ctx: GameCtx): void {
  ctx.registered = ctx.service.register(ctx.name, ctx.host);
}

export async function gameReady(ctx: GameCtx): Promise<void> {
  const r = await ctx.registered;
  if (r.type !== 'registered') throw new Error(`register answered ${r.type}`);
  ctx.secret = r.secret;
}

export async function teardownGame(ctx: GameCtx): Promise<void> {
  ctx.restore?.();
  ctx.relays?.stop();
  await ctx.relays?.registry.shutdown();
  await ctx.nc?.close();
}

// ---- what the parties do ------------------------------------------------------------------

const later = (ctx: GameCtx, ms = 1_000) => void (ctx.clock.t += ms);

async function stored(ctx: GameCtx) {
  const s = await ctx.store.get(ctx.name);
  if (!s) throw new Error(`no record for ${ctx.name}`);
  return s;
}

async function hostPolls(ctx: GameCtx, addresses: string[]): Promise<PollResult> {
  later(ctx);
  return ctx.service.poll(ctx.name, ctx.host, addresses);
}

async function guestStarts(ctx: GameCtx, peerId: string, addresses: string[]): Promise<StartResult> {
  later(ctx);
  return ctx.service.start(ctx.name, peerId, addresses);
}

const newGuest = (ctx: GameCtx) => {
  const n = ++ctx.guestCount;
  return { peerId: `guest-${ctx.id}-${n}`, addresses: [`203.0.113.${n}:5000`] };
};

/** What the host is answered: every current guest's candidates, i.e. the stored pairings. */
async function hostSawGuests(ctx: GameCtx, r: PollResult): Promise<void> {
  const { guests } = (await stored(ctx)).record.context;
  expect(r).toEqual({
    type: 'polled',
    status: guests.length > 0 ? 1 : 0,
    addresses: guests.flatMap((g) => g.addresses),
    guests: guests.map((g) => ({ peerId: g.peerId, addresses: g.addresses })),
  });
}

/** What a guest is answered: the host's candidates once there are any. */
function guestSaw(r: StartResult, hostKnown: boolean): void {
  expect(r).toEqual({ type: 'started', status: hostKnown ? 1 : 0, addresses: hostKnown ? HOST_ADDRESSES : [] });
}

/** After every step: the record is the machine's state, or gone once the game ended. */
async function recordIsMachine(ctx: GameCtx, step: ModelStep): Promise<void> {
  const s = await ctx.store.get(ctx.name);
  if (step.to === 'expired' || step.to === 'closed') {
    expect(s, 'an ended game leaves no record').toBeNull();
    return;
  }
  expect(s, `record of ${ctx.name}`).not.toBeNull();
  expect(`open.${s!.record.state}`).toBe(step.to);
  // The record is the machine's context, but for liveness readings that may lag it by less than
  // the refresh slack (a step that only refreshed them is not written).
  if (!onlyLivenessRefreshed(s!.record.context, ctx.machineContext!, refreshSlackMs(HOST_POLL_TIMEOUT_MS))) expect(s!.record.context).toEqual(ctx.machineContext);
  // What anyone listing games sees.
  const view = await ctx.service.get(ctx.name);
  expect(view).toMatchObject({ type: 'found', game: { name: ctx.name, state: s!.record.state, guests: s!.record.context.guests.length } });
}

async function notFoundEverywhere(ctx: GameCtx): Promise<void> {
  expect(await ctx.service.get(ctx.name)).toEqual({ type: 'notFound' });
  expect((await ctx.service.list({ after: 0, limit: 100 })).games.map((g) => g.name)).not.toContain(ctx.name);
  expect(await ctx.service.poll(ctx.name, ctx.host, HOST_ADDRESSES)).toEqual({ type: 'notFound' });
  expect(await ctx.service.start(ctx.name, 'late-guest', ['203.0.113.99:5000'])).toEqual({ type: 'notFound' });
  expect(await ctx.service.rename(ctx.name, ctx.secret, `${ctx.name} again`)).toEqual({ type: 'notFound' });
  expect(await ctx.service.remove(ctx.name, ctx.secret)).toEqual({ type: 'notFound' });
}

// ---- drivers ------------------------------------------------------------------------------

const CANDIDATES = ['anyPairingSwapped', 'hostHasCandidates', 'else'] as const;
const LEAF = { anyPairingSwapped: P, hostHasCandidates: H, else: R } as const;
const KEPT = 'the host candidates, once known, are kept (a poll without any keeps the earlier ones), so the game cannot fall back to registered';

/** Each open-state event folds the `settling` choice it lands in: one driver per outcome. */
function settling(event: string, make: (to: string) => Driver<GameCtx>): Drivers<GameCtx> {
  return Object.fromEntries(CANDIDATES.map((c) => [`${event}+always[${c}]`, make(LEAF[c])]));
}

const tick: DriverStep<GameCtx>['exec'] = async (ctx, step) => {
  if (step.from === P && step.to === H) {
    // The paired guests went silent for a whole timeout while the host kept polling.
    const { lastPollAt, guests } = (await stored(ctx)).record.context;
    const lastSeen = Math.max(...guests.map((g) => g.lastSeenAt));
    if (lastSeen >= lastPollAt) throw new Error('this path gives no silent guest to prune while the host is alive');
    ctx.clock.t = lastSeen + HOST_POLL_TIMEOUT_MS + 1;
  } else later(ctx);
};

const gameDrivers: Drivers<GameCtx> = {
  // The machine settling as the host registers.
  'always[else]': {
    check: async (ctx) => {
      expect(await ctx.registered).toMatchObject({ type: 'registered', game: { name: ctx.name, state: 'registered', guests: 0, open: true } });
      expect(ctx.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      // The name is taken while the game is open.
      expect(await ctx.service.register(ctx.name, 'another-host')).toEqual({ type: 'nameTaken' });
      expect((await stored(ctx)).record.secretHash).not.toContain(ctx.secret);
    },
  },
  'always[anyPairingSwapped]': { never: { [START]: 'a game starts without guests, so without a swapped pairing' } },
  'always[hostHasCandidates]': { never: { [START]: 'a game starts before its host polled with candidates' } },

  ...settling('CLOCK_TICKED[else]', (to) => ({
    // The sweep, which writes what the tick changed (a read would show it without writing).
    exec: async (ctx, step) => {
      await tick(ctx, step);
      expect(await ctx.service.sweep()).toBe(0);
    },
    check: async (ctx, step) => {
      if (step.from === P && step.to === H) {
        // Pruned guests are gone from the record and from what the host is answered.
        expect((await stored(ctx)).record.context.guests).toEqual([]);
      }
    },
    never: {
      ...(to === P ? { [R]: 'a tick only removes guests, and in registered none is swapped', [H]: 'a tick only removes guests, and in hosting none is swapped' } : {}),
      ...(to === H ? { [R]: 'a tick never gives the host candidates' } : {}),
      ...(to === R ? { [H]: KEPT, [P]: KEPT } : {}),
    },
  })),

  'CLOCK_TICKED[hostPollTimedOut]': {
    // The host's last poll is a whole timeout ago (plus 1 ms); whoever looks next expires it.
    variants: {
      sweep: {
        exec: async (ctx) => {
          ctx.clock.t = (await stored(ctx)).record.context.lastPollAt + HOST_POLL_TIMEOUT_MS + 1;
          expect(await ctx.service.sweep()).toBe(1);
        },
      },
      'the late host polls': {
        exec: async (ctx) => {
          ctx.clock.t = (await stored(ctx)).record.context.lastPollAt + HOST_POLL_TIMEOUT_MS + 1;
          expect(await ctx.service.poll(ctx.name, ctx.host, HOST_ADDRESSES)).toEqual({ type: 'notFound' });
        },
      },
      'a guest starts': {
        exec: async (ctx) => {
          ctx.clock.t = (await stored(ctx)).record.context.lastPollAt + HOST_POLL_TIMEOUT_MS + 1;
          expect(await ctx.service.start(ctx.name, 'late-guest', ['203.0.113.99:5000'])).toEqual({ type: 'notFound' });
        },
      },
      'a read': {
        exec: async (ctx) => {
          ctx.clock.t = (await stored(ctx)).record.context.lastPollAt + HOST_POLL_TIMEOUT_MS + 1;
          expect(await ctx.service.get(ctx.name)).toEqual({ type: 'notFound' });
          // Reads never write: the record waits for the sweep, but its name is already free.
          expect(await ctx.store.get(ctx.name)).not.toBeNull();
          expect(await ctx.service.sweep()).toBe(1);
        },
      },
    },
    check: async (ctx) => {
      expect(ctx.trace.last?.output).toEqual({
        outcome: 'expired',
        name: ctx.name,
        guests: ctx.machineContext!.guests.length,
        detail: `the host did not poll for ${HOST_POLL_TIMEOUT_MS} ms`,
      });
      await notFoundEverywhere(ctx);
    },
  },

  ...settling('HOST_POLLED', (to) => ({
    exec: async (ctx, step) => {
      if (step.from === R && ctx.plan.earlyGuest) {
        // A guest that joins before the host has candidates is answered none yet.
        guestSaw(await guestStarts(ctx, 'early-guest', ['192.0.2.50:6000']), false);
      }
      if (step.from === H && to === P && !(await stored(ctx)).record.context.guests.some((g) => g.guestHasCandidates)) {
        // A guest that joined while the host had candidates: answered them, waiting for the host.
        const g = newGuest(ctx);
        guestSaw(await guestStarts(ctx, g.peerId, g.addresses), true);
      }
      const r = await hostPolls(ctx, to === R ? [] : HOST_ADDRESSES);
      await hostSawGuests(ctx, r);
      const { context } = (await stored(ctx)).record;
      // The store holds the poll's reading, or one within the refresh slack of it (a poll that
      // only refreshed liveness is not written: machines/game-session.ts, onlyLivenessRefreshed).
      expect(ctx.clock.t - context.lastPollAt).toBeGreaterThanOrEqual(0);
      expect(ctx.clock.t - context.lastPollAt).toBeLessThan(refreshSlackMs(HOST_POLL_TIMEOUT_MS));
      // The poll answered the host every guest's candidates: each pairing has the host's half.
      expect(context.guests.every((g) => g.hostHasCandidates)).toBe(true);
      if (to === P) expect(context.guests.some((g) => g.status === 'swapped')).toBe(true);
    },
    never: {
      ...(to === P ? { [R]: 'every guest joined while the host had no candidates, so no guest has its half of a pairing yet' } : {}),
      ...(to === H ? { [P]: 'a poll only completes pairings: the swapped one stays swapped' } : {}),
      ...(to === R ? { [H]: KEPT, [P]: KEPT } : {}),
    },
  })),

  ...settling('GUEST_STARTED[hasRoomForGuest]', (to) => ({
    arrange: (ctx, step) => {
      if (step.from === H && to === P) ctx.plan.earlyGuest = true;
    },
    exec: async (ctx, step) => {
      const { context } = (await stored(ctx)).record;
      if (step.from === H && to === P) {
        // The early guest, answered to the host by its poll, starts again: now it gets the host's.
        const early = context.guests.find((g) => g.hostHasCandidates && !g.guestHasCandidates);
        if (!early) throw new Error('no guest the host already knows');
        guestSaw(await guestStarts(ctx, early.peerId, early.addresses), true);
        return;
      }
      if (step.from === P && to === H) {
        // The only paired guest's NAT mapping changed: its new candidates must reach the host again.
        const swapped = context.guests.filter((g) => g.status === 'swapped');
        if (swapped.length !== 1) throw new Error(`${swapped.length} swapped pairings`);
        guestSaw(await guestStarts(ctx, swapped[0]!.peerId, ['192.0.2.77:7000']), true);
        expect((await stored(ctx)).record.context.guests.find((g) => g.peerId === swapped[0]!.peerId)).toMatchObject({
          addresses: ['192.0.2.77:7000'],
          hostHasCandidates: false,
          status: 'waiting',
        });
        return;
      }
      const g = newGuest(ctx);
      guestSaw(await guestStarts(ctx, g.peerId, g.addresses), to !== R);
      expect((await stored(ctx)).record.context.guests.find((x) => x.peerId === g.peerId)).toMatchObject({ status: 'waiting', hostHasCandidates: false });
    },
    check: async (ctx, step) => {
      const s = await stored(ctx);
      if (s.record.context.guests.length < MAX_GUESTS) return;
      // Full: a new guest is refused and nothing is written; a known guest still fits.
      const known = s.record.context.guests[0]!;
      expect(await ctx.service.start(ctx.name, 'one-too-many', ['203.0.113.200:5000'])).toEqual({ type: 'gameFull', maxGuests: MAX_GUESTS });
      expect((await stored(ctx)).revision).toBe(s.revision);
      expect(await ctx.service.get(ctx.name)).toMatchObject({ type: 'found', game: { open: false } });
      expect(await ctx.service.start(ctx.name, known.peerId, known.addresses)).toMatchObject({ type: 'started' });
      expect(`open.${(await stored(ctx)).record.state}`).toBe(step.to);
    },
    never: {
      ...(to === P ? { [R]: 'without host candidates a starting guest is answered none, so its pairing cannot be swapped' } : {}),
      ...(to === H ? { [R]: 'a guest starting never gives the host candidates' } : {}),
      ...(to === R ? { [H]: KEPT, [P]: KEPT } : {}),
    },
  })),

  ...settling('RELAY_GRANTED[pairingSwapped]', (to) => ({
    // Punching failed; a peer of the swapped pairing asks for a relay and the proxy grants one.
    variants: Object.fromEntries(
      (['the guest asks', 'the host asks'] as const).map((who) => [
        who,
        {
          exec: async (ctx: GameCtx) => {
            const { context } = (await stored(ctx)).record;
            const pairing = context.guests.find((g) => g.status === 'swapped');
            if (!pairing) throw new Error('no swapped pairing to relay');
            later(ctx);
            const liveBefore = ctx.relays.registry.liveCount();
            const r =
              who === 'the guest asks'
                ? await ctx.service.relay(ctx.name, pairing.peerId)
                : await ctx.service.relay(ctx.name, ctx.host, pairing.peerId);
            expect(r).toMatchObject({ type: 'relay', endpoint: '127.0.0.1:9' });
            // The proxy's window, less the request's round trip.
            expect((r as { dialWithinMs: number }).dialWithinMs).toBeGreaterThan(9_000);
            expect((r as { dialWithinMs: number }).dialWithinMs).toBeLessThanOrEqual(10_000);
            // The proxy opened exactly one session for it, waiting for the first peer to dial.
            expect(ctx.relays.registry.liveCount()).toBe(liveBefore + 1);
            const after = (await stored(ctx)).record.context.guests.find((g) => g.peerId === pairing.peerId);
            const mine = who === 'the guest asks' ? 'guest' : 'host';
            expect(after).toMatchObject({ status: 'relayed', relay: { tokens: { [mine]: (r as { token: string }).token } } });
            // The other peer of the pairing is handed the same session with its own token, and no new session.
            const other =
              who === 'the guest asks'
                ? await ctx.service.relay(ctx.name, ctx.host, pairing.peerId)
                : await ctx.service.relay(ctx.name, pairing.peerId);
            expect(other).toMatchObject({ type: 'relay', sessionId: (r as { sessionId: string }).sessionId, token: after!.relay!.tokens[mine === 'guest' ? 'host' : 'guest'] });
            expect((other as { token: string }).token).not.toBe((r as { token: string }).token);
            expect(ctx.relays.registry.liveCount()).toBe(liveBefore + 1);
          },
        },
      ]),
    ),
    check: async (ctx) => {
      // Nobody else gets a relay: not a stranger, not the host for a guest it does not have.
      expect(await ctx.service.relay(ctx.name, 'stranger')).toEqual({ type: 'notInGame' });
      expect(await ctx.service.relay(ctx.name, ctx.host, 'nobody')).toEqual({ type: 'unknownGuest' });
    },
    never: {
      [R]: 'a relay needs a swapped pairing, and in registered none is swapped',
      [H]: 'a relay needs a swapped pairing, and in hosting none is swapped',
      ...(to !== P ? { [P]: 'a relay only adds to a pairing: the game stays paired' } : {}),
    },
  })),

  RENAMED: {
    exec: async (ctx, step) => {
      later(ctx);
      const old = ctx.name;
      const r = await ctx.service.rename(old, ctx.secret, `${old} renamed`);
      ctx.name = `${old} renamed`;
      expect(r).toMatchObject({ type: 'renamed', game: { name: ctx.name, state: step.from.slice('open.'.length) } });
      expect(await ctx.store.get(old)).toBeNull();
      expect(await ctx.service.get(old)).toEqual({ type: 'notFound' });
      expect(await ctx.service.poll(old, ctx.host, HOST_ADDRESSES)).toEqual({ type: 'notFound' });
    },
    check: async (ctx) => {
      // Only the host (its secret) renames, and never onto a taken name.
      expect(await ctx.service.rename(ctx.name, 'not-the-secret', 'whatever')).toEqual({ type: 'badSecret' });
      const other = await ctx.service.register('taken', 'other-host');
      expect(other.type).toBe('registered');
      expect(await ctx.service.rename(ctx.name, ctx.secret, 'taken')).toEqual({ type: 'nameTaken' });
      expect((await stored(ctx)).record.context.name).toBe(ctx.name);
      if (other.type === 'registered') expect(await ctx.service.remove('taken', other.secret)).toEqual({ type: 'removed' });
    },
  },

  DELETED: {
    exec: async (ctx) => {
      later(ctx);
      const before = await stored(ctx);
      expect(await ctx.service.remove(ctx.name, 'not-the-secret')).toEqual({ type: 'badSecret' });
      expect((await stored(ctx)).revision).toBe(before.revision);
      expect(await ctx.service.remove(ctx.name, ctx.secret)).toEqual({ type: 'removed' });
    },
    check: async (ctx) => {
      expect(ctx.trace.last?.output).toEqual({ outcome: 'closed', name: ctx.name, guests: ctx.machineContext!.guests.length, detail: 'deleted by the host' });
      await notFoundEverywhere(ctx);
      // The name is free again.
      expect((await ctx.service.register(ctx.name, 'next-host')).type).toBe('registered');
    },
  },

  'after.hostPollTimeout': {
    cannot: Object.fromEntries(
      [R, H, P].map((s) => [
        s,
        'GameService keeps no actor between requests, so no timer runs: a silent host expires through the hostPollTimedOut guard on the clock a request or the sweep shows the machine (CLOCK_TICKED)',
      ]),
    ),
  },
};

/**
 * Every step records the machine while it is made to happen and is checked with the recorder
 * off, the record check first (variants included): what a check looks at (reads tick the
 * machine too) must not pass for the step, nor leave events a later step would mistake for its own.
 */
function withRecordCheck(drivers: Drivers<GameCtx>): Drivers<GameCtx> {
  const wrap = <D extends DriverStep<GameCtx>>(d: D, base?: DriverStep<GameCtx>): D => {
    const exec = d.exec ?? base?.exec;
    const check = d.check ?? base?.check;
    return {
      ...d,
      exec: async (ctx: GameCtx, step: ModelStep) => {
        ctx.recording = true;
        await exec?.(ctx, step);
      },
      check: async (ctx: GameCtx, step: ModelStep) => {
        ctx.recording = false;
        await recordIsMachine(ctx, step);
        await check?.(ctx, step);
      },
    };
  };
  return Object.fromEntries(
    Object.entries(drivers).map(([event, d]) => {
      const variants = d.variants && Object.fromEntries(Object.entries(d.variants).map(([k, v]) => [k, wrap(v, d)]));
      return [event, { ...wrap(d), ...(variants ? { variants } : {}) }];
    }),
  );
}

export const gameSessionDrivers = withRecordCheck(gameDrivers);
