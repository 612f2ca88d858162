import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { createActor, fromPromise, type Actor, type InspectionEvent } from 'xstate';
import { DEFAULT_A_DIAL_TIMEOUT_MS, DEFAULT_B_DIAL_TIMEOUT_MS } from '../core/constants.js';
import type { Logger } from '../core/logger.js';
import {
  brokeringMachine,
  type BrokeringInput,
  type BrokeringOutput,
  type NotifyResult,
} from '../../machines/brokering.js';
import type { RouteStatus } from './splice-endpoint.js';
import { createSplicer, type Direction, type SpliceLimits } from './splicer.js';
import { TokenStore, type Leg } from './token-store.js';

export type { Leg } from './token-store.js';

// One brokering actor per session, and the glue between the splice endpoint (tokens and
// sockets), the machine (what a session is) and the bus (notifyB / confirmToA, provided by the
// caller). The registry holds each session's token so the machine never has to.

export type SessionInfo = BrokeringInput;

export interface SessionStats {
  bytesAToB: number;
  bytesBToA: number;
  durationMs: number;
}

export interface SessionRegistryOptions {
  log: Logger;
  timeouts?: { bDialMs?: number; aDialMs?: number };
  /** Forwards A's request to B over the bus; B needs the token to dial. */
  notifyB: (session: SessionInfo, token: Buffer) => Promise<NotifyResult>;
  /** Answers A's pending bus request; A needs the token to dial. */
  confirmToA: (session: SessionInfo, token: Buffer, endpoint: string) => Promise<void>;
  onSpliced?: (session: SessionInfo) => void;
  onFinished?: (session: SessionInfo, output: BrokeringOutput, stats: SessionStats) => void;
  onRelayed?: (direction: Direction, bytes: number, sessionId: string) => void;
  /** Ends a splice with no traffic for this long; 0 disables. */
  spliceIdleMs?: number;
  /** xstate's inspection hook for every session actor: how tests and tools see each transition. */
  inspect?: (event: InspectionEvent) => void;
  tokens?: TokenStore;
}

/** How a session reaches its parties over the control plane; the registry's options are the default. */
export type SessionMessengers = Pick<SessionRegistryOptions, 'notifyB' | 'confirmToA'>;

export interface SessionOptions {
  /** Replaces how B is told and A confirmed, for this session only. */
  messengers?: SessionMessengers;
  /**
   * One deadline for both dials, this long after opening, instead of bDialMs then aDialMs: a
   * game relay's grant says "dial within this long" to both peers, and the session must end then
   * too, whichever peer dials first, so the rendezvous never hands out a dead token as live.
   */
  dialWithinMs?: number;
  /**
   * Default true: a brokered session, whose B dials first. Game relays pass false: game peers
   * hold no operator key and either may dial first; the first one is held (the machine's B).
   * (Minimal version on this branch: brokered sessions still share one token between the legs;
   * sessions without proofs get one single-use token per leg.)
   */
  proofs?: boolean;
  /** A relay grant's limits, enforced by the splicer; the reason lands in the session's output. */
  limits?: SpliceLimits;
}

export interface OpenedSession {
  sessionId: string;
  /** One token per leg; in a session without proofs they differ and each is single use. */
  tokens: Record<Leg, Buffer>;
  done: Promise<BrokeringOutput>;
}

interface Session {
  info: SessionInfo;
  tokens: Record<Leg, Buffer>;
  /** Either leg may dial first (a game relay): the first is held as the machine's B. */
  eitherFirst: boolean;
  /** The leg held as B, once one dialed. */
  heldLeg: Leg | undefined;
  actor: Actor<typeof brokeringMachine>;
  done: Promise<BrokeringOutput>;
  messengers: SessionMessengers;
  /** Set by the machine's rejectDial action while route() is sending it a dial. */
  rejected: unknown;
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

  constructor(options: SessionRegistryOptions) {
    this.#options = options;
    this.#tokens = options.tokens ?? new TokenStore();
    const session = (sessionId: string): Session => {
      const s = this.#sessions.get(sessionId);
      if (!s) throw new Error(`no live session ${sessionId}`);
      return s;
    };
    this.#machine = brokeringMachine.provide({
      actors: {
        notifyB: fromPromise<NotifyResult, BrokeringInput>(({ input }) => {
          const s = session(input.sessionId);
          return s.messengers.notifyB(s.info, s.tokens.b);
        }),
        confirmToA: fromPromise<void, BrokeringInput>(({ input }) => {
          const s = session(input.sessionId);
          return s.messengers.confirmToA(s.info, s.tokens.a, s.info.endpoint);
        }),
        splicer: createSplicer({
          log: options.log.child({ component: 'splicer' }),
          idleMs: options.spliceIdleMs ?? 0,
          limitsOf: (sessionId) => this.#limits.get(sessionId),
          onRelayed: options.onRelayed,
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

  /**
   * Starts a session. A game relay passes its own messengers (its token goes to the rendezvous,
   * not to two operators on the bus) and one dial deadline for both peers.
   */
  open(request: { a: string; b: string; endpoint: string }, via: SessionOptions = {}): OpenedSession {
    if (this.#shuttingDown) throw new Error('session registry is shutting down');
    const sessionId = randomUUID();
    const info: SessionInfo = { sessionId, a: request.a, b: request.b, endpoint: request.endpoint };
    const eitherFirst = via.proofs === false;
    const a = this.#tokens.mint(sessionId, 'a');
    const tokens = { a, b: eitherFirst ? this.#tokens.mint(sessionId, 'b') : a };
    if (via.limits) this.#limits.set(sessionId, via.limits);
    const log = this.#options.log.child({ component: 'brokering', sessionId });
    const startedAt = Date.now();
    if (via.dialWithinMs !== undefined) this.#dialDeadlines.set(sessionId, startedAt + via.dialWithinMs);
    const actor = createActor(this.#machine, { input: info, id: `brokering-${sessionId}`, inspect: this.#options.inspect });

    let resolveDone!: (output: BrokeringOutput) => void;
    const done = new Promise<BrokeringOutput>((resolve) => (resolveDone = resolve));
    const s: Session = { info, tokens, eitherFirst, heldLeg: undefined, actor, done, messengers: via.messengers ?? this.#options, rejected: undefined };
    this.#sessions.set(sessionId, s);

    let last = '';
    actor.subscribe({
      next: (snapshot) => {
        const state = JSON.stringify(snapshot.value);
        if (state !== last) {
          log.debug({ from: last || undefined, to: snapshot.value }, 'brokering transition');
          if (snapshot.matches({ holding: 'spliced' }) && !last.includes('spliced')) this.#options.onSpliced?.(info);
          last = state;
        }
        if (snapshot.status !== 'done') return;
        const output = snapshot.output as BrokeringOutput;
        const stats: SessionStats = {
          bytesAToB: snapshot.context.bytesAToB,
          bytesBToA: snapshot.context.bytesBToA,
          durationMs: Date.now() - startedAt,
        };
        this.#finish(s, log, output, stats);
        resolveDone(output);
      },
      error: (err) => {
        // Only a bug in the machine or a provided action lands here; still free the slot.
        log.error({ err }, 'brokering actor failed');
        const output: BrokeringOutput = { outcome: 'busFailed', detail: `internal error: ${String(err)}` };
        this.#finish(s, log, output, { bytesAToB: 0, bytesBToA: 0, durationMs: Date.now() - startedAt });
        resolveDone(output);
      },
    });
    log.debug({ a: info.a, b: info.b, endpoint: info.endpoint }, 'brokering session opened');
    actor.start();
    return { sessionId, tokens, done };
  }

  /** Called by the splice endpoint with a socket that presented `token`. */
  route(token: Buffer, socket: Socket, rest: Buffer): RouteStatus {
    const found = this.#tokens.lookup(token);
    if (found.status === 'UNKNOWN') return 'UNKNOWN_TOKEN';
    if (found.status === 'USED') return 'TOKEN_USED';
    const s = this.#sessions.get(found.sessionId);
    if (!s || s.actor.getSnapshot().status !== 'active') return 'UNKNOWN_TOKEN';

    // B dials first (while the session is `requested`); the only other dialer is A. Which of
    // the two may dial now is the machine's call: it rejects a dial it cannot use. In a session
    // where either leg may dial first, the first is B and only the other leg's token can be A.
    const isB = s.actor.getSnapshot().matches('requested');
    const leg: Leg = s.tokens.a.equals(token) ? 'a' : 'b';
    if (s.eitherFirst && !isB && leg === s.heldLeg) return 'TOKEN_USED';
    s.rejected = undefined;
    s.actor.send(isB ? { type: 'B_DIALED', socket, rest } : { type: 'A_DIALED', socket, rest });
    // Sends to an idle actor are processed synchronously, so the verdict is already in.
    const rejected = s.rejected === socket;
    s.rejected = undefined;
    if (rejected) return 'WRONG_STATE';
    // A shared token must stay valid for A; a leg's own token is spent once it dialed.
    if (!isB || s.eitherFirst) this.#tokens.consume(token);
    if (isB) s.heldLeg = leg;
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

  /** Ends every session (their splicers close the sockets) and waits until all have finished. */
  async shutdown(): Promise<void> {
    this.#shuttingDown = true;
    const pending = [...this.#sessions.values()].map((s) => {
      s.actor.send({ type: 'SHUTDOWN' });
      return s.done;
    });
    await Promise.all(pending);
  }

  #finish(s: Session, log: Logger, output: BrokeringOutput, stats: SessionStats): void {
    if (!this.#sessions.has(s.info.sessionId)) return;
    this.#sessions.delete(s.info.sessionId);
    this.#dialDeadlines.delete(s.info.sessionId);
    this.#limits.delete(s.info.sessionId);
    this.#tokens.release(s.info.sessionId);
    log.info({ outcome: output.outcome, detail: output.detail, ...stats }, 'brokering session finished');
    this.#options.onFinished?.(s.info, output, stats);
  }
}
