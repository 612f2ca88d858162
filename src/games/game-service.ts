import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { initialTransition } from 'xstate';
import { jsonEqual } from '../../machines/json-equal.js';
import { pureStepper } from '../core/machine-steps.js';
import {
  clockTickIsQuiet,
  gameSessionMachine,
  liveInFlight,
  onlyLivenessRefreshed,
  pairingOnlyRefreshed,
  refreshSlackMs,
  relayHeldUntil,
  relayNext,
  settledState,
  type GameSessionEvent,
  type GuestPairing,
  type RelayGrant,
  type GameSessionOutput,
  type OpenState,
} from '../../machines/game-session.js';
import type { Logger } from '../core/logger.js';
import { RelayUnavailableError, type RelaySession } from '../relay/client.js';
import { DEFAULT_RELAY_MAX_PER_CLIENT, DEFAULT_RELAY_MAX_PER_GAME, DEFAULT_RELAY_REQUEST_TIMEOUT_MS } from '../settings/games-schema.js';
import { StoreContentionError, type GameRecord, type GameStore, type HoldKey, type StoredGame } from './game-store.js';
import { gameIdOf, gamePart, seatOf, type PairingRecord, type StoredPairing } from './pairing-records.js';
import { admitSecretCall, hashSecret, secretMatches, type SecretRefusal, type WindowLimit } from './host-secrets.js';
import type { Lobby } from './lobby.js';
import { LobbyPages } from './lobby-pages.js';
import { RelayHolds } from './relay-holds.js';
import type { SharedCounters } from './shared-limits.js';

// The games core: it knows the store and the machine, not HTTP. Every answer is a status value
// tagged by `type`, so the routes map them to responses and problems in one switch each.
//
// Each request rebuilds the game's machine from its keys (the game record and its guests' pairing
// records: pairing-records.ts), feeds it the injected clock's reading (CLOCK_TICKED) and then the
// request's event, and writes back only the keys the step changed, each only if the revision it
// read is still current; on a conflict it starts over from a fresh read. So two instances never
// lose each other's writes, whichever instance sees a silent host first expires the game, and
// guests joining at once never contend: each writes its own pairing key.

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

export type RegisterResult =
  | { type: 'registered'; game: GameView; secret: string }
  | { type: 'nameTaken' }
  /** The rendezvous holds `limit` games (games.maxGames), counted across instances. */
  | { type: 'gamesCapReached'; limit: number }
  /** This client address registered `limit` games in the current window (games.registerLimit). */
  | { type: 'registerRateLimited'; limit: number; windowMs: number; retryAfterMs: number };

/** A page of the lobby: `next` is the cursor of the following page, absent after the last. */
export interface ListQuery {
  /** The sequence of the last lobby entry already seen (0 from the start). */
  after: number;
  limit: number;
  /** Only games a new guest fits in. */
  openOnly?: boolean;
  /** Only games whose name starts with this. */
  prefix?: string;
}
export interface ListPage {
  games: GameView[];
  next?: number;
}
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
  | { type: 'relayUnavailable'; detail: string }
  /** A cap on relay sessions held at once is full: `retryAfterMs` until its first slot frees. */
  | { type: 'relayCapReached'; cap: 'client' | 'game'; limit: number; retryAfterMs: number };
export type RenameResult = { type: 'renamed'; game: GameView } | { type: 'notFound' } | { type: 'nameTaken' } | SecretRefusal;
export type RemoveResult = { type: 'removed' } | { type: 'notFound' } | SecretRefusal;

export { StoreContentionError } from './game-store.js';

export interface GameServiceOptions {
  store: GameStore;
  /** The index of games in registration order that GET /games pages through. */
  lobby: Lobby;
  /** How long a lobby page read by this instance is answered again without reading it (0 or absent: never). */
  lobbyPageTtlMs?: number;
  /** Counters shared by every instance; without them, registrations are not rate-limited. */
  counters?: SharedCounters;
  /** Games the rendezvous holds at most (every instance together); absent: no cap. */
  maxGames?: number;
  /** Registrations one client address may make per window (every instance together). */
  registerLimit?: WindowLimit;
  /** Calls with one host secret (rename, delete) per window. */
  secretLimit?: WindowLimit;
  /** Wrong host secrets one client address may present per window; past it, 429 instead of 403. */
  badSecretLimit?: WindowLimit;
  /** The clock, injected so tests (and the machine's guards) never read the wall clock. */
  now: () => number;
  hostPollTimeoutMs: number;
  maxGuests: number;
  /** Sees each step once it is written, or answered without a write (a liveness refresh): the inspector's feed; it never changes what is written. */
  onTransition?: (game: string, event: { type: string } & Record<string, unknown>, snapshot: Snapshot) => void;
  log?: Logger;
  /** Attempts before a conflicting write gives up with StoreContentionError. */
  maxAttempts?: number;
  /** Asks the proxy for a relay session (src/relay/client.ts); absent when none is configured. */
  requestRelay?: (game: string) => Promise<RelaySession>;
  /** Relay sessions one client address may hold at once (counted in the store, across instances). */
  maxRelaysPerClient?: number;
  /** Relay sessions one game name may hold at once. */
  maxRelaysPerGame?: number;
  /**
   * How long a relay request waits on the proxy, at most: an in-flight mark lasts this long plus
   * a margin, so concurrent asks wait for it and a crashed instance's mark soon stops counting.
   */
  relayTimeoutMs?: number;
  /** How often an ask waiting for another one's proxy request looks at the record again. */
  relayWaitPollMs?: number;
}

/**
 * A filtered page (open games, a name prefix) looks at up to this many lobby entries per game it
 * may return, so its cost is bounded by the page size whatever the filter matches: a page may
 * hold fewer games than asked, and the client follows `next`.
 */
export const LIST_SCAN_FACTOR = 4;

/**
 * Attempts of a revision-checked write before it gives up: with the jittered backoff between
 * them (conflictBackoff) about a second in all, room for 50 guests joining one game at once and
 * its host polling, each write of the game's record winning one round.
 */
export const DEFAULT_MAX_ATTEMPTS = 64;

/**
 * After a lost write: a random pause up to 2^attempt ms (at most 32 ms), so writers that
 * collided do not read and collide again in lock step, and one of them wins each round.
 */
const conflictBackoff = (attempt: number) => sleep(Math.random() * Math.min(2 ** attempt, 32));

/**
 * Entries read after a new registration's own to rank it against the total cap: registrations
 * in flight at once on every instance. More than this at once may overshoot the cap by the excess.
 */
const RANK_LOOKAHEAD = 32;

/** How long a refused registration's lobby entry stays: longer than racing registrations take to rank theirs. */
export const LOBBY_WITHDRAW_DELAY_MS = 2_000;

/** A lobby entry this old with no game pointing to it is an orphan (registrations take milliseconds; clocks may differ a little). */
export const LOBBY_ORPHAN_AGE_MS = 60_000;
/** Lobby entries looked at per clean-up (one per sweep, each a store read): 100,000 entries are walked in about an hour at the default 5 s. */
const LOBBY_CLEAN_BATCH = 128;

/** What the in-flight mark adds to the proxy timeout: the store writes around the request. */
const IN_FLIGHT_MARGIN_MS = 2_000;

type Snapshot = ReturnType<typeof gameSessionMachine.resolveState>;

/** Steps a game's machine from a snapshot rebuilt from its record (see pureStepper: no actor per step). */
const step = pureStepper(gameSessionMachine, { name: 'sample', hostPeerId: 'sample', at: 0, hostPollTimeoutMs: 1, maxGuests: 1 });


export class GameService {
  private readonly store: GameStore;
  private readonly now: () => number;
  private readonly maxAttempts: number;
  private readonly holds: RelayHolds;
  /** Lobby pages this instance read lately (absent: every list reads the lobby). */
  private readonly lobbyPages: LobbyPages | undefined;
  /** Refused registrations' lobby entries still to withdraw (withdrawFromLobbyLater). */
  private readonly withdrawals = new Set<() => Promise<void>>();
  /** Where this instance's next lobby clean-up starts reading (a lobby sequence): see cleanLobby(). */
  private lobbyCleanFrom = 0;
  /** Where this instance's next sweep starts reading (a revision): see sweep(). */
  private sweepFrom = 1;
  /** The same for the pairing keys: see sweepPairings(). */
  private pairingSweepFrom = 1;
  private readonly conflicts: Record<ConflictKey, number> = { game: 0, pairing: 0, join: 0 };

  constructor(private readonly opts: GameServiceOptions) {
    this.store = opts.store;
    this.now = opts.now;
    this.maxAttempts = opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    this.holds = new RelayHolds(opts.store, opts.now, this.maxAttempts, opts.log);
    this.lobbyPages = opts.lobbyPageTtlMs ? new LobbyPages(opts.lobbyPageTtlMs, opts.now) : undefined;
  }

  async register(name: string, peerId: string, client = 'unknown'): Promise<RegisterResult> {
    // The total cap first: it needs no state per client, so a flood from many addresses is
    // refused before it can make the shared counters grow.
    const maxGames = this.opts.maxGames;
    if (maxGames !== undefined && (await this.opts.lobby.count()) >= maxGames) {
      this.opts.log?.warn({ limit: maxGames }, 'register refused: games cap reached');
      return { type: 'gamesCapReached', limit: maxGames };
    }
    const rate = this.opts.registerLimit;
    if (rate && this.opts.counters) {
      const counted = await this.opts.counters.hit(`register ${client}`, rate.max, rate.windowMs, this.now());
      if (counted.type === 'limited') return { type: 'registerRateLimited', limit: rate.max, windowMs: rate.windowMs, retryAfterMs: counted.retryAfterMs };
    }
    // 256 bits: stored only as its hash (host-secrets.ts).
    const secret = randomBytes(32).toString('base64url');
    const [snapshot] = initialTransition(gameSessionMachine, {
      name,
      hostPeerId: peerId,
      at: this.now(),
      hostPollTimeoutMs: this.opts.hostPollTimeoutMs,
      maxGuests: this.opts.maxGuests,
    });
    // A name an open game holds is refused before it takes a place in the lobby (which would
    // count against the cap until withdrawn); a registration racing for the same name is still
    // refused by the store's create below.
    const holder = await this.store.get(name, true);
    if (holder && this.ticked(holder).status === 'active') return { type: 'nameTaken' };
    const lobbySeq = await this.opts.lobby.add(name);
    if (maxGames !== undefined && (await this.lobbyRank(lobbySeq)) > maxGames) {
      await this.withdrawFromLobbyLater(name, lobbySeq);
      this.opts.log?.warn({ limit: maxGames }, 'register refused: games cap reached');
      return { type: 'gamesCapReached', limit: maxGames };
    }
    const record = { ...this.recordOf(snapshot, hashSecret(secret).toString('hex')), lobbySeq, id: randomUUID() };
    const created = await this.createReclaiming(name, record).catch(async (err: unknown) => {
      await this.withdrawFromLobbyLater(name, lobbySeq);
      throw err;
    });
    if (created.type === 'exists') {
      await this.withdrawFromLobbyLater(name, lobbySeq);
      return { type: 'nameTaken' };
    }
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
      undefined,
      undefined,
      // The cap checked after joining (pairing-records.ts: admitted): guests who joined first on other instances fill it.
      (s) => ({ type: 'gameFull', maxGuests: s.context.maxGuests }),
    );
  }

  /**
   * A relay for the pairing of the calling guest (or, for the host, of the guest it names). Both
   * peers of a pairing get the same session, each with its own token. At most one request per
   * pairing reaches the proxy: the first ask marks the game's record (revision-checked) before
   * asking, and any other ask, on any instance, waits for that grant. A new session is counted
   * against the asking client's address and the game's name, each capped, before the proxy is asked.
   */
  async relay(name: string, peerId: string, guest?: string, client = 'unknown'): Promise<RelayResult> {
    const role = (s: Snapshot) => (s.context.hostPeerId === peerId ? 'host' : 'guest');
    let mine: { pairingPeer: string; id: string; until: number; role: 'host' | 'guest' } | undefined;
    const pollMs = this.opts.relayWaitPollMs ?? 100;
    // Bounds the waiting (and conflicting writes) by count too: an injected clock that stands still must not spin forever.
    let waits = Math.ceil(((this.opts.relayTimeoutMs ?? DEFAULT_RELAY_REQUEST_TIMEOUT_MS) + IN_FLIGHT_MARGIN_MS) / pollMs) + this.maxAttempts;
    while (!mine) {
      const stored = await this.store.get(name);
      const s = stored && this.ticked(stored);
      if (!stored || !s || s.status !== 'active') return { type: 'notFound' };
      const found = pairingFor(s, peerId, guest);
      if (found.type !== 'pairing') return found;
      const pairingPeer = found.pairing.peerId;
      const at = this.now();
      const next = relayNext(found.pairing, stored.record.relayInFlight?.[pairingPeer], at);
      if (next.type === 'live') return this.granted(next.relay, role(s));
      if (!this.opts.requestRelay) return { type: 'relayUnavailable', detail: 'this rendezvous has no relay configured' };
      if (next.type === 'wait') {
        if (--waits < 0) return { type: 'relayUnavailable', detail: 'another request for this pairing is still waiting for the proxy; retry shortly' };
        await sleep(pollMs);
        continue;
      }
      const id = randomUUID();
      const until = at + (this.opts.relayTimeoutMs ?? DEFAULT_RELAY_REQUEST_TIMEOUT_MS) + IN_FLIGHT_MARGIN_MS;
      const ps = pairingRecordOf(stored, pairingPeer)!;
      const record: PairingRecord = { ...ps.record, relayInFlight: { id, until }, seat: seatOf(ps), writtenAt: at };
      // Whoever writes the mark (in the pairing's record) first asks; a loser reads again and waits for it.
      if ((await this.countConflict('pairing', await this.store.putPairing(name, record, ps.revision))).type === 'written') mine = { pairingPeer, id, until, role: role(s) };
      else if (--waits < 0) throw new StoreContentionError(`game ${name}: the relay mark kept conflicting`);
    }
    const { pairingPeer, id, until } = mine;
    const keys: [HoldKey, number, 'client' | 'game'][] = [
      [{ kind: 'client', id: client }, this.opts.maxRelaysPerClient ?? DEFAULT_RELAY_MAX_PER_CLIENT, 'client'],
      [{ kind: 'game', id: name }, this.opts.maxRelaysPerGame ?? DEFAULT_RELAY_MAX_PER_GAME, 'game'],
    ];
    const taken: HoldKey[] = [];
    const undo = async () => {
      for (const key of taken) await this.holds.move(key, id, undefined);
      await this.clearInFlight(name, pairingPeer, id);
    };
    for (const [key, limit, cap] of keys) {
      const r = await this.holds.take(key, { id, until }, limit).catch(async (err: unknown) => {
        await undo();
        throw err;
      });
      if (r.type === 'full') {
        await undo();
        this.opts.log?.warn({ game: name, client, cap, limit }, 'relay refused: cap reached');
        return { type: 'relayCapReached', cap, limit, retryAfterMs: Math.max(0, r.retryAt - this.now()) };
      }
      taken.push(key);
    }
    let session: RelaySession;
    try {
      session = await this.opts.requestRelay!(name);
    } catch (err) {
      await undo();
      if (err instanceof RelayUnavailableError) return { type: 'relayUnavailable', detail: err.message };
      throw err;
    }
    const { tokens, endpoint, sessionId, limits } = session;
    const grant: RelayGrant = { sessionId, tokens, endpoint, limits, expiresAt: this.now() + session.dialWithinMs };
    for (const key of taken) await this.holds.move(key, id, relayHeldUntil(grant));
    const result = await this.mutate<RelayResult>(
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
        else this.opts.log?.info({ game: name, sessionId, client }, 'relay granted');
        return this.granted(relay.pairing.relay, mine.role);
      },
      undefined,
      (inFlight) => withoutInFlight(inFlight, pairingPeer, id),
    );
    // Another grant was kept (this ask's mark had ended): this session is never dialed, so it ends at its dial deadline.
    if (result.type !== 'relay' || result.sessionId !== sessionId) for (const key of taken) await this.holds.move(key, id, grant.expiresAt);
    return result;
  }

  /** Withdraws this ask's in-flight mark after a refusal or failure, so the next ask need not wait it out. */
  private async clearInFlight(name: string, pairingPeer: string, id: string): Promise<void> {
    try {
      for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
        const stored = await this.store.get(name, attempt > 0);
        const ps = stored && pairingRecordOf(stored, pairingPeer);
        if (!ps || ps.record.relayInFlight?.id !== id) return;
        const { relayInFlight: _, ...rest } = ps.record;
        if ((await this.countConflict('pairing', await this.store.putPairing(name, { ...rest, seat: seatOf(ps), writtenAt: this.now() }, ps.revision))).type === 'written') return;
      }
    } catch (err) {
      this.opts.log?.warn({ err, game: name }, 'relay in-flight mark not cleared; it ends at its deadline');
    }
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

  /**
   * One page of the lobby, oldest registration first. Reads only the page's lobby entries and
   * their games' records: a game past its timeout is hidden until a sweep removes it, and an entry
   * whose game is gone (or was registered again under a newer entry) is passed over.
   */
  async list(q: ListQuery): Promise<ListPage> {
    const filtered = q.openOnly === true || (q.prefix !== undefined && q.prefix !== '');
    const max = filtered ? q.limit * LIST_SCAN_FACTOR : q.limit;
    const read = () => this.opts.lobby.page(q.after, max);
    const page = await (this.lobbyPages ? this.lobbyPages.page(q.after, max, read) : read());
    const views = await Promise.all(
      page.entries.map(async (e) => {
        if (!e.name || (q.prefix && !e.name.startsWith(q.prefix))) return undefined;
        const stored = await this.store.get(e.name);
        if (!stored || stored.record.lobbySeq !== e.seq) return undefined;
        const s = this.ticked(stored);
        if (s.status !== 'active') return undefined;
        const view = this.view(s);
        return q.openOnly && !view.open ? undefined : view;
      }),
    );
    const games: GameView[] = [];
    let last = q.after;
    for (const [i, e] of page.entries.entries()) {
      if (games.length === q.limit) break;
      const view = views[i];
      if (view) games.push(view);
      last = e.seq;
    }
    const done = page.end && last === (page.entries.at(-1)?.seq ?? q.after);
    return done ? { games } : { games, next: last };
  }

  /**
   * How many lobby entries up to and including `seq`: registrations racing on several instances
   * each counted room for one more, so each checks its own entry's place once it is written, and
   * only those within the cap go on. The entries after it are read first, the total second, so a
   * registration in between makes the rank too high (a refusal), never too low.
   */
  private async lobbyRank(seq: number): Promise<number> {
    const after = await this.opts.lobby.page(seq, RANK_LOOKAHEAD);
    return (await this.opts.lobby.count()) - after.entries.length;
  }

  /**
   * Withdraws the entry of a registration that did not go through, a while later. Registrations
   * racing for the last places each rank their own entry by the entries after it and the total;
   * an entry withdrawn between those two reads would lower the total under a racer and let it
   * past the cap (a flood of 80 at a cap of 30 created 40). Withdrawn only after every racer has
   * ranked, refused entries can only make a rank too high: a refusal, never an overshoot. Until
   * then they count against the cap, so a registration just after a refused flood may be refused
   * too (the client retries after Retry-After). An entry left by a process that stopped meanwhile
   * only costs list pages a skip.
   */
  private async withdrawFromLobbyLater(name: string, seq: number): Promise<void> {
    // Without a total cap there are no ranks to protect: the entry goes at once.
    if (this.opts.maxGames === undefined) return this.leaveLobby(name, seq);
    const withdraw = () => {
      clearTimeout(timer);
      this.withdrawals.delete(withdraw);
      return this.leaveLobby(name, seq);
    };
    const timer = setTimeout(() => void withdraw(), LOBBY_WITHDRAW_DELAY_MS);
    timer.unref();
    this.withdrawals.add(withdraw);
  }

  /**
   * Withdraws at once the lobby entries still waiting (see withdrawFromLobbyLater): an entry left
   * behind would count against the total cap for good. For a stopping instance.
   */
  async close(): Promise<void> {
    await Promise.all([...this.withdrawals].map((withdraw) => withdraw()));
  }

  /** Removes a game's lobby entry; one left behind (the store failed) only costs list pages a skip. */
  private async leaveLobby(name: string, seq: number | undefined): Promise<void> {
    if (seq === undefined) return;
    await this.opts.lobby.remove(seq).catch((err: unknown) => this.opts.log?.warn({ err, game: name }, 'lobby entry not removed; list pages pass over it'));
  }

  async rename(name: string, secret: string, newName: string, client = 'unknown'): Promise<RenameResult> {
    const refused = await this.admitSecretCall(name, secret, client);
    if (refused) return refused;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const stored = await this.store.get(name, attempt > 0);
      const s = stored && this.ticked(stored);
      if (!stored || !s || s.status !== 'active') return { type: 'notFound' };
      if (!secretMatches(stored.record, secret)) return { type: 'badSecret' };
      const renamed = step(s, { type: 'RENAMED', newName });
      if (newName === name) return { type: 'renamed', game: this.view(renamed) };
      // A key is the name, so a rename is create-new then delete-old; if the old record moved
      // on meanwhile, the copy is withdrawn and the rename retried from the newer record.
      // The renamed game joins the lobby under its new name (at the end of the list).
      // The pairings are copied under the new name, in join order, for the renamed game's id; a
      // guest joining the old name meanwhile is not carried over (its next start is not found).
      const lobbySeq = await this.opts.lobby.add(newName);
      const id = randomUUID();
      const created = await this.createReclaiming(newName, { ...this.recordOf(renamed, stored.record.secretHash), lobbySeq, id }).catch(async (err: unknown) => {
        await this.leaveLobby(newName, lobbySeq);
        throw err;
      });
      if (created.type === 'exists') {
        await this.leaveLobby(newName, lobbySeq);
        return { type: 'nameTaken' };
      }
      const copied = await this.copyPairings(stored, newName, id);
      const removed = copied ? await this.store.remove(name, stored.revision) : { type: 'conflict' as const };
      if (removed.type === 'removed') {
        await this.removePairings(name, [...stored.pairings, ...stored.stale]);
        await this.leaveLobby(name, stored.record.lobbySeq);
        this.opts.onTransition?.(name, { type: 'RENAMED', newName }, renamed);
        this.opts.log?.info({ game: name, newName }, 'game renamed');
        return { type: 'renamed', game: this.view(renamed) };
      }
      const copy = await this.store.get(newName, true);
      await this.store.remove(newName, created.revision);
      if (copy) await this.removePairings(newName, [...copy.pairings, ...copy.stale]);
      await this.leaveLobby(newName, lobbySeq);
    }
    throw new StoreContentionError(`game ${name}: rename kept conflicting`);
  }

  async remove(name: string, secret: string, client = 'unknown'): Promise<RemoveResult> {
    const refused = await this.admitSecretCall(name, secret, client);
    if (refused) return refused;
    return this.mutate<RemoveResult>(
      name,
      (s, stored) => (secretMatches(stored.record, secret) ? { event: { type: 'DELETED' } } : { refuse: { type: 'badSecret' } }),
      () => ({ type: 'removed' }),
    );
  }

  /** The host-secret limits (host-secrets.ts) for a call on `name`, once its record is read. */
  private async admitSecretCall(name: string, secret: string, client: string): Promise<SecretRefusal | { type: 'notFound' } | undefined> {
    const stored = await this.store.get(name);
    if (!stored) return { type: 'notFound' };
    return admitSecretCall(this.opts, name, stored.record, secret, client);
  }

  /**
   * Removes lobby entries no game points to any more, a batch per call, walking the lobby round
   * and round: those left by a registration whose instance crashed before withdrawing them, or by
   * a store failure. Each counted against the total cap and cost list pages a skip. An entry is
   * only judged once it is older than any registration or rename takes between writing it and
   * writing the game's record. Any instance may run it; removals are idempotent.
   */
  async cleanLobby(batch = LOBBY_CLEAN_BATCH): Promise<number> {
    const page = await this.opts.lobby.page(this.lobbyCleanFrom, batch);
    const old = this.now() - LOBBY_ORPHAN_AGE_MS;
    let removed = 0;
    for (const e of page.entries) {
      if (e.at > old) continue;
      const stored = e.name ? await this.store.get(e.name, true) : null;
      if (stored?.record.lobbySeq === e.seq) continue;
      await this.opts.lobby.remove(e.seq);
      removed++;
    }
    this.lobbyCleanFrom = page.end ? 0 : (page.entries.at(-1)?.seq ?? 0);
    return removed;
  }

  /**
   * Expires the games whose host went silent, and removes the pairing records of silent guests
   * and gone games; any instance may run it at any time. It reads the game keys least recently
   * written first and stops at the first one written less than a host timeout ago that is still
   * open: every record before it was last written by a request that saw it open more than a
   * timeout ago, so it has expired, and what comes after is younger. So a sweep reads the expired
   * games and one more, never every game, and holds a batch at a time. The pairing keys are
   * walked the same way (sweepPairings).
   */
  async sweep(): Promise<number> {
    let expired = 0;
    const horizon = this.now() - this.opts.hostPollTimeoutMs;
    let firstKept: number | undefined;
    for await (const game of this.store.inWriteOrder(this.sweepFrom)) {
      // A game that is still open and has no silent guest to prune needs nothing written.
      const full = await this.store.get(game.name);
      // The sweep is where the clock reaches games nobody asks about: it steps every tick, quiet
      // or not, so what it decides is always the machine's own step.
      const ticked = full && this.ticked(full, false);
      if (ticked?.status === 'active' && ticked.context.guests.length === Math.min(full!.pairings.length, this.opts.maxGuests)) {
        firstKept ??= game.revision;
        if ((game.record.writtenAt ?? 0) > horizon) break;
        continue;
      }
      // An expired game answers requests as not found; the sweep counts it as what it expired.
      const r = await this.mutate<{ type: 'gone' | 'kept' }>(game.name, () => ({ event: undefined }), () => ({ type: 'kept' }), () => ({ type: 'gone' }));
      if (r.type === 'gone') expired++;
    }
    // Every record before the first one left in place was deleted or written again later (as a
    // newer revision): the next sweep starts there, past the deletion markers of ended games.
    if (firstKept !== undefined) this.sweepFrom = firstKept;
    await this.sweepPairings(horizon);
    return expired;
  }

  /**
   * A pairing record is written at least once per refresh slack while its guest calls (a
   * liveness refresh is stored once the stored reading is that old), so one last written a host
   * timeout ago belongs to a silent guest (its game's tick prunes it), to a gone game (a guest
   * joined as the game ended, or an instance stopped between removing a game and its pairings),
   * or to a guest refused over the cap that did not remove it: each is removed, revision-checked.
   */
  private async sweepPairings(horizon: number): Promise<void> {
    let firstKept: number | undefined;
    for await (const p of this.store.pairingsInWriteOrder(this.pairingSweepFrom)) {
      if (p.record.writtenAt > horizon) {
        firstKept ??= p.revision;
        break;
      }
      const stored = await this.store.get(p.name, true);
      const peer = p.record.pairing.peerId;
      const mine = stored && gameIdOf(stored.record) === p.record.game;
      if (mine && stored.pairings.slice(0, this.opts.maxGuests).some((x) => x.record.pairing.peerId === peer)) {
        // One of the game's guests: its game's tick prunes it as any request would.
        const r = await this.mutate<{ type: 'gone' | 'kept' }>(p.name, () => ({ event: undefined }), () => ({ type: 'kept' }), () => ({ type: 'gone' }));
        const again = r.type === 'kept' ? await this.store.get(p.name, true) : null;
        if (again && pairingRecordOf(again, peer)?.revision === p.revision) firstKept ??= p.revision;
        continue;
      }
      const removed = await this.store.removePairing(p.name, peer, p.revision);
      if (removed.type === 'conflict') firstKept ??= p.revision;
    }
    if (firstKept !== undefined) this.pairingSweepFrom = firstKept;
  }

  /** Write conflicts (a revision check lost) since this instance started, by key: the contention a layout causes. */
  get writeConflicts(): Readonly<Record<ConflictKey, number>> {
    return { ...this.conflicts };
  }

  private countConflict<T extends { type: string }>(key: ConflictKey, r: T): T {
    if (r.type === 'conflict' || r.type === 'exists') this.conflicts[key]++;
    return r;
  }

  /**
   * The read-step-write loop. `decide` sees the ticked snapshot and either refuses (a status
   * value, nothing written) or names the event to apply; `answer` words the result from the
   * snapshot after it. Only the keys the step changed are written (writesAfter); a snapshot that
   * ends (expired, closed) deletes the game key and its pairings; an expired one is answered
   * `expired` (not found, unless the caller words it). A guest joining writes its pairing key,
   * then checks the cap (pairing-records.ts: admitted); one past it is answered `joinRefused`.
   */
  private async mutate<R extends { type: string }>(
    name: string,
    decide: (s: Snapshot, stored: StoredGame) => { refuse: R } | { event: GameSessionEvent | undefined },
    answer: (s: Snapshot) => R,
    expired: () => R | { type: 'notFound' } = () => ({ type: 'notFound' }),
    inFlight: (marks: GameRecord['relayInFlight']) => GameRecord['relayInFlight'] = (marks) => marks,
    joinRefused?: (s: Snapshot) => R,
  ): Promise<R | { type: 'notFound' }> {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      // After a lost write, the store itself: a cached read may be what lost.
      const stored = await this.store.get(name, attempt > 0);
      if (!stored) return { type: 'notFound' };
      const ticked = this.ticked(stored);
      let next = ticked;
      let refused: R | undefined;
      // What the inspector is told moved the game: the request's event, else the clock.
      let event: GameSessionEvent | { type: 'CLOCK_TICKED' } = { type: 'CLOCK_TICKED' };
      if (ticked.status === 'active') {
        const d = decide(ticked, stored);
        if ('refuse' in d) refused = d.refuse;
        else if (d.event) next = step(ticked, (event = d.event));
      }
      if (next.status === 'done') {
        const removed = this.countConflict('game', await this.store.remove(name, stored.revision));
        if (removed.type === 'conflict') {
          await conflictBackoff(attempt);
          continue;
        }
        await this.removePairings(name, [...stored.pairings, ...stored.stale]);
        await this.leaveLobby(name, stored.record.lobbySeq);
        this.opts.onTransition?.(name, event, next);
        const output = next.output as GameSessionOutput;
        this.opts.log?.info({ game: name, outcome: output.outcome, detail: output.detail }, 'game ended');
        // An expired game is gone for the caller; a deletion is the caller's own success.
        return output.outcome === 'expired' ? expired() : answer(next);
      }
      if (refused) return refused;
      const writes = this.writesAfter(next, stored, inFlight(stored.record.relayInFlight));
      // A tick that changed nothing (the common sweep) costs no write, nor does a poll or a
      // repeated start that only refreshes a liveness reading the store holds recently enough.
      if (writes.length === 0) {
        if (!jsonEqual(next.context, ticked.context) || !jsonEqual(next.value, ticked.value)) this.opts.onTransition?.(name, event, next);
        return answer(next);
      }
      const results = await Promise.all(writes.map((w) => this.write(name, w)));
      if (results.some((r) => r.type === 'conflict')) {
        await conflictBackoff(attempt);
        continue;
      }
      const joined = writes.find((w): w is PairingWriteOf & { joins: true } => w.kind === 'pairing' && w.joins);
      if (joined && joinRefused && !(await this.admittedAfterJoin(name, joined.record.pairing.peerId))) return joinRefused(next);
      this.opts.onTransition?.(name, event, next);
      return answer(next);
    }
    throw new StoreContentionError(`game ${name}: writes kept conflicting after ${this.maxAttempts} attempts`);
  }

  /**
   * The keys a step changed: the game record (its host part) unless only the host's liveness
   * moved (onlyLivenessRefreshed), each guest's pairing unless only its liveness moved
   * (pairingOnlyRefreshed), a joining guest's new pairing (created, or written over a key an
   * earlier game or a refused join left), and the removal of each pruned guest's.
   */
  private writesAfter(next: Snapshot, stored: StoredGame, marks: GameRecord['relayInFlight']): Write[] {
    const writes: Write[] = [];
    const slack = refreshSlackMs(this.opts.hostPollTimeoutMs);
    const record = gamePart(this.recordAfter(next, stored.record));
    const was = gamePart(stored.record);
    const same = jsonEqual(record, was, GAME_KEY_DERIVED);
    const refreshedOnly = !same && jsonEqual({ ...record, context: was.context }, was, GAME_KEY_DERIVED) && onlyLivenessRefreshed(was.context, record.context, slack);
    const id = gameIdOf(stored.record);
    const at = this.now();
    const live = liveInFlight(marks, next.context.guests, at);
    const guests = new Map(stored.pairings.slice(0, this.opts.maxGuests).map((p) => [p.record.pairing.peerId, p]));
    for (const g of next.context.guests) {
      const mark = live[g.peerId];
      const s = guests.get(g.peerId);
      guests.delete(g.peerId);
      if (!s) {
        const over = pairingRecordOf(stored, g.peerId, true);
        writes.push({ kind: 'pairing', record: { v: 1, game: id, pairing: g, ...(mark ? { relayInFlight: mark } : {}), writtenAt: at }, revision: over?.revision ?? null, joins: true });
        continue;
      }
      const pairing: PairingRecord = { v: 1, game: id, pairing: g, ...(mark ? { relayInFlight: mark } : {}), seat: seatOf(s), writtenAt: at };
      const had = { ...s.record, seat: seatOf(s) };
      if (jsonEqual(pairing, had, WRITTEN_AT)) continue;
      if (jsonEqual({ ...pairing, pairing: had.pairing }, had, WRITTEN_AT) && pairingOnlyRefreshed(had.pairing, g, slack)) continue;
      writes.push({ kind: 'pairing', record: pairing, revision: s.revision, joins: false });
    }
    for (const [peerId, s] of guests) writes.push({ kind: 'prune', peerId, revision: s.revision });
    // A host poll that writes pairings (handing guests over) stores its own reading too, in its own key.
    if (!same && (!refreshedOnly || writes.length > 0)) writes.push({ kind: 'game', record, revision: stored.revision });
    return writes;
  }

  private async write(name: string, w: Write): Promise<{ type: string }> {
    if (w.kind === 'game') return this.countConflict('game', await this.store.update(name, w.record, w.revision));
    if (w.kind === 'prune') return this.countConflict('pairing', await this.store.removePairing(name, w.peerId, w.revision));
    const r = this.countConflict('pairing', await this.store.putPairing(name, w.record, w.revision));
    if (r.type === 'conflict' && w.joins) this.conflicts.join++;
    return r;
  }

  /**
   * After a guest's pairing was written for a join: whether it is among the first maxGuests in
   * join order, read from the store itself (every join before it is in that read). One that is
   * not removes its key again (a concurrent write of it means it is someone else's turn: the
   * sweep removes it once silent).
   */
  private async admittedAfterJoin(name: string, peerId: string): Promise<boolean> {
    const fresh = await this.store.get(name, true);
    if (!fresh) return true;
    if (fresh.pairings.slice(0, this.opts.maxGuests).some((p) => p.record.pairing.peerId === peerId)) return true;
    const mine = pairingRecordOf(fresh, peerId);
    if (mine) await this.store.removePairing(name, peerId, mine.revision);
    this.opts.log?.info({ game: name, maxGuests: this.opts.maxGuests }, 'join refused: the game filled on another instance first');
    return false;
  }

  /** Removes pairing keys (of an ended game, or a renamed one's old name); one left behind (a concurrent write, a store failure) is the sweep's. */
  private async removePairings(name: string, pairings: StoredPairing[]): Promise<void> {
    await Promise.all(
      pairings.map((p) =>
        this.store.removePairing(name, p.record.pairing.peerId, p.revision).catch((err: unknown) => this.opts.log?.warn({ err, game: name }, 'pairing record not removed; the sweep removes it')),
      ),
    );
  }

  /** A renamed game's guests under its new name and id, in join order; false when a key there is taken meanwhile. */
  private async copyPairings(stored: StoredGame, newName: string, id: string): Promise<boolean> {
    const there = await this.store.get(newName, true);
    for (const p of stored.pairings.slice(0, this.opts.maxGuests)) {
      const over = there?.stale.find((x) => x.record.pairing.peerId === p.record.pairing.peerId);
      const { seat: _, ...rest } = p.record;
      const r = await this.store.putPairing(newName, { ...rest, game: id, writtenAt: this.now() }, over?.revision ?? null);
      if (r.type === 'conflict') return false;
    }
    return true;
  }

  /** Creates a key; a name still held by a game past its timeout (not swept yet) is free. */
  private async createReclaiming(name: string, record: GameRecord) {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const created = await this.store.create(name, record);
      if (created.type === 'created') return created;
      const holder = await this.store.get(name, true);
      if (holder && this.ticked(holder).status === 'active') return created;
      if (holder && (await this.store.remove(name, holder.revision)).type === 'removed') {
        await this.removePairings(name, [...holder.pairings, ...holder.stale]);
        await this.leaveLobby(name, holder.record.lobbySeq);
      }
    }
    throw new StoreContentionError(`game ${name}: create kept conflicting`);
  }

  /** Rebuilds the machine from a record (current settings win) and shows it the clock. */
  private ticked(stored: StoredGame, quietShortcut = true): Snapshot {
    const { state } = stored.record;
    // The guests are the first maxGuests pairings in join order (pairing-records.ts: admitted).
    const context = { ...stored.record.context, guests: stored.record.context.guests.slice(0, this.opts.maxGuests), hostPollTimeoutMs: this.opts.hostPollTimeoutMs, maxGuests: this.opts.maxGuests };
    const at = this.now();
    // A quiet tick only settles the state: resolving the settled state directly is the same
    // snapshot without a machine step, on every poll and start.
    if (quietShortcut && clockTickIsQuiet(context, at)) return gameSessionMachine.resolveState({ value: { open: settledState(context) }, context });
    return step(gameSessionMachine.resolveState({ value: { open: state }, context }), { type: 'CLOCK_TICKED', at });
  }

  /** The record a step writes: the snapshot, with what the machine does not see carried over. */
  private recordAfter(s: Snapshot, stored: GameRecord, relayInFlight = stored.relayInFlight): GameRecord {
    return { ...this.recordOf(s, stored.secretHash, relayInFlight), ...lobbyOf(stored), ...(stored.id === undefined ? {} : { id: stored.id }) };
  }

  /** In-flight relay marks ride along with every write; ended ones (or a gone pairing's) are dropped. */
  private recordOf(s: Snapshot, secretHash: string, relayInFlight?: GameRecord['relayInFlight']): GameRecord {
    const marks = liveInFlight(relayInFlight, s.context.guests, this.now());
    return { v: 1, secretHash, state: openState(s), context: s.context, ...(Object.keys(marks).length > 0 ? { relayInFlight: marks } : {}), writtenAt: this.now() };
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


}

const lobbyOf = (record: GameRecord) => (record.lobbySeq === undefined ? {} : { lobbySeq: record.lobbySeq });

/** When a record was written (no other field of a record or a pairing has that name). */
const WRITTEN_AT: ReadonlySet<string> = new Set(['writtenAt']);
/**
 * What a game key's record may differ in without being written again: when, and its open state,
 * which every read settles again from the pairings (a guest completing a pairing makes the game
 * `paired` without writing the host's key). No other field of a record has these names.
 */
const GAME_KEY_DERIVED: ReadonlySet<string> = new Set(['writtenAt', 'state']);

/** Which writes lost a revision check: the game key's, a pairing key's, and of those a guest's join (the contention this layout removes). */
export type ConflictKey = 'game' | 'pairing' | 'join';

type PairingWriteOf = { kind: 'pairing'; record: PairingRecord; revision: number | null; joins: boolean };
type Write = { kind: 'game'; record: GameRecord; revision: number } | PairingWriteOf | { kind: 'prune'; peerId: string; revision: number };

/** A guest's pairing record under the game's name: this game's (`orStale`: or one an earlier game left). */
function pairingRecordOf(stored: StoredGame, peerId: string, orStale = false): StoredPairing | undefined {
  const mine = (p: StoredPairing) => p.record.pairing.peerId === peerId;
  return stored.pairings.find(mine) ?? (orStale ? stored.stale.find(mine) : undefined);
}

function withoutInFlight(marks: GameRecord['relayInFlight'], pairingPeer: string, id: string): GameRecord['relayInFlight'] {
  if (marks?.[pairingPeer]?.id !== id) return marks;
  const { [pairingPeer]: _, ...rest } = marks;
  return rest;
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
