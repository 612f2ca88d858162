import { barChart, type Panel } from './bar-chart.js';

// One SVG per relay bench run (drawn by bench/bar-chart.ts, as every bench's): a panel per figure
// (throughput, relay CPU per GiB, the endpoints' CPU per GiB, relay CPU per round trip, round-trip
// p50), one bar per contender, the project's relays in their own colour, and issue 10's targets
// against haproxy `mode tcp` where the run has it.

/** One contender's medians over a run, as the chart draws them (bench/relay.ts computes them). */
export interface Summary {
  contender: string;
  mibps: number;
  cpuMsPerGiB?: number;
  cpuUsPerRoundTrip?: number;
  /** The sender's and receiver's CPU per GiB (bench/relay.ts says why). */
  endpointsCpuMsPerGiB?: number;
  p50Us: number;
  p99Us: number;
  range: { mibps: [number, number]; p50Us: [number, number]; cpuMsPerGiB?: [number, number] };
}

const ANCHOR = 'haproxy';

export function relayChart(summary: Summary[], at: string): string {
  const anchor = summary.find((s) => s.contender === ANCHOR);
  const panel = (title: string, value: (s: Summary) => number | undefined, target?: { times: number; label: string }): Panel => {
    const anchorValue = anchor && value(anchor);
    return {
      title,
      bars: summary.map((s) => ({ label: s.contender, value: value(s), ours: s.contender.startsWith('eps') })),
      ...(target && anchorValue !== undefined ? { target: { value: target.times * anchorValue, label: target.label } } : {}),
    };
  };
  return barChart(`relay bench ${at}: medians over rounds; EPS in red`, [
    panel('throughput, MiB/s (higher is better)', (s) => s.mibps, { times: 1.1, label: `target: 1.1x ${ANCHOR}` }),
    panel('relay CPU, ms per GiB (lower is better)', (s) => s.cpuMsPerGiB, { times: 1, label: `target: 1x ${ANCHOR}` }),
    panel('sender + receiver CPU, ms per GiB', (s) => s.endpointsCpuMsPerGiB),
    panel('relay CPU per round trip, µs (lower is better)', (s) => s.cpuUsPerRoundTrip),
    panel('64 B round trip p50, µs (lower is better)', (s) => s.p50Us, { times: 1.1, label: `target: 1.1x ${ANCHOR}` }),
  ]);
}
