import { moveRelayHold, takeRelayHold, type RelayHold } from '../../machines/game-session.js';
import type { Logger } from '../core/logger.js';
import { StoreContentionError, type GameStore, type HoldKey } from './game-store.js';

// The relay caps' I/O: each cap is one list of holds in the bucket, read and written back with a
// revision check, so every `games run` instance counts the same sessions. The rules (what a full
// list is, when a hold ends) are pure functions in machines/game-session.ts.

export class RelayHolds {
  constructor(
    private readonly store: Pick<GameStore, 'getHolds' | 'putHolds'>,
    private readonly now: () => number,
    private readonly maxAttempts: number,
    private readonly log?: Logger,
  ) {}

  /** Takes a slot of one cap's list, retrying on a concurrent writer. */
  async take(key: HoldKey, hold: RelayHold, limit: number): Promise<{ type: 'taken' } | { type: 'full'; retryAt: number }> {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const stored = await this.store.getHolds(key);
      const r = takeRelayHold(stored?.holds ?? [], hold, limit, this.now());
      if (r.type === 'full') return r;
      if ((await this.store.putHolds(key, r.holds, stored?.revision ?? null)).type === 'written') return { type: 'taken' };
    }
    throw new StoreContentionError(`relay holds of ${key.kind} ${key.id}: writes kept conflicting`);
  }

  /** Moves (or, with undefined, frees) a hold; a failure leaves it to end on its own. */
  async move(key: HoldKey, id: string, until: number | undefined): Promise<void> {
    try {
      for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
        const stored = await this.store.getHolds(key);
        if (!stored) return;
        if ((await this.store.putHolds(key, moveRelayHold(stored.holds, id, until, this.now()), stored.revision)).type === 'written') return;
      }
    } catch (err) {
      this.log?.warn({ err, kind: key.kind }, 'relay hold not updated; it ends at its first deadline');
    }
  }
}
