// The SVG every bench run writes beside its JSON record: panels side by side, one horizontal bar
// per contender in each, this project's bars in their own colour, and, where a panel has one, a
// dashed line at the target (e.g. 1.5x the direct anchor), so a run can be judged at a
// glance. Plain SVG text, no dependency; labels are sized so that nothing overlaps or is cut off
// (test/unit/bar-chart.test.ts checks that with the diagrams' own checker).

export interface Bar {
  label: string;
  /** Absent: the contender has no figure for this panel (drawn as a dash). */
  value: number | undefined;
  /** This project's contender: drawn in its own colour. */
  ours?: boolean;
}

export interface Panel {
  title: string;
  bars: Bar[];
  /** A dashed line at this value, labelled (e.g. "target 1.5x direct"). */
  target?: { value: number; label: string };
}

const FONT = 12;
const CHAR_W = FONT * 0.6;
const BAR_H = 18;
const ROW_H = BAR_H + 8;
const BAR_AREA = 180;
const VALUE_W = 8 * CHAR_W;
const GAP = 24;
const TOP = 44;

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const show = (v: number): string => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

export function barChart(caption: string, panels: Panel[]): string {
  const drawn = panels.filter((p) => p.bars.length > 0);
  const rows = Math.max(1, ...drawn.map((p) => p.bars.length));
  const widths = drawn.map((p) => {
    const labelW = Math.max(...p.bars.map((b) => b.label.length)) * CHAR_W + 8;
    const titleW = p.title.length * CHAR_W;
    const targetW = p.target ? p.target.label.length * CHAR_W : 0;
    return { labelW, panelW: Math.max(labelW + BAR_AREA + VALUE_W, titleW, labelW + targetW) };
  });
  const width = Math.max(caption.length * CHAR_W + 8, widths.reduce((sum, w) => sum + w.panelW + GAP, 0)) + 8;
  const height = TOP + rows * ROW_H + 40;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="4" y="${height - 8}" fill="#666">${escape(caption)}</text>`,
  ];
  let x0 = 4;
  drawn.forEach((panel, p) => {
    const { labelW, panelW } = widths[p]!;
    const barX = x0 + labelW;
    const values = panel.bars.map((b) => b.value ?? 0);
    const max = Math.max(...values, panel.target?.value ?? 0) || 1;
    const scale = BAR_AREA / max;
    parts.push(`<text x="${x0}" y="20" font-weight="bold">${escape(panel.title)}</text>`);
    panel.bars.forEach((bar, i) => {
      const y = TOP + i * ROW_H;
      parts.push(`<text x="${x0}" y="${y + 13}">${escape(bar.label)}</text>`);
      if (bar.value === undefined) {
        parts.push(`<text x="${barX}" y="${y + 13}" fill="#999">-</text>`);
        return;
      }
      const w = bar.value * scale;
      parts.push(`<rect x="${barX}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${bar.ours ? '#d9534f' : '#5b8db8'}"/>`);
      parts.push(`<text x="${(barX + w + 4).toFixed(1)}" y="${y + 13}">${show(bar.value)}</text>`);
    });
    if (panel.target) {
      const tx = barX + panel.target.value * scale;
      const bottom = TOP + panel.bars.length * ROW_H;
      parts.push(`<line x1="${tx.toFixed(1)}" y1="${TOP - 6}" x2="${tx.toFixed(1)}" y2="${bottom}" stroke="#333" stroke-dasharray="4 3"/>`);
      parts.push(`<text x="${barX}" y="${bottom + 14}" fill="#333">${escape(panel.target.label)}</text>`);
    }
    x0 += panelW + GAP;
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
