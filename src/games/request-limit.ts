// The per-address request limit (`http.rateLimit`) of every `games run` together. Counting each
// request in the shared store would put a store write on every poll, the hottest path there is;
// instead each instance counts in memory and shares its counts a few times a second
// (src/games/request-limit-sync.ts), and an address is judged by its count here plus the last
// counts the other instances shared. Windows are fixed and aligned on the clock, as the shared
// counters' are (`windowOf`), so every instance agrees on which window a request falls in.
//
// What sharing costs in accuracy, by design: an address may get up to what the other instances
// admitted within one sync period on top of `max`, and an instance shares an address only once
// that address has a `SHARE_FRACTION` of `max` there (a count below it cannot matter unless there
// are more instances than 1 / SHARE_FRACTION). Pure: the clock is passed in.

import { windowOf } from './shared-limits.js';

export interface RequestLimitSettings {
  /** Requests one client address may make per window, every instance together. */
  max: number;
  windowMs: number;
  /** Addresses counted at once per instance; the least recently seen is forgotten past it. */
  maxAddresses: number;
}

export type Admission =
  | { type: 'admitted'; remaining: number; resetAtMs: number }
  | { type: 'limited'; retryAfterMs: number; resetAtMs: number };

/** What one instance tells the others: its own counts in one window. */
export interface SharedCounts {
  windowMs: number;
  index: number;
  counts: Record<string, number>;
}

/** An address is shared once it reached this part of `max` on one instance. */
export const SHARE_FRACTION = 1 / 16;
/** At most this many addresses per report, the busiest first: a report stays one small message. */
export const MAX_SHARED_ADDRESSES = 1_000;
/** Instances whose counts are taken in one window: far more than a deployment runs, a bound on what a broken writer costs. */
export const MAX_SHARING_INSTANCES = 32;

export class RequestLimiter {
  private index: number;
  /** Own counts in window `index`, least recently seen first. */
  private readonly own = new Map<string, number>();
  /** The other instances' last counts in window `index`, by instance. */
  private readonly others = new Map<string, Map<string, number>>();
  private changed = false;
  private readonly shareFrom: number;

  constructor(
    private readonly limit: RequestLimitSettings,
    now: number,
  ) {
    this.index = windowOf(now, limit.windowMs).index;
    this.shareFrom = Math.max(1, Math.floor(limit.max * SHARE_FRACTION));
  }

  /** Counts one request of `address` at `now` unless the address already spent its window. */
  admit(address: string, now: number): Admission {
    const w = windowOf(now, this.limit.windowMs);
    this.roll(w.index);
    const mine = this.own.get(address) ?? 0;
    let total = mine;
    for (const counts of this.others.values()) total += counts.get(address) ?? 0;
    if (total >= this.limit.max) return { type: 'limited', retryAfterMs: w.endsAt - now, resetAtMs: w.endsAt };
    // Re-inserted so that the first entry is always the least recently seen.
    this.own.delete(address);
    this.own.set(address, mine + 1);
    if (this.own.size > this.limit.maxAddresses) this.own.delete(this.own.keys().next().value!);
    if (mine + 1 >= this.shareFrom) this.changed = true;
    return { type: 'admitted', remaining: this.limit.max - total - 1, resetAtMs: w.endsAt };
  }

  /** Own counts worth sharing, when they changed since the last report; undefined otherwise. */
  report(now: number): SharedCounts | undefined {
    this.roll(windowOf(now, this.limit.windowMs).index);
    if (!this.changed) return undefined;
    this.changed = false;
    const busy = [...this.own].filter(([, n]) => n >= this.shareFrom);
    if (busy.length > MAX_SHARED_ADDRESSES) busy.sort((a, b) => b[1] - a[1]).length = MAX_SHARED_ADDRESSES;
    return { windowMs: this.limit.windowMs, index: this.index, counts: Object.fromEntries(busy) };
  }

  /**
   * Takes another instance's report. Reports of other windows, or of a differently configured
   * window length, say nothing about this window and are ignored; a newer report of the same
   * instance replaces its older one (counts only grow within a window, so order does not matter
   * beyond that).
   */
  merge(instance: string, shared: SharedCounts, now: number): void {
    this.roll(windowOf(now, this.limit.windowMs).index);
    if (shared.windowMs !== this.limit.windowMs || shared.index !== this.index) return;
    if (!this.others.has(instance) && this.others.size >= MAX_SHARING_INSTANCES) return;
    this.others.set(instance, new Map(Object.entries(shared.counts)));
  }

  /** The last report did not reach the others: the next call of `report` makes a new one. */
  unsent(): void {
    this.changed = true;
  }

  get max(): number {
    return this.limit.max;
  }

  get windowMs(): number {
    return this.limit.windowMs;
  }

  /** Addresses counted here in the current window (a gauge, and for tests). */
  get tracked(): number {
    return this.own.size;
  }

  private roll(index: number): void {
    // A clock stepped back keeps the current window rather than counting an old one again.
    if (index <= this.index) return;
    this.index = index;
    this.own.clear();
    this.others.clear();
    this.changed = false;
  }
}
