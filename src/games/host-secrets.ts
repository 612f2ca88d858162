import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import type { GameRecord } from './game-store.js';
import type { SharedCounters } from './shared-limits.js';

// The host secret: returned once by register, stored only as its hash, and counted when used.
// It has 256 bits of entropy, so a plain SHA-256 is enough: there is nothing to brute-force that
// a slow hash would protect.

export const hashSecret = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

export function secretMatches(record: Pick<GameRecord, 'secretHash'>, secret: string): boolean {
  const expected = Buffer.from(record.secretHash, 'hex');
  const actual = hashSecret(secret);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

export interface WindowLimit {
  max: number;
  windowMs: number;
}

/**
 * A call with a host secret refused: the wrong secret, or counted past its limit: too many with
 * this (right) secret, or too many wrong secrets from this client address (a right one from it
 * still works).
 */
export type SecretRefusal =
  | { type: 'badSecret' }
  | { type: 'secretRateLimited'; limit: number; windowMs: number; retryAfterMs: number }
  | { type: 'badSecretRateLimited'; limit: number; windowMs: number; retryAfterMs: number };

export interface SecretLimits {
  counters?: SharedCounters;
  /** Calls with one host secret (rename, delete) per window. */
  secretLimit?: WindowLimit;
  /** Wrong host secrets one client address may present per window; past it, 429 instead of 403. */
  badSecretLimit?: WindowLimit;
  now: () => number;
  log?: Logger;
}

/**
 * Counts a call made with a host secret before it runs: a wrong secret against the client's
 * address, a right one against the secret. The first bounds what wrong secrets cost (counters,
 * log lines, store reads): it does not slow guessing, which 256 bits make pointless, and it never
 * refuses a right secret, so the real host behind a throttled address is not locked out. The
 * second keeps a leaked or buggy host from making the store rewrite a game without end. Counters are keyed by what the store already holds (the game's
 * secret hash) or by the address, never by whatever secret a caller makes up. Undefined: go on.
 */
export async function admitSecretCall(limits: SecretLimits, game: string, record: GameRecord, secret: string, client: string): Promise<SecretRefusal | undefined> {
  const { counters } = limits;
  if (!secretMatches(record, secret)) {
    const bad = limits.badSecretLimit;
    if (!bad || !counters) return { type: 'badSecret' };
    const counted = await counters.hit(`bad-secret ${client}`, bad.max, bad.windowMs, limits.now());
    if (counted.type === 'counted') return { type: 'badSecret' };
    limits.log?.warn({ game, client, limit: bad.max }, 'wrong host secrets: rate limit reached');
    return { type: 'badSecretRateLimited', limit: bad.max, windowMs: bad.windowMs, retryAfterMs: counted.retryAfterMs };
  }
  const limit = limits.secretLimit;
  if (!limit || !counters) return undefined;
  const counted = await counters.hit(`secret ${record.secretHash}`, limit.max, limit.windowMs, limits.now());
  if (counted.type === 'counted') return undefined;
  limits.log?.warn({ game, limit: limit.max }, 'host secret calls: rate limit reached');
  return { type: 'secretRateLimited', limit: limit.max, windowMs: limit.windowMs, retryAfterMs: counted.retryAfterMs };
}
