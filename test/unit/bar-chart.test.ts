import { describe, expect, it } from 'vitest';
import { barChart } from '../../bench/bar-chart.js';
import { svgProblems } from '../helpers/svg-overlaps.js';

// The bench charts must be readable as written: no label on another, nothing cut off, each bar as
// long as its value says, and the target where the issue puts it.

const widthOf = (svg: string, label: string): number => {
  const i = svg.indexOf(`>${label}</text>`);
  const rect = svg.slice(i).match(/<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"/);
  return Number(rect![1]);
};

describe('bench bar chart', () => {
  const panels = [
    {
      title: 'new channel + call, p50 ms (lower is better)',
      bars: [
        { label: 'this build', value: 15, ours: true },
        { label: 'before (/work/before)', value: 14.5, ours: true },
        { label: 'direct fresh (grpc-js)', value: 7.5 },
        { label: "direct fresh (A's client)", value: undefined },
      ],
      target: { value: 11.25, label: 'target: 1.5x direct fresh (grpc-js)' },
    },
    { title: '50 concurrent requesters, per second (higher is better)', bars: [{ label: 'brokered <this build>', value: 210, ours: true }, { label: 'direct', value: 340 }] },
    { title: 'an empty panel is left out', bars: [] },
  ];
  const svg = barChart('brokering bench 2026-12-01T04:00:00Z: medians', panels);

  it('bar chart - nothing overlaps and nothing is cut off, with long labels in several panels', () => {
    expect(svgProblems(svg)).toEqual([]);
    expect(svg).not.toContain('an empty panel');
  });

  it('bar chart - bars are proportional to their values within a panel; a missing value is a dash, not a bar', () => {
    expect(widthOf(svg, 'this build') / widthOf(svg, 'direct fresh (grpc-js)')).toBeCloseTo(2, 5);
    const missing = svg.slice(svg.indexOf(">direct fresh (A's client)</text>"));
    expect(missing.split('\n')[1]).toMatch(/fill="#999">-</);
  });

  it('bar chart - the target line sits at its value on the same scale as the bars', () => {
    const x = (label: string) => Number(svg.slice(svg.indexOf(`>${label}</text>`)).match(/<rect x="([\d.]+)"/)![1]);
    const line = svg.match(/<line x1="([\d.]+)"/);
    expect(Number(line![1]) - x('this build')).toBeCloseTo((widthOf(svg, 'this build') * 11.25) / 15, 0);
  });

  it('bar chart - labels are escaped (a contender named like markup stays text)', () => {
    expect(svg).toContain('brokered &lt;this build&gt;');
    expect(svg).not.toContain('<this build>');
  });
});
