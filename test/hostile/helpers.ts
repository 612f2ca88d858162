import { setTimeout as sleep } from 'node:timers/promises';

// Leak checks shared by the hostile tests: the proxy's own counters say what it still holds,
// and Node's active-resource list says what the process still holds (sockets, timers).

export type ResourceCounts = Record<string, number>;

export function resourceCounts(): ResourceCounts {
  const counts: ResourceCounts = {};
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

/** Kinds whose count is above the baseline, e.g. { TCPSocketWrap: 2 }; empty when nothing leaked. */
export function excess(baseline: ResourceCounts, now: ResourceCounts, kinds: readonly string[]): ResourceCounts {
  const over: ResourceCounts = {};
  for (const kind of kinds) {
    const extra = (now[kind] ?? 0) - (baseline[kind] ?? 0);
    if (extra > 0) over[kind] = extra;
  }
  return over;
}

/**
 * Waits until no kind in `kinds` is above the baseline, and returns what is still above it at the
 * deadline. A handle lingers for a tick or two after destroy(), so a single sample would flake.
 */
export async function settledExcess(baseline: ResourceCounts, kinds: readonly string[], ms = 3_000): Promise<ResourceCounts> {
  const until = Date.now() + ms;
  for (;;) {
    const over = excess(baseline, resourceCounts(), kinds);
    if (Object.keys(over).length === 0 || Date.now() > until) return over;
    await sleep(10);
  }
}

export async function waitFor(check: () => boolean, ms = 3_000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`${what} not met within ${ms} ms`);
    await sleep(5);
  }
}

/** Runs `work` over `items` with at most `limit` in flight. */
export async function pool<T>(items: readonly T[], limit: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i]!, i);
    }
  });
  await Promise.all(lanes);
}
