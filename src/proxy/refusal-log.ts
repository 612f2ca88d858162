import type { Logger } from '../core/logger.js';

// Refusals are what a flood is made of, so one log line each would let anyone who can reach the
// endpoint grow the proxy's logs without bound. Per reason, the first refusal after a quiet
// spell is logged at once with its details; the ones after it within the interval are counted
// and logged as one line when it ends, and so on while they keep coming: at most one line per
// reason per interval, and no refusal goes uncounted. The metric still counts each one.

type Level = 'info' | 'warn';

interface ReasonState {
  timer: NodeJS.Timeout;
  suppressed: number;
  last: Record<string, unknown>;
}

export class RefusalLog {
  readonly #states = new Map<string, ReasonState>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly message: string,
  ) {}

  refused(reason: string, level: Level, fields: Record<string, unknown>): void {
    const state = this.#states.get(reason);
    if (state) {
      state.suppressed += 1;
      state.last = fields;
      return;
    }
    this.log[level]({ ...fields, reason }, this.message);
    this.#quiet(reason, level);
  }

  /** Logs what is still counted and stops every timer (the endpoint is closing). */
  flush(): void {
    for (const [reason, state] of this.#states) {
      clearTimeout(state.timer);
      if (state.suppressed > 0) this.#summary(reason, 'warn', state);
    }
    this.#states.clear();
  }

  #quiet(reason: string, level: Level): void {
    const timer = setTimeout(() => {
      const state = this.#states.get(reason)!;
      this.#states.delete(reason);
      if (state.suppressed === 0) return;
      this.#summary(reason, level, state);
      // Still refusing: the next interval's refusals are counted into the next summary.
      this.#quiet(reason, level);
    }, this.intervalMs);
    timer.unref();
    this.#states.set(reason, { timer, suppressed: 0, last: {} });
  }

  #summary(reason: string, level: Level, state: ReasonState): void {
    this.log[level]({ reason, count: state.suppressed, intervalMs: this.intervalMs, last: state.last }, `${this.message} (more of the same, counted)`);
  }
}
