import { settledState, type GameSessionContext, type GuestPairing, type OpenState, type RelayInFlight } from '../../machines/game-session.js';

// The layout that gives each writer its own key. A game is its record (key `g.<name>`: the
// host's part, written by the registration and by the host's polls) plus one pairing record per
// guest (key `p.<name>.<peer>`), created by that guest's first start and updated by whichever
// side's turn it is (the guest with new candidates, the host's poll once it was answered them,
// a relay grant). So 50 guests joining at once each create their own key and never conflict
// with one another or with the host's record. Pure: the stores (game-store.ts, game-cache.ts)
// read and write the keys, the service (game-service.ts) decides what to write.

/**
 * What one KV key holds: the open machine state and its context (enough to rebuild the machine's
 * snapshot on any instance), plus the host secret's hash, which the machine never sees.
 */
export interface GameRecord {
  v: 1;
  /** Tells this game's pairing records from those an earlier game of the same name left (pairing-records.ts). */
  id?: string;
  secretHash: string;
  state: OpenState;
  context: GameSessionContext;
  /** The relay request each pairing (by guest peer id) is waiting for: stored in the pairing records, put back on reading. */
  relayInFlight?: Record<string, RelayInFlight>;
  /** The game's entry in the lobby (src/games/lobby.ts); absent on records older than the lobby. */
  lobbySeq?: number;
  /**
   * The writer's clock when this revision was written. Every write is made by a request that saw
   * the game open, so a record written a host timeout ago or more has expired: the sweep reads
   * records in write order and stops at the first younger one.
   */
  writtenAt?: number;
}

/** A game as read: its record with its guests put back (pairing-records.ts: assembled), the game key's revision, and the pairing keys. */
export interface StoredGame {
  record: GameRecord;
  revision: number;
  /** This game's pairing records, in join order. */
  pairings: StoredPairing[];
  /** Pairing records under this name that an earlier game left. */
  stale: StoredPairing[];
}

export interface PairingRecord {
  v: 1;
  /** The game this pairing belongs to (GameRecord.id): one left by an earlier game of the same name is not this game's. */
  game: string;
  pairing: GuestPairing;
  /** The relay request this pairing is waiting for from the proxy, if any. */
  relayInFlight?: RelayInFlight;
  /**
   * The revision the guest joined at: its place in the join order, which decides the guest cap.
   * A joining write leaves it out (the revision it lands at is its seat); every later write of
   * the pairing carries it over.
   */
  seat?: number;
  /** The writer's clock; a pairing not written for a host timeout belongs to a silent guest or a gone game (the sweep). */
  writtenAt: number;
}

export interface StoredPairing {
  record: PairingRecord;
  revision: number;
}

/** Where a pairing stands in its game's join order. */
export const seatOf = (p: StoredPairing): number => p.record.seat ?? p.revision;

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const unb64 = (s: string) => Buffer.from(s, 'base64url').toString('utf8');

// KV keys allow only [-/_=.A-Za-z0-9]: the name and the peer id are base64url (which has no dot).
export const pairingKey = (name: string, peerId: string): string => `p.${b64(name)}.${b64(peerId) || '_'}`;
/** Every pairing key of one game name (a KV key filter). */
export const pairingKeysOf = (name: string): string => `p.${b64(name)}.>`;
export function parsePairingKey(key: string): { name: string; peerId: string } | undefined {
  const [p, name, peer, ...rest] = key.split('.');
  if (p !== 'p' || name === undefined || peer === undefined || rest.length > 0) return undefined;
  return { name: unb64(name), peerId: peer === '_' ? '' : unb64(peer) };
}

/** The id a record is known by; a record older than the pairing layout has none. */
export const gameIdOf = (record: Pick<GameRecord, 'id'>): string => record.id ?? '';

/**
 * A game as the stores hand it out: its record, with the guests of its own pairing records in
 * join order (and their relay marks) put back into the context, as the machine sees a game. The
 * game key itself stores no guests, and the open state is settled from them. Pairings of another game (an earlier one under the same name)
 * are kept apart: their keys are overwritten by a joining guest, removed by the sweep.
 */
export function assembled(game: { record: GameRecord; revision: number }, pairings: Iterable<StoredPairing>): StoredGame {
  const id = gameIdOf(game.record);
  const own: StoredPairing[] = [];
  const stale: StoredPairing[] = [];
  for (const p of pairings) (p.record.game === id ? own : stale).push(p);
  own.sort((a, b) => seatOf(a) - seatOf(b));
  const marks = Object.fromEntries(own.flatMap((p) => (p.record.relayInFlight ? [[p.record.pairing.peerId, p.record.relayInFlight]] : [])));
  const { relayInFlight: _, ...rest } = game.record;
  const context = { ...game.record.context, guests: own.map((p) => p.record.pairing) };
  return {
    // The state the game key was written with may predate its guests' pairings: it is settled again.
    record: { ...rest, state: settledState(context), context, ...(Object.keys(marks).length > 0 ? { relayInFlight: marks } : {}) },
    revision: game.revision,
    pairings: own,
    stale,
  };
}

/** What the game key stores of a record: no guests, no relay marks (those are the pairings'). */
export function gamePart(record: GameRecord): GameRecord {
  const { relayInFlight: _, ...rest } = record;
  return { ...rest, context: { ...record.context, guests: [] } };
}

/**
 * The guest cap: the first `maxGuests` pairings in join order are the game's guests. A joining
 * guest writes its key first and then reads every pairing of the game from the store: all who
 * joined before it (a lower seat) are in that read, so if it is not among the first it removes
 * its key and is refused. Ranks only move down as guests leave, so an admitted guest stays
 * admitted, and no interleaving of joins on any instances admits more than the cap.
 */
export function admitted(pairings: StoredPairing[], maxGuests: number): StoredPairing[] {
  return pairings.slice(0, Math.max(0, maxGuests));
}
