// One SVG per relay bench run: a panel per figure (throughput, relay CPU per GiB, the endpoints'
// CPU per GiB, relay CPU per round trip, round-trip p50), one horizontal bar per contender, the
// project's bar in its own colour.

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

const PANEL_W = 300;
const BAR_H = 18;
const LABEL_W = 110;

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

export function relayChart(summary: Summary[], at: string): string {
  const panels: { title: string; value: (s: Summary) => number | undefined; unit: string }[] = [
    { title: 'throughput, MiB/s (higher is better)', value: (s) => s.mibps, unit: '' },
    { title: 'relay CPU, ms per GiB (lower is better)', value: (s) => s.cpuMsPerGiB, unit: '' },
    { title: 'sender + receiver CPU, ms per GiB', value: (s) => s.endpointsCpuMsPerGiB, unit: '' },
    { title: 'relay CPU per round trip, µs (lower is better)', value: (s) => s.cpuUsPerRoundTrip, unit: '' },
    { title: '64 B round trip p50, µs (lower is better)', value: (s) => s.p50Us, unit: '' },
  ];
  const height = 40 + summary.length * (BAR_H + 6) + 30;
  const width = LABEL_W + panels.length * (PANEL_W + 20);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="4" y="${height - 8}" fill="#666">relay bench ${escape(at)}: medians over rounds</text>`,
  ];
  summary.forEach((s, i) => {
    parts.push(`<text x="4" y="${40 + i * (BAR_H + 6) + 13}">${escape(s.contender)}</text>`);
  });
  panels.forEach((panel, p) => {
    const x0 = LABEL_W + p * (PANEL_W + 20);
    const values = summary.map(panel.value);
    const max = Math.max(...values.map((v) => v ?? 0)) || 1;
    parts.push(`<text x="${x0}" y="20" font-weight="bold">${escape(panel.title)}</text>`);
    summary.forEach((s, i) => {
      const v = values[i];
      const y = 40 + i * (BAR_H + 6);
      if (v === undefined) {
        parts.push(`<text x="${x0}" y="${y + 13}" fill="#999">—</text>`);
        return;
      }
      const w = ((PANEL_W - 60) * v) / max;
      parts.push(`<rect x="${x0}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${s.contender === 'eps' ? '#d9534f' : '#5b8db8'}"/>`);
      parts.push(`<text x="${(x0 + w + 4).toFixed(1)}" y="${y + 13}">${v < 100 ? v.toFixed(1) : v.toFixed(0)}${panel.unit}</text>`);
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
