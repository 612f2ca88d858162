import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { minute, TOKEN_BYTES } from '../core/constants.js';

// Splice tokens, with no sockets in sight: the splice endpoint asks, this answers with a status.
// Lookups go through the SHA-256 of the presented bytes, so the Map probe leaks nothing useful
// about a live token; the final comparison is constant time anyway, as defence in depth.

/** How long a consumed token still answers USED (rather than UNKNOWN): a reuse is worth a distinct log line. */
export const DEFAULT_USED_TOKEN_TTL_MS = 10 * minute;

/** Caps the memory of consumed tokens if a flood of sessions outpaces the TTL. */
export const DEFAULT_MAX_USED_TOKENS = 100_000;

/** A session's two sides: `a` requested it, `b` is held first (see machines/brokering.ts). */
export type Leg = 'a' | 'b';

export type TokenLookup = { status: 'OK'; sessionId: string } | { status: 'UNKNOWN' } | { status: 'USED' };

export interface TokenStoreOptions {
  usedTtlMs?: number;
  maxUsed?: number;
  now?: () => number;
}

interface LiveToken {
  token: Buffer;
  sessionId: string;
}

function digest(token: Uint8Array): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Short, one-way name for a token in logs; the token itself is never logged. */
export function tokenId(token: Uint8Array): string {
  return digest(token).slice(0, 8);
}

export class TokenStore {
  readonly #live = new Map<string, LiveToken>();
  readonly #hashBySession = new Map<string, Map<Leg, string>>();
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

  /** One token per leg of a session; minting again for the same leg replaces its old token. */
  mint(sessionId: string, leg: Leg = 'a'): Buffer {
    const legs = this.#hashBySession.get(sessionId) ?? new Map<Leg, string>();
    const old = legs.get(leg);
    if (old !== undefined) this.#live.delete(old);
    const token = randomBytes(TOKEN_BYTES);
    const hash = digest(token);
    this.#live.set(hash, { token: Buffer.from(token), sessionId });
    legs.set(leg, hash);
    this.#hashBySession.set(sessionId, legs);
    return token;
  }

  lookup(token: Uint8Array): TokenLookup {
    if (token.length !== TOKEN_BYTES) return { status: 'UNKNOWN' };
    const hash = digest(token);
    const live = this.#live.get(hash);
    if (live && timingSafeEqual(live.token, token)) return { status: 'OK', sessionId: live.sessionId };
    this.#prune();
    if (this.#used.has(hash)) return { status: 'USED' };
    return { status: 'UNKNOWN' };
  }

  /** Single use: after this, the token answers USED until the memory of it expires. */
  consume(token: Uint8Array): boolean {
    if (token.length !== TOKEN_BYTES) return false;
    const hash = digest(token);
    const live = this.#live.get(hash);
    if (!live || !timingSafeEqual(live.token, token)) return false;
    this.#live.delete(hash);
    this.#prune();
    this.#used.set(hash, this.#now() + this.#usedTtlMs);
    while (this.#used.size > this.#maxUsed) {
      const oldest = this.#used.keys().next().value;
      if (oldest === undefined) break;
      this.#used.delete(oldest);
    }
    return true;
  }

  /**
   * Forgets the session's token whether or not it was used. Call it on every way a session
   * ends: EPS only freed token slots on success and leaked them on each failure.
   */
  release(sessionId: string): void {
    const legs = this.#hashBySession.get(sessionId);
    if (legs === undefined) return;
    this.#hashBySession.delete(sessionId);
    for (const hash of legs.values()) this.#live.delete(hash);
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
