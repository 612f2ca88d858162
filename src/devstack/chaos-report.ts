import type { FailureClass } from './chaos-errors.js';
import { WORK_KINDS, type WorkKind, type WorkRecord } from './chaos-load.js';

// From the run's records and kills to its figures: for each kill, how long until new work of each
// kind succeeded again and which failures fell in its window; per kill target, the p50 and max of
// those recoveries; and the table `npm run chaos` prints.

export const KILL_TARGETS = ['nats', 'proxy', 'games', 'sd'] as const;
export type KillTarget = (typeof KILL_TARGETS)[number];

export interface Kill {
  target: KillTarget;
  /** Which one: `eps-1`, `public-proxy-2`, `games-1`, `sd-1`. */
  victim: string;
  /** performance.now() when SIGKILL was sent, when its replacement was started, when it served again. */
  killedAt: number;
  restartedAt: number;
  healthyAt: number;
}

export interface KillOutcome {
  target: KillTarget;
  victim: string;
  downMs: number;
  /** Kill to the replacement serving. */
  restartMs: number;
  /** Kill to the end of the first call of that kind started after the kill that succeeded; null: none did before the next kill. */
  recoveryMs: Record<WorkKind, number | null>;
  /** Calls that ended in this kill's window and failed, by kind and class. */
  failures: { kind: WorkKind; label: string; clear: boolean; count: number }[];
  /** Calls that failed and were retried inside work (a duel's peers), said in this kill's window. */
  retried: { kind: WorkKind; label: string; clear: boolean; count: number }[];
}

export interface Figures {
  p50: number | null;
  max: number | null;
  n: number;
}

const round = (ms: number) => Math.round(ms);

export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

export function figures(values: number[]): Figures {
  return { p50: percentile(values, 50) === null ? null : round(percentile(values, 50)!), max: values.length ? round(Math.max(...values)) : null, n: values.length };
}

function byClass(failures: { kind: WorkKind; failure: FailureClass }[]): KillOutcome['failures'] {
  const classes = new Map<string, KillOutcome['failures'][number]>();
  for (const { kind, failure } of failures) {
    const key = `${kind}\u0000${failure.label}`;
    const seen = classes.get(key) ?? { kind, label: failure.label, clear: failure.clear, count: 0 };
    seen.count += 1;
    classes.set(key, seen);
  }
  return [...classes.values()].sort((x, y) => y.count - x.count);
}

const failuresIn = (records: WorkRecord[]) => byClass(records.flatMap((r) => (!r.ok && r.failure ? [{ kind: r.kind, failure: r.failure }] : [])));
/** The retried calls said between `from` and `until`: a duel can outlive a kill window, its retries each have their own time. */
const retriedIn = (records: WorkRecord[], from: number, until: number) =>
  byClass(records.flatMap((r) => (r.retried ?? []).filter((f) => f.at >= from && f.at < until).map((f) => ({ kind: r.kind, failure: { label: f.label, clear: f.clear } }))));

/** Each kill's window runs from its SIGKILL to the next one's (the last: to the end of the load). */
export function outcomes(kills: Kill[], records: WorkRecord[], loadEndedAt: number): KillOutcome[] {
  return kills.map((k, i) => {
    const until = kills[i + 1]?.killedAt ?? loadEndedAt;
    const recoveryMs = Object.fromEntries(
      WORK_KINDS.map((kind) => {
        const first = records.filter((r) => r.kind === kind && r.ok && r.startedAt >= k.killedAt && r.startedAt < until).sort((x, y) => x.endedAt - y.endedAt)[0];
        return [kind, first ? round(first.endedAt - k.killedAt) : null];
      }),
    ) as Record<WorkKind, number | null>;
    return {
      target: k.target,
      victim: k.victim,
      downMs: round(k.restartedAt - k.killedAt),
      restartMs: round(k.healthyAt - k.killedAt),
      recoveryMs,
      failures: failuresIn(records.filter((r) => r.endedAt >= k.killedAt && r.endedAt < until)),
      retried: retriedIn(records, k.killedAt, until),
    };
  });
}

/** Per kill target and kind, the recoveries' p50 and max (a kill with none counts as missing). */
export function recoveryByTarget(kills: KillOutcome[]): Record<string, Record<WorkKind, Figures & { missing: number }>> {
  const out: Record<string, Record<WorkKind, Figures & { missing: number }>> = {};
  for (const target of KILL_TARGETS) {
    const mine = kills.filter((k) => k.target === target);
    if (mine.length === 0) continue;
    out[target] = Object.fromEntries(
      WORK_KINDS.map((kind) => {
        const values = mine.map((k) => k.recoveryMs[kind]).filter((v): v is number => v !== null);
        return [kind, { ...figures(values), missing: mine.length - values.length }];
      }),
    ) as Record<WorkKind, Figures & { missing: number }>;
  }
  return out;
}

/** Each kind's latency outside any kill's reach (before the first kill): what a recovery compares with. */
export function baseline(records: WorkRecord[], firstKillAt: number): Record<WorkKind, Figures & { failed: number }> {
  return Object.fromEntries(
    WORK_KINDS.map((kind) => {
      const mine = records.filter((r) => r.kind === kind && r.endedAt < firstKillAt);
      return [kind, { ...figures(mine.filter((r) => r.ok).map((r) => r.endedAt - r.startedAt)), failed: mine.filter((r) => !r.ok).length }];
    }),
  ) as Record<WorkKind, Figures & { failed: number }>;
}

const cell = (f: Figures & { missing?: number }) => (f.n === 0 ? 'none' : `${f.p50} / ${f.max}${f.missing ? ` (${f.missing} never)` : ''}`);

/** The table `npm run chaos` prints: recoveries per target and kind, then every failure class. */
export function formatTable(byTarget: ReturnType<typeof recoveryByTarget>, kills: KillOutcome[], base: ReturnType<typeof baseline>): string {
  const head = ['kill target', 'kills', ...WORK_KINDS.map((k) => `${k} p50 / max ms`), 'restart p50 ms'];
  const rows = Object.entries(byTarget).map(([target, byKind]) => {
    const mine = kills.filter((k) => k.target === target);
    return [target, String(mine.length), ...WORK_KINDS.map((k) => cell(byKind[k])), String(figures(mine.map((k) => k.restartMs)).p50)];
  });
  rows.push(['(no kill: latency)', '-', ...WORK_KINDS.map((k) => cell(base[k])), '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const out = [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  const section = (title: string, pick: (k: KillOutcome) => KillOutcome['failures']) => {
    out.push('', title);
    const classes = new Map<string, number>();
    for (const k of kills) {
      for (const f of pick(k)) {
        const key = [k.target, f.kind, f.clear ? 'clear  ' : 'UNCLEAR', f.label].join('\u0000');
        classes.set(key, (classes.get(key) ?? 0) + f.count);
      }
    }
    if (classes.size === 0) out.push('  none');
    for (const [key, n] of [...classes].sort()) {
      const [target, kind, clear, label] = key.split('\u0000');
      out.push(`  ${target!.padEnd(6)} ${kind!.padEnd(9)} ${String(n).padStart(4)}  ${clear}  ${label}`);
    }
  };
  section('failed calls by kill target and error class (clear = the caller was told what failed):', (k) => k.failures);
  section('calls a duel peer retried (each said on its stderr) by kill target and class:', (k) => k.retried);
  return out.join('\n');
}
