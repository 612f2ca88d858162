import { barChart, type Panel } from './bar-chart.js';
import type { ConcurrentSummary } from './brokering-concurrent.js';

// The brokering bench's chart: issue 10's three brokering figures, each beside its anchor and
// with its target drawn, for every EPS build in the run (this build, and a before build if any).

interface Stats {
  p50: number;
  p99: number;
  n: number;
}

export interface BrokeringChartInput {
  at: string;
  direct: { directFresh: Stats; directKept: Stats; sameClientFresh: Stats };
  contenders: Array<{ label: string; stats: Record<string, Stats> }>;
  concurrent: ConcurrentSummary[];
}

export function brokeringChart({ at, direct, contenders, concurrent }: BrokeringChartInput): string {
  const panels: Panel[] = [];
  if (direct.directFresh.n > 0) {
    for (const p of ['p50', 'p99'] as const) {
      panels.push({
        title: `new channel + call, ${p} ms (lower is better)`,
        bars: [
          ...contenders.map((c) => ({ label: c.label, value: c.stats['brokered']![p], ours: true })),
          { label: 'direct fresh (grpc-js)', value: direct.directFresh[p] },
          { label: "direct fresh (A's client)", value: direct.sameClientFresh[p] },
        ],
        target: { value: 1.5 * direct.directFresh[p], label: 'target: 1.5x direct fresh (grpc-js)' },
      });
    }
    panels.push({
      title: 'kept channel call − hd-1 local, p50 ms',
      bars: [
        ...contenders.map((c) => ({ label: c.label, value: Math.max(0, c.stats['kept']!.p50 - c.stats['local']!.p50), ours: true })),
        { label: 'direct kept (grpc-js)', value: direct.directKept.p50 },
      ],
      target: { value: 1.2 * direct.directKept.p50, label: 'target: 1.2x direct kept' },
    });
  }
  const anchor = concurrent.at(-1);
  if (anchor) {
    panels.push({
      title: '50 concurrent requesters, per second (higher is better)',
      bars: concurrent.map((c) => ({ label: c.label, value: c.ratePerSecond.median, ours: c !== anchor })),
      target: { value: 0.6 * anchor.ratePerSecond.median, label: 'target: 0.6x direct' },
    });
  }
  return barChart(`brokering bench ${at}: medians; EPS builds in red`, panels);
}
