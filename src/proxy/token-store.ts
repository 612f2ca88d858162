import { createHash, timingSafeEqual } from 'node:crypto';
import { secureRandomBytes } from '../core/random-pool.js';
import { minute, TOKEN_BYTES } from '../core/constants.js';
import type { Leg } from '../core/splice-wire.js';

export type { Leg };

// Splice tokens, with no sockets in sight: the splice endpoint asks, this answers with a status.
// Lookups go through the SHA-256 of the presented bytes, so the Map probe leaks nothing useful
// about a live token; the final comparison is constant time anyway, as defence in depth.

/** How long a spent token still answers USED (rather than UNKNOWN): a reuse is worth a distinct log line. */
export const DEFAULT_USED_TOKEN_TTL_MS = 10 * minute;

/** Caps the memory of spent tokens if a flood of sessions outpaces the TTL. */
export const DEFAULT_MAX_USED_TOKENS = 100_000;

export type TokenLookup = { status: 'OK'; sessionId: string; leg: Leg } | { status: 'UNKNOWN' } | { status: 'USED' };

export interface TokenStoreOptions {
  usedTtlMs?: number;
  maxUsed?: number;
  now?: () => number;
}

interface LiveToken {
  token: Buffer;
  sessionId: string;
  leg: Leg;
}

function digest(token: Uint8Array): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Short, one-way name for a token in logs; the token itself is never logged. */
export function tokenId(token: Uint8Array): string {
  return digest(token).slice(0, 8);
}

const LEGS: readonly Leg[] = ['a', 'b'];

/**
 * A session's tokens stay live for as long as the session does, even once their leg has dialed:
 * whether a dial comes at the right moment (A before its confirmation, B twice) is the session
 * machine's call, not the store's. When the session ends, the tokens of legs that dialed are
 * remembered as USED (a late reuse is worth its own log line) and the others forgotten.
 */
export class TokenStore {
  readonly #live = new Map<string, LiveToken>();
  readonly #hashesBySession = new Map<string, Record<Leg, string>>();
  // Insertion order is expiry order (one TTL for all), so pruning stops at the first live one.
  readonly #used = new Map<string, number>();
  readonly #usedTtlMs: number;
  readonly #maxUsed: number;
  readonly #now: () => number;

  constructor(options: TokenStoreOptions = {}) {
    this.#usedTtlMs = options.usedTtlMs ?? DEFAULT_USED_TOKEN_TTL_MS;
    this.#maxUsed = options.maxUsed ?? DEFAULT_MAX_USED_TOKENS;
    this.#now = options.now ?? Date.now;
  }

  /** One token per leg; minting again for the same session replaces the old tokens. */
  mint(sessionId: string): Record<Leg, Buffer> {
    this.release(sessionId);
    const tokens = { a: secureRandomBytes(TOKEN_BYTES), b: secureRandomBytes(TOKEN_BYTES) };
    const hashes = { a: digest(tokens.a), b: digest(tokens.b) };
    for (const leg of LEGS) this.#live.set(hashes[leg], { token: Buffer.from(tokens[leg]), sessionId, leg });
    this.#hashesBySession.set(sessionId, hashes);
    return tokens;
  }

  lookup(token: Uint8Array): TokenLookup {
    if (token.length !== TOKEN_BYTES) return { status: 'UNKNOWN' };
    const hash = digest(token);
    const live = this.#live.get(hash);
    if (live && timingSafeEqual(live.token, token)) return { status: 'OK', sessionId: live.sessionId, leg: live.leg };
    this.#prune();
    if (this.#used.has(hash)) return { status: 'USED' };
    return { status: 'UNKNOWN' };
  }

  /**
   * Forgets the session's tokens. Call it on every way a session ends (EPS only freed token slots
   * on success and leaked them on each failure); `used` names the legs whose token was spent.
   */
  release(sessionId: string, used: readonly Leg[] = []): void {
    const hashes = this.#hashesBySession.get(sessionId);
    if (hashes === undefined) return;
    this.#hashesBySession.delete(sessionId);
    for (const leg of LEGS) this.#live.delete(hashes[leg]);
    if (used.length === 0) return;
    this.#prune();
    for (const leg of used) this.#used.set(hashes[leg], this.#now() + this.#usedTtlMs);
    while (this.#used.size > this.#maxUsed) {
      const oldest = this.#used.keys().next().value;
      if (oldest === undefined) break;
      this.#used.delete(oldest);
    }
  }

  /** Tokens that a dialer could still present (for tests and gauges). */
  liveCount(): number {
    return this.#live.size;
  }

  usedCount(): number {
    this.#prune();
    return this.#used.size;
  }

  #prune(): void {
    const now = this.#now();
    for (const [hash, expiresAt] of this.#used) {
      if (expiresAt > now) break;
      this.#used.delete(hash);
    }
  }
}
