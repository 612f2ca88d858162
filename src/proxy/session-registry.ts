import { randomUUID } from 'node:crypto';
import { secureRandomBytes } from '../core/random-pool.js';
import type { Socket } from 'node:net';
import { createActor, fromPromise, type Actor, type InspectionEvent, type Snapshot, type Subscription } from 'xstate';
import { DEFAULT_A_DIAL_TIMEOUT_MS, DEFAULT_B_DIAL_TIMEOUT_MS } from '../core/constants.js';
import { childOnDemand, type Logger } from '../core/logger.js';
import { verifyProof, type Leg, type Preamble } from '../core/splice-wire.js';
import {
  brokeringMachine,
  type BrokeringInput,
  type BrokeringOutput,
  type NotifyResult,
} from '../../machines/brokering.js';
import type { NativeSession } from './native-splice.js';
import type { RouteStatus } from './splice-endpoint.js';
import { createSplicer, type Direction, type SpliceLimits } from './splicer.js';
import { TokenStore } from './token-store.js';

// One brokering actor per session, and the glue between the splice endpoint (tokens, proofs and
// sockets), the machine (what a session is) and whoever opened the session (its messengers tell
// B and confirm A). The registry holds each session's tokens so the machine never has to.
//
// A spliced session that the native relay took over is parked: nothing of it is left in JS but
// its record here, its tokens and its machine's persisted snapshot (the actor and its splicer are
// stopped), so an idle session keeps no live actor. Whatever reaches a parked session (the
// relay's report of its end, the proxy's shutdown, a dial with one of its spent tokens) revives
// the actor from that snapshot and is sent to it, so the machine still decides every step out of
// `spliced` and every refusal in it, with the same logs, metrics and inspector steps as live.

export type { Leg };
export type SessionInfo = BrokeringInput;

export interface SessionStats {
  bytesAToB: number;
  bytesBToA: number;
  durationMs: number;
}

/** What one leg's dialer needs: its token, and the challenge its proof must sign. */
export interface LegPass {
  token: Buffer;
  challenge: Buffer;
}

/** How a session reaches its parties over the control plane: given by whoever opens it. */
export interface SessionMessengers {
  /**
   * Tells B (B needs its leg's pass to dial). `signal` aborts once the machine no longer waits for
   * B's answer (B's socket came first, or the session ended): the answer can then go unread.
   */
  notifyB: (session: SessionInfo, pass: LegPass, signal: AbortSignal) => Promise<NotifyResult>;
  /** Confirms to A once B's socket is held (A needs its leg's pass to dial). */
  confirmToA: (session: SessionInfo, pass: LegPass) => Promise<void>;
  /**
   * Called once B has been told: A's confirmation says nothing that changes before B dials, so
   * it may be made ready (signed) while the session waits for B. Confirming stays confirmToA's.
   */
  prepareConfirmation?: (session: SessionInfo, pass: LegPass) => void;
}

export interface SessionRegistryOptions {
  log: Logger;
  /** The proxy's operator name: every proof names the proxy it was made for. */
  operator: string;
  /** A dialer's certificate as the signed directory lists it (B's is session.b, A's session.a). */
  certificateOf: (operator: string) => { certificate: string; fingerprint: string } | undefined;
  timeouts?: { bDialMs?: number; aDialMs?: number };
  onSpliced?: (session: SessionInfo) => void;
  onFinished?: (session: SessionInfo, output: BrokeringOutput, stats: SessionStats) => void;
  onRelayed?: (direction: Direction, bytes: number, sessionId: string) => void;
  /** Ends a splice with no traffic for this long; 0 disables. */
  spliceIdleMs?: number;
  /** xstate's inspection hook for every session actor: how tests and tools see each transition. */
  inspect?: (event: InspectionEvent) => void;
  tokens?: TokenStore;
}

export interface SessionOptions {
  /** How B is told and A confirmed, for this session: brokering tells operators over the bus, a relay tells nobody. */
  messengers: SessionMessengers;
  /**
   * One deadline for both dials, this long after opening, instead of bDialMs then aDialMs: a
   * game relay's grant says "dial within this long" to both peers, and the session must end then
   * too, whichever peer dials first, so the rendezvous never hands out a dead token as live.
   */
  dialWithinMs?: number;
  /**
   * Default true: each dialer must prove its operator identity in the preamble (brokered
   * sessions). Game relays pass false: game peers hold no operator key; their leg tokens are
   * handed only to the peer they belong to. In a session without proofs either leg may dial
   * first; the first one is held (the machine's B).
   */
  proofs?: boolean;
  /** A relay grant's limits, enforced by the splicer; the reason lands in the session's output. */
  limits?: SpliceLimits;
}

export interface OpenedSession {
  sessionId: string;
  /** One single-use token per leg: A's and B's differ, so the proxy knows which side dials. */
  tokens: Record<Leg, Buffer>;
  /** What each leg's proof signs besides its token; sent to B and A with their tokens. */
  challenge: Buffer;
  done: Promise<BrokeringOutput>;
  /**
   * Settles once the session no longer waits for a dial: true when A and B were spliced, false
   * when it ended before that. What capacity caps count brokerings in flight by.
   */
  spliced: Promise<boolean>;
}

/** The same id for a session's actor and the one revived after parking (tests follow it by id). */
const actorId = (sessionId: string): string => `brokering-${sessionId}`;

/** Bytes of the proxy-chosen challenge: as unguessable as a token. */
const CHALLENGE_BYTES = 32;

/** What a session's handshake uses: dropped once the session is parked, when both legs dialed. */
interface Handshake {
  tokens: Record<Leg, Buffer>;
  challenge: Buffer;
  messengers: SessionMessengers;
}

interface Session {
  info: SessionInfo;
  startedAt: number;
  handshake: Handshake | undefined;
  proofs: boolean;
  /** Undefined while the session is parked. */
  actor: Actor<typeof brokeringMachine> | undefined;
  /**
   * The machine's persisted snapshot while the actor is parked, as JSON text: one string instead
   * of a tree of objects (xstate builds the persisted object by spreading, and V8 gave each one a
   * hidden class of its own: 2,092 of them in a heap snapshot of 2,100 parked sessions).
   */
  parked: string | undefined;
  /** The native relay, once its splicer gave it up to this registry: cancelled when the session finishes. */
  relay: NativeSession | undefined;
  /** The actor's subscription and its inspection hook, dropped before a parked actor stops. */
  watching: Subscription[];
  done: Promise<BrokeringOutput>;
  resolveDone: (output: BrokeringOutput) => void;
  resolveSpliced: (spliced: boolean) => void;
  /** Legs whose dial the machine took: their tokens are spent. */
  dialed: Set<Leg>;
  /** Without proofs: the leg that dialed first and is held as the machine's B. */
  heldLeg: Leg | undefined;
  /** Set by the machine's rejectDial action while route() is sending it a dial. */
  rejected: unknown;
  /** Dials refused BAD_PROOF, per leg: the first is logged, the count goes in the final line. */
  badProofs: Record<Leg, number>;
  log: () => Logger;
}

export class SessionRegistry {
  readonly #sessions = new Map<string, Session>();
  /**
   * Absolute times (ms) by which both dials must have arrived, for sessions opened with one. Apart
   * from #sessions because the machine reads its first delay while the actor is being created.
   */
  readonly #dialDeadlines = new Map<string, number>();
  /** Relay grants' limits, read by each session's splicer when it starts. */
  readonly #limits = new Map<string, SpliceLimits>();
  readonly #tokens: TokenStore;
  readonly #options: SessionRegistryOptions;
  readonly #machine;
  #shuttingDown = false;
  #parkedCount = 0;

  constructor(options: SessionRegistryOptions) {
    this.#options = options;
    this.#tokens = options.tokens ?? new TokenStore();
    const handshake = (sessionId: string): Handshake & { info: SessionInfo } => {
      const s = this.#sessions.get(sessionId);
      if (!s?.handshake) throw new Error(`no live session ${sessionId}`);
      return { ...s.handshake, info: s.info };
    };
    this.#machine = brokeringMachine.provide({
      actors: {
        notifyB: fromPromise<NotifyResult, BrokeringInput>(({ input, signal }) => {
          const s = handshake(input.sessionId);
          const notified = s.messengers.notifyB(s.info, { token: s.tokens.b, challenge: s.challenge }, signal);
          s.messengers.prepareConfirmation?.(s.info, { token: s.tokens.a, challenge: s.challenge });
          return notified;
        }),
        confirmToA: fromPromise<void, BrokeringInput>(({ input }) => {
          const s = handshake(input.sessionId);
          return s.messengers.confirmToA(s.info, { token: s.tokens.a, challenge: s.challenge });
        }),
        splicer: createSplicer({
          log: options.log.child({ component: 'splicer' }),
          idleMs: options.spliceIdleMs ?? 0,
          limitsOf: (sessionId) => this.#limits.get(sessionId),
          onRelayed: options.onRelayed,
          // After the splicer's own event is processed: the actor is not stopped from inside it.
          onHandedOver: (sessionId, release) => queueMicrotask(() => this.#adopt(sessionId, release)),
        }),
      },
      actions: {
        rejectDial: ({ context }, params) => {
          const s = this.#sessions.get(context.sessionId);
          if (s) s.rejected = params.socket;
        },
      },
      delays: {
        bDialTimeout: ({ context }) => this.#waitFor(context.sessionId, options.timeouts?.bDialMs ?? DEFAULT_B_DIAL_TIMEOUT_MS),
        aDialTimeout: ({ context }) => this.#waitFor(context.sessionId, options.timeouts?.aDialMs ?? DEFAULT_A_DIAL_TIMEOUT_MS),
      },
    });
  }

  /** Starts a session; its messengers say how B is told and A confirmed. */
  open(request: { a: string; b: string; endpoint: string }, via: SessionOptions): OpenedSession {
    if (this.#shuttingDown) throw new Error('session registry is shutting down');
    const sessionId = randomUUID();
    const info: SessionInfo = { sessionId, a: request.a, b: request.b, endpoint: request.endpoint };
    const tokens = this.#tokens.mint(sessionId);
    const challenge = secureRandomBytes(CHALLENGE_BYTES);
    const log = childOnDemand(this.#options.log, { component: 'brokering', sessionId });
    const startedAt = Date.now();
    if (via.dialWithinMs !== undefined) this.#dialDeadlines.set(sessionId, startedAt + via.dialWithinMs);
    if (via.limits) this.#limits.set(sessionId, via.limits);
    const actor = createActor(this.#machine, { input: info, id: actorId(sessionId) });

    let resolveDone!: (output: BrokeringOutput) => void;
    const done = new Promise<BrokeringOutput>((resolve) => (resolveDone = resolve));
    let resolveSpliced!: (spliced: boolean) => void;
    const spliced = new Promise<boolean>((resolve) => (resolveSpliced = resolve));
    const s: Session = {
      info,
      startedAt,
      handshake: { tokens, challenge, messengers: via.messengers },
      proofs: via.proofs ?? true,
      actor,
      parked: undefined,
      relay: undefined,
      watching: [],
      done,
      resolveDone,
      resolveSpliced,
      dialed: new Set(),
      heldLeg: undefined,
      rejected: undefined,
      badProofs: { a: 0, b: 0 },
      log,
    };
    this.#sessions.set(sessionId, s);
    // Before start(), so that the inspector sees the session open.
    this.#watch(s, actor, '');
    if (this.#options.log.isLevelEnabled('debug')) log().debug({ a: info.a, b: info.b, endpoint: info.endpoint, proofs: s.proofs }, 'brokering session opened');
    actor.start();
    return { sessionId, tokens, challenge, done, spliced };
  }

  /** Follows an actor's snapshots (transitions, splicing, its end) and feeds the inspection hook. */
  #watch(s: Session, actor: Actor<typeof brokeringMachine>, from: string): void {
    const { log, info } = s;
    const debug = this.#options.log.isLevelEnabled('debug');
    let last = from;
    const watching = actor.subscribe({
      next: (snapshot) => {
        const state = JSON.stringify(snapshot.value);
        if (state !== last) {
          if (debug) log().debug({ from: last || undefined, to: snapshot.value }, 'brokering transition');
          if (snapshot.matches({ holding: 'spliced' }) && !last.includes('spliced')) {
            s.resolveSpliced(true);
            this.#options.onSpliced?.(info);
          }
          last = state;
        }
        if (snapshot.status !== 'done') return;
        const output = snapshot.output as BrokeringOutput;
        this.#finish(s, output, { bytesAToB: snapshot.context.bytesAToB, bytesBToA: snapshot.context.bytesBToA, durationMs: Date.now() - s.startedAt });
      },
      error: (err) => {
        // Only a bug in the machine or a provided action lands here; still free the slot.
        log().error({ err }, 'brokering actor failed');
        const output: BrokeringOutput = { outcome: 'busFailed', detail: `internal error: ${String(err)}` };
        this.#finish(s, output, { bytesAToB: 0, bytesBToA: 0, durationMs: Date.now() - s.startedAt });
      },
    });
    s.watching = this.#options.inspect ? [watching, actor.system.inspect(this.#options.inspect)] : [watching];
  }

  /**
   * Takes the native relay from a spliced session's splicer, then parks the session: the relay
   * reports to this registry from now on, and whatever it reports wakes the session's actor.
   */
  #adopt(sessionId: string, release: () => NativeSession | undefined): void {
    const s = this.#sessions.get(sessionId);
    if (!s || !this.#parkable(s)) return;
    const relay = release();
    if (!relay) return;
    s.relay = relay;
    const { onRelayed } = this.#options;
    relay.rebind({
      onRelayed: (aToB, bToA) => {
        if (aToB > 0) onRelayed?.('aToB', aToB, sessionId);
        if (bToA > 0) onRelayed?.('bToA', bToA, sessionId);
      },
      onEnded: (reason, bytesAToB, bytesBToA, error) => {
        if (error !== undefined) s.log().debug({ reason, err: error }, 'splice ended with a socket error');
        this.#awake(s)?.send({ type: 'SPLICE_ENDED', reason, bytesAToB, bytesBToA });
      },
    });
    this.#park(s);
  }

  #parkable(s: Session): boolean {
    const snapshot = s.actor?.getSnapshot();
    return !this.#shuttingDown && snapshot?.status === 'active' && snapshot.matches({ holding: 'spliced' });
  }

  /**
   * Puts a spliced session's actor to sleep: its snapshot is kept, and the actor with its splicer
   * (which holds nothing now) is stopped. What only the handshake needed goes with it.
   */
  #park(s: Session): void {
    const actor = s.actor;
    if (!actor || !s.relay || !this.#parkable(s)) return;
    s.parked = JSON.stringify(actor.getPersistedSnapshot());
    this.#parkedCount++;
    // Unwatched first: stopping the actor is no transition of the session's.
    for (const w of s.watching) w.unsubscribe();
    s.watching = [];
    s.actor = undefined;
    s.handshake = undefined;
    this.#dialDeadlines.delete(s.info.sessionId);
    this.#limits.delete(s.info.sessionId);
    actor.stop();
  }

  /** The session's actor, revived from its snapshot if it was parked (it parks again after a dial). */
  #awake(s: Session): Actor<typeof brokeringMachine> | undefined {
    const persisted = s.parked;
    if (persisted === undefined) return s.actor;
    s.parked = undefined;
    this.#parkedCount--;
    const snapshot = JSON.parse(persisted) as Snapshot<unknown>;
    const actor = createActor(this.#machine, { snapshot, input: s.info, id: actorId(s.info.sessionId) });
    s.actor = actor;
    // Started before it is watched: restoring re-announces the state it was parked in, which is
    // no transition. The splicer it restarts holds nothing: the relay stays this registry's.
    actor.start();
    this.#watch(s, actor, JSON.stringify(actor.getSnapshot().value));
    return actor;
  }

  /** Called by the splice endpoint with a socket that presented a complete preamble. */
  route({ token, proof }: Pick<Preamble, 'token' | 'proof'>, socket: Socket, rest: Buffer): RouteStatus {
    const found = this.#tokens.lookup(token);
    if (found.status === 'UNKNOWN') return 'UNKNOWN_TOKEN';
    if (found.status === 'USED') return 'TOKEN_USED';
    const s = this.#sessions.get(found.sessionId);
    if (!s) return 'UNKNOWN_TOKEN';
    // Both legs of a parked session dialed: the machine refuses this dial, and the session parks
    // again once it did. A thief replaying a spent token costs a revival, no proof check.
    const actor = this.#awake(s);
    if (!actor || actor.getSnapshot().status !== 'active') return 'UNKNOWN_TOKEN';
    if (s.relay) queueMicrotask(() => this.#park(s));
    const { leg } = found;

    // A leg that dialed has spent its token: its proof is not checked again, so a thief replaying
    // it costs a map lookup and the machine's refusal (a leg never dials twice), not a signature
    // verification and a log line per try.
    if (s.proofs && !s.dialed.has(leg)) {
      // Before the machine hears of it, and without spending the token: a thief holding the
      // token must not take the real peer's place, nor lock it out.
      const operator = s.info[leg];
      const challenge = s.handshake?.challenge;
      if (!challenge) return 'UNKNOWN_TOKEN';
      const check = verifyProof(
        proof,
        { proxy: this.#options.operator, sessionId: s.info.sessionId, leg, token, challenge },
        this.#options.certificateOf(operator),
      );
      if (!check.ok) {
        // Once per leg: a thief may retry for as long as the session waits, and the metric
        // counts each try. The real peer's own bad proof (a stale certificate) shows up here too.
        if (s.badProofs[leg]++ === 0) {
          s.log().warn({ leg, operator, remote: `${socket.remoteAddress}:${socket.remotePort}`, detail: check.detail }, 'splice dial without a valid proof refused');
        }
        return 'BAD_PROOF';
      }
    }

    // With proofs each leg is who it proved to be. Without, the first leg to dial is held as the
    // machine's B and the other one is its A.
    const role: Leg = s.proofs ? leg : s.heldLeg === undefined ? (actor.getSnapshot().matches('requested') ? 'b' : 'a') : s.heldLeg === leg ? 'b' : 'a';
    s.rejected = undefined;
    actor.send(role === 'b' ? { type: 'B_DIALED', socket, rest } : { type: 'A_DIALED', socket, rest });
    // Sends to an idle actor are processed synchronously, so the verdict is already in.
    const rejected = s.rejected === socket;
    s.rejected = undefined;
    if (rejected) return s.dialed.has(leg) ? 'TOKEN_USED' : 'WRONG_STATE';
    s.dialed.add(leg);
    if (role === 'b' && !s.proofs) s.heldLeg = leg;
    return 'ROUTED';
  }

  /** A named dial delay: the fixed one, or what is left until the session's own deadline. */
  #waitFor(sessionId: string, fixedMs: number): number {
    const deadline = this.#dialDeadlines.get(sessionId);
    return deadline === undefined ? fixedMs : Math.max(0, deadline - Date.now());
  }

  liveCount(): number {
    return this.#sessions.size;
  }

  /** Live sessions whose actor is parked (spliced, relayed natively). */
  parkedCount(): number {
    return this.#parkedCount;
  }

  /**
   * Resolves once no session is live (each finished its own way: spliced and closed by a peer,
   * or timed out), or at `timeoutMs`; returns how many were still live. Opens nothing, ends nothing:
   * the caller stops new sessions first (no more requests) and calls shutdown() after.
   */
  async whenIdle(timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.#sessions.size > 0 && Date.now() < deadline) {
      const live = [...this.#sessions.values()].map((s) => s.done);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.any(live), new Promise((resolve) => (timer = setTimeout(resolve, deadline - Date.now())))]);
      clearTimeout(timer);
    }
    return this.#sessions.size;
  }

  /** Ends every session (their splicers close the sockets) and waits until all have finished. */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    const pending = [...this.#sessions.values()].map((s) => {
      this.#awake(s)?.send({ type: 'SHUTDOWN' });
      return s.done;
    });
    await Promise.all(pending);
  }

  #finish(s: Session, output: BrokeringOutput, stats: SessionStats): void {
    if (!this.#sessions.has(s.info.sessionId)) return;
    this.#sessions.delete(s.info.sessionId);
    this.#dialDeadlines.delete(s.info.sessionId);
    this.#limits.delete(s.info.sessionId);
    this.#tokens.release(s.info.sessionId, [...s.dialed]);
    // What the splicer's cleanup does for a relay it still holds: descriptors closed, unreported
    // (a no-op when the relay reported this end itself).
    s.relay?.cancel();
    const badProofs = s.badProofs.a + s.badProofs.b > 0 ? { badProofs: s.badProofs } : {};
    s.log().info({ outcome: output.outcome, detail: output.detail, ...stats, ...badProofs }, 'brokering session finished');
    this.#options.onFinished?.(s.info, output, stats);
    s.resolveSpliced(false);
    s.resolveDone(output);
  }
}
