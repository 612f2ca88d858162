import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { initialTransition, transition } from 'xstate';
import {
  gameSessionMachine,
  relayIsLive,
  type GameSessionEvent,
  type GuestPairing,
  type RelayGrant,
  type GameSessionOutput,
  type OpenState,
} from '../../machines/game-session.js';
import type { Logger } from '../core/logger.js';
import { RelayUnavailableError, type RelaySession } from '../relay/client.js';
import type { GameRecord, GameStore, StoredGame } from './game-store.js';

// The games core: it knows the store and the machine, not HTTP. Every answer is a status value
// tagged by `type`, so the routes map them to responses and problems in one switch each.
//
// Each request rebuilds the game's machine from its record, feeds it the injected clock's reading
// (CLOCK_TICKED) and then the request's event, and writes the result back only if the revision it
// read is still current; on a conflict it starts over from a fresh read. So two instances never
// lose each other's writes, and whichever instance sees a silent host first expires the game.

export interface GameView {
  name: string;
  state: OpenState;
  guests: number;
  /** Whether a new guest fits. */
  open: boolean;
  createdAt: string;
}

export interface Candidates {
  peerId: string;
  addresses: string[];
}

export type RegisterResult = { type: 'registered'; game: GameView; secret: string } | { type: 'nameTaken' };
export type PollResult =
  | { type: 'polled'; status: 0 | 1; addresses: string[]; guests: Candidates[] }
  | { type: 'notFound' }
  | { type: 'notHost' };
export type StartResult =
  | { type: 'started'; status: 0 | 1; addresses: string[] }
  | { type: 'notFound' }
  | { type: 'isHost' }
  | { type: 'gameFull'; maxGuests: number };
export type RelayResult =
  /** The caller's view of the grant: its own token only. */
  | { type: 'relay'; sessionId: string; token: string; endpoint: string; dialWithinMs: number; limits: RelayGrant['limits'] }
  | { type: 'notFound' }
  /** The caller is neither the host nor a guest of the game. */
  | { type: 'notInGame' }
  /** The host named a guest the game does not have. */
  | { type: 'unknownGuest' }
  /** A relay is for peers that swapped candidates and failed to punch; these have not swapped. */
  | { type: 'notPaired' }
  | { type: 'relayUnavailable'; detail: string };
export type RenameResult = { type: 'renamed'; game: GameView } | { type: 'notFound' } | { type: 'badSecret' } | { type: 'nameTaken' };
export type RemoveResult = { type: 'removed' } | { type: 'notFound' } | { type: 'badSecret' };

/** The store kept answering "someone wrote first": a hot game or a broken store. */
export class StoreContentionError extends Error {
  override readonly name = 'StoreContentionError';
}

export interface GameServiceOptions {
  store: GameStore;
  /** The clock, injected so tests (and the machine's guards) never read the wall clock. */
  now: () => number;
  hostPollTimeoutMs: number;
  maxGuests: number;
  /** Sees each step once it is written (the inspector's feed); never changes what is written. */
  onTransition?: (game: string, event: { type: string } & Record<string, unknown>, snapshot: Snapshot) => void;
  log?: Logger;
  /** Attempts before a conflicting write gives up with StoreContentionError. */
  maxAttempts?: number;
  /** Asks the proxy for a relay session (src/relay/client.ts); absent when none is configured. */
  requestRelay?: (game: string) => Promise<RelaySession>;
}

type Snapshot = ReturnType<typeof gameSessionMachine.resolveState>;

const hashSecret = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();

export class GameService {
  private readonly store: GameStore;
  private readonly now: () => number;
  private readonly maxAttempts: number;

  constructor(private readonly opts: GameServiceOptions) {
    this.store = opts.store;
    this.now = opts.now;
    this.maxAttempts = opts.maxAttempts ?? 10;
  }

  async register(name: string, peerId: string): Promise<RegisterResult> {
    // The secret has 256 bits of entropy, so a plain SHA-256 is enough: there is nothing to
    // brute-force that a slow hash would protect.
    const secret = randomBytes(32).toString('base64url');
    const [snapshot] = initialTransition(gameSessionMachine, {
      name,
      hostPeerId: peerId,
      at: this.now(),
      hostPollTimeoutMs: this.opts.hostPollTimeoutMs,
      maxGuests: this.opts.maxGuests,
    });
    const record = this.recordOf(snapshot, hashSecret(secret).toString('hex'));
    const created = await this.createReclaiming(name, record);
    if (created.type === 'exists') return { type: 'nameTaken' };
    this.opts.onTransition?.(name, { type: 'xstate.init' }, snapshot);
    this.opts.log?.info({ game: name }, 'game registered');
    return { type: 'registered', game: this.view(snapshot), secret };
  }

  async poll(name: string, peerId: string, addresses: string[]): Promise<PollResult> {
    return this.mutate<PollResult>(
      name,
      (s) => (s.context.hostPeerId === peerId ? { event: { type: 'HOST_POLLED', at: this.now(), addresses } } : { refuse: { type: 'notHost' } }),
      (s) => {
        const guests = s.context.guests.map((g) => ({ peerId: g.peerId, addresses: g.addresses }));
        return { type: 'polled', status: guests.length > 0 ? 1 : 0, addresses: guests.flatMap((g) => g.addresses), guests };
      },
    );
  }

  async start(name: string, peerId: string, addresses: string[]): Promise<StartResult> {
    return this.mutate<StartResult>(
      name,
      (s) => (s.context.hostPeerId === peerId ? { refuse: { type: 'isHost' } } : { event: { type: 'GUEST_STARTED', at: this.now(), peerId, addresses } }),
      (s) => {
        // The machine's hasRoomForGuest guard leaves a guest out when the game is full.
        if (!s.context.guests.some((g) => g.peerId === peerId)) return { type: 'gameFull', maxGuests: s.context.maxGuests };
        const hostAddresses = s.context.hostAddresses;
        return { type: 'started', status: hostAddresses.length > 0 ? 1 : 0, addresses: hostAddresses };
      },
    );
  }

  /**
   * A relay for the pairing of the calling guest (or, for the host, of the guest it names). Both
   * peers of a pairing get the same session, each with its own token: the first to ask makes the
   * proxy open a session, and the machine keeps a live grant when a concurrent request brings a
   * second one.
   */
  async relay(name: string, peerId: string, guest?: string): Promise<RelayResult> {
    const stored = await this.store.get(name);
    const s = stored && this.ticked(stored);
    if (!s || s.status !== 'active') return { type: 'notFound' };
    const found = pairingFor(s, peerId, guest);
    if (found.type !== 'pairing') return found;
    const role = s.context.hostPeerId === peerId ? 'host' : 'guest';
    const live = found.pairing.relay;
    if (relayIsLive(live, this.now())) return this.granted(live, role);
    if (!this.opts.requestRelay) return { type: 'relayUnavailable', detail: 'this rendezvous has no relay configured' };
    let session: RelaySession;
    try {
      session = await this.opts.requestRelay(s.context.name);
    } catch (err) {
      if (err instanceof RelayUnavailableError) return { type: 'relayUnavailable', detail: err.message };
      throw err;
    }
    const { tokens, endpoint, sessionId, limits } = session;
    const grant: RelayGrant = { sessionId, tokens, endpoint, limits, expiresAt: this.now() + session.dialWithinMs };
    return this.mutate<RelayResult>(
      name,
      (snap) => {
        const again = pairingFor(snap, peerId, guest);
        if (again.type !== 'pairing') return { refuse: again };
        return { event: { type: 'RELAY_GRANTED', at: this.now(), peerId: again.pairing.peerId, relay: grant } };
      },
      (snap) => {
        const relay = pairingFor(snap, peerId, guest);
        if (relay.type !== 'pairing' || !relay.pairing.relay) return { type: 'relayUnavailable', detail: 'the grant was not recorded' };
        if (relay.pairing.relay.sessionId !== sessionId) this.opts.log?.info({ game: name, sessionId }, 'concurrent relay grant kept; this one will expire unused');
        else this.opts.log?.info({ game: name, sessionId }, 'relay granted');
        return this.granted(relay.pairing.relay, role);
      },
    );
  }

  /** Each peer is handed only its own token: the other's is the other leg of the session. */
  private granted(relay: RelayGrant, role: 'host' | 'guest'): RelayResult {
    const { sessionId, endpoint, limits } = relay;
    return { type: 'relay', sessionId, token: relay.tokens[role], endpoint, limits, dialWithinMs: Math.max(0, relay.expiresAt - this.now()) };
  }

  async get(name: string): Promise<{ type: 'found'; game: GameView } | { type: 'notFound' }> {
    const stored = await this.store.get(name);
    const s = stored && this.ticked(stored);
    return s && s.status === 'active' ? { type: 'found', game: this.view(s) } : { type: 'notFound' };
  }

  /** Open games, oldest first. Reads only: a game past its timeout is hidden until a sweep removes it. */
  async list(): Promise<GameView[]> {
    const games = await Promise.all((await this.store.names()).map((n) => this.get(n)));
    return games
      .flatMap((g) => (g.type === 'found' ? [g.game] : []))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.name.localeCompare(b.name));
  }

  async rename(name: string, secret: string, newName: string): Promise<RenameResult> {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const stored = await this.store.get(name);
      const s = stored && this.ticked(stored);
      if (!stored || !s || s.status !== 'active') return { type: 'notFound' };
      if (!this.secretMatches(stored.record, secret)) return { type: 'badSecret' };
      const renamed = transition(gameSessionMachine, s, { type: 'RENAMED', newName })[0];
      if (newName === name) return { type: 'renamed', game: this.view(renamed) };
      // A key is the name, so a rename is create-new then delete-old; if the old record moved
      // on meanwhile, the copy is withdrawn and the rename retried from the newer record.
      const created = await this.createReclaiming(newName, this.recordOf(renamed, stored.record.secretHash));
      if (created.type === 'exists') return { type: 'nameTaken' };
      const removed = await this.store.remove(name, stored.revision);
      if (removed.type === 'removed') {
        this.opts.onTransition?.(name, { type: 'RENAMED', newName }, renamed);
        this.opts.log?.info({ game: name, newName }, 'game renamed');
        return { type: 'renamed', game: this.view(renamed) };
      }
      await this.store.remove(newName, created.revision);
    }
    throw new StoreContentionError(`game ${name}: rename kept conflicting`);
  }

  async remove(name: string, secret: string): Promise<RemoveResult> {
    return this.mutate<RemoveResult>(
      name,
      (s, stored) => (this.secretMatches(stored.record, secret) ? { event: { type: 'DELETED' } } : { refuse: { type: 'badSecret' } }),
      () => ({ type: 'removed' }),
    );
  }

  /** Expires every game whose host went silent; any instance may run it at any time. */
  async sweep(): Promise<number> {
    let expired = 0;
    for (const name of await this.store.names()) {
      // An expired game answers requests as not found; the sweep counts it as what it expired.
      const r = await this.mutate<{ type: 'gone' | 'kept' }>(name, () => ({ event: undefined }), () => ({ type: 'kept' }), () => ({ type: 'gone' }));
      if (r.type === 'gone') expired++;
    }
    return expired;
  }

  /**
   * The read-step-write loop. `decide` sees the ticked snapshot and either refuses (a status
   * value, nothing written) or names the event to apply; `answer` words the result from the
   * snapshot after it. A snapshot that ends (expired, closed) deletes the key; an expired one is
   * answered `expired` (not found, unless the caller words it).
   */
  private async mutate<R extends { type: string }>(
    name: string,
    decide: (s: Snapshot, stored: StoredGame) => { refuse: R } | { event: GameSessionEvent | undefined },
    answer: (s: Snapshot) => R,
    expired: () => R | { type: 'notFound' } = () => ({ type: 'notFound' }),
  ): Promise<R | { type: 'notFound' }> {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const stored = await this.store.get(name);
      if (!stored) return { type: 'notFound' };
      const ticked = this.ticked(stored);
      let next = ticked;
      let refused: R | undefined;
      // What the inspector is told moved the game: the request's event, else the clock.
      let event: GameSessionEvent | { type: 'CLOCK_TICKED' } = { type: 'CLOCK_TICKED' };
      if (ticked.status === 'active') {
        const d = decide(ticked, stored);
        if ('refuse' in d) refused = d.refuse;
        else if (d.event) next = transition(gameSessionMachine, ticked, (event = d.event))[0];
      }
      if (next.status === 'done') {
        const removed = await this.store.remove(name, stored.revision);
        if (removed.type === 'conflict') continue;
        this.opts.onTransition?.(name, event, next);
        const output = next.output as GameSessionOutput;
        this.opts.log?.info({ game: name, outcome: output.outcome, detail: output.detail }, 'game ended');
        // An expired game is gone for the caller; a deletion is the caller's own success.
        return output.outcome === 'expired' ? expired() : answer(next);
      }
      if (refused) return refused;
      const record = this.recordOf(next, stored.record.secretHash);
      // A tick that changed nothing (the common sweep) costs no write.
      if (JSON.stringify(record) === JSON.stringify(stored.record)) return answer(next);
      const updated = await this.store.update(name, record, stored.revision);
      if (updated.type === 'updated') {
        this.opts.onTransition?.(name, event, next);
        return answer(next);
      }
    }
    throw new StoreContentionError(`game ${name}: writes kept conflicting after ${this.maxAttempts} attempts`);
  }

  /** Creates a key; a name still held by a game past its timeout (not swept yet) is free. */
  private async createReclaiming(name: string, record: GameRecord) {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const created = await this.store.create(name, record);
      if (created.type === 'created') return created;
      const holder = await this.store.get(name);
      if (holder && this.ticked(holder).status === 'active') return created;
      if (holder) await this.store.remove(name, holder.revision);
    }
    throw new StoreContentionError(`game ${name}: create kept conflicting`);
  }

  /** Rebuilds the machine from a record (current settings win) and shows it the clock. */
  private ticked(stored: StoredGame): Snapshot {
    const { state, context } = stored.record;
    const snapshot = gameSessionMachine.resolveState({
      value: { open: state },
      context: { ...context, hostPollTimeoutMs: this.opts.hostPollTimeoutMs, maxGuests: this.opts.maxGuests },
    });
    return transition(gameSessionMachine, snapshot, { type: 'CLOCK_TICKED', at: this.now() })[0];
  }

  private recordOf(s: Snapshot, secretHash: string): GameRecord {
    return { v: 1, secretHash, state: openState(s), context: s.context };
  }

  private view(s: Snapshot): GameView {
    const c = s.context;
    return {
      name: c.name,
      state: openState(s),
      guests: c.guests.length,
      open: c.guests.length < c.maxGuests,
      createdAt: new Date(c.createdAt).toISOString(),
    };
  }

  private secretMatches(record: GameRecord, secret: string): boolean {
    const expected = Buffer.from(record.secretHash, 'hex');
    const actual = hashSecret(secret);
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
}

/** The pairing a relay request is about: the caller's own as a guest, or the named one for the host. */
function pairingFor(
  s: Snapshot,
  peerId: string,
  guest: string | undefined,
): { type: 'pairing'; pairing: GuestPairing } | { type: 'notInGame' } | { type: 'unknownGuest' } | { type: 'notPaired' } {
  const isHost = s.context.hostPeerId === peerId;
  if (!isHost && guest !== undefined && guest !== peerId) return { type: 'notInGame' };
  const wanted = isHost ? guest : peerId;
  const pairing = wanted === undefined ? undefined : s.context.guests.find((g) => g.peerId === wanted);
  if (!pairing) return isHost ? { type: 'unknownGuest' } : { type: 'notInGame' };
  if (pairing.status === 'waiting') return { type: 'notPaired' };
  return { type: 'pairing', pairing };
}

function openState(s: Snapshot): OpenState {
  const value = s.value as { open?: OpenState } | string;
  if (typeof value === 'object' && value.open) return value.open;
  throw new Error(`game is not open (state ${JSON.stringify(value)})`);
}
