import { describe, expect, it } from 'vitest';
import { segmentCrosses, svgProblems } from '../helpers/svg-overlaps.js';

// The check the machine diagrams must pass (test/unit/diagrams.test.ts) must itself catch what it
// claims to: each case below draws one fault on a 200×100 canvas, 10 px text (6 px a character).

const canvas = (body: string): string =>
  `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100" font-size="10">\\n${body}\\n</svg>`;
const state = (path: string, x: number, y: number, w: number, h: number, text: string, tx = x + w / 2, ty = y + h / 2 + 3): string =>
  `<g class="state atomic" data-path="${path}"><rect x="${x}" y="${y}" width="${w}" height="${h}"/><text x="${tx}" y="${ty}" text-anchor="middle">${text}</text></g>`;

describe('svg overlaps check', () => {
  it('svg overlaps - a clean drawing has no problem', () => {
    const svg = canvas(
      [
        state('a', 10, 10, 60, 20, 'alpha'),
        state('b', 120, 10, 60, 20, 'beta'),
        '<g class="transition" data-source="a" data-target="b"><path d="M70,20 L120,20"/><rect x="75" y="40" width="40" height="12"/><text x="95" y="50" text-anchor="middle">GO</text></g>',
      ].join('\\n'),
    );
    expect(svgProblems(svg)).toEqual([]);
  });

  it('svg overlaps - two labels on top of each other', () => {
    const svg = canvas('<text x="20" y="50">CLOCK_TICKED</text>\\n<text x="60" y="52">DELETED</text>');
    expect(svgProblems(svg)).toEqual([expect.stringMatching(/"CLOCK_TICKED" .* overlaps "DELETED"/)]);
  });

  it('svg overlaps - a label past the right edge of the viewBox', () => {
    expect(svgProblems(canvas('<text x="170" y="50">after timeout</text>'))).toEqual([expect.stringMatching(/cut off by the viewBox/)]);
  });

  it('svg overlaps - a state name wider than its box', () => {
    expect(svgProblems(canvas(state('s', 10, 10, 30, 20, 'settling')))).toEqual([expect.stringMatching(/"settling" \(state s\) .* overflows its state's box/)]);
  });

  it("svg overlaps - a label under another state's box, and a label astride a frame's border", () => {
    const svg = canvas(
      [
        state('a', 10, 10, 60, 30, 'a'),
        '<text x="50" y="30">LATE</text>',
        '<g class="state compound" data-path="f"><rect x="100" y="20" width="80" height="60"/><text x="104" y="32">f</text></g>',
        '<text x="80" y="60">EDGE</text>',
      ].join('\\n'),
    );
    expect(svgProblems(svg)).toEqual([expect.stringMatching(/"LATE" .* is under the box of state a/), expect.stringMatching(/"EDGE" .* straddles the border of state f/)]);
  });

  it('svg overlaps - a line drawn through a label, and two state boxes on each other', () => {
    const svg = canvas(
      [
        state('a', 10, 10, 40, 20, 'a'),
        state('b', 40, 20, 40, 20, 'b'),
        '<text x="100" y="80">SHUTDOWN</text>',
        '<g class="transition" data-source="a" data-target="b"><path d="M90,60 C100,70 120,90 150,90"/></g>',
      ].join('\\n'),
    );
    expect(svgProblems(svg)).toEqual([expect.stringMatching(/"SHUTDOWN" .* crossed by the line of transition a → b/), expect.stringMatching(/box of state a .* overlaps the box of state b/)]);
  });

  it('svg overlaps - a text it cannot read is a problem, not a pass', () => {
    expect(svgProblems(canvas('<text x="20" y="50">a <tspan>b</tspan></text>'))).toEqual([expect.stringMatching(/only 0 of the 1 <text> elements could be read/)]);
  });

  it('svg overlaps - a segment along a box edge does not cross it; one through it does', () => {
    const box = { x1: 0, y1: 0, x2: 10, y2: 10 };
    expect(segmentCrosses({ x: -5, y: 0 }, { x: 15, y: 0 }, box)).toBe(false);
    expect(segmentCrosses({ x: -5, y: 5 }, { x: -1, y: 5 }, box)).toBe(false);
    expect(segmentCrosses({ x: 5, y: -5 }, { x: 5, y: 15 }, box)).toBe(true);
    expect(segmentCrosses({ x: -5, y: -5 }, { x: 15, y: 15 }, box)).toBe(true);
  });
});
