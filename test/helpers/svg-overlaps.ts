// Reads a machine diagram's SVG as a browser would lay it out and lists what a reader could not
// read: text boxes that overlap, text cut off by the viewBox or by its own state's box, text
// under another state's box or astride a frame's border, state boxes that overlap, and lines
// drawn through text. It knows only the SVG, not the code that drew it, so it judges any layout.
//
// Text is measured the way the diagrams' monospace font sets it: every character advances
// 0.6 em, the glyphs rise 0.8 em above the baseline and fall 0.2 em below it.

const CHAR_EM = 0.6;
const ASCENT_EM = 0.8;
const DESCENT_EM = 0.2;
/** Overlaps thinner than this (rounding to one decimal) do not hide anything. */
const SLACK = 0.5;

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

interface Text {
  text: string;
  box: Box;
  /** Index of the `<g>` holding it (-1 at top level). */
  group: number;
}

interface Group {
  kind: 'state' | 'compound' | 'transition' | 'other';
  name: string;
  /** A state's box: the group's first `<rect>`. */
  rect?: Box;
}

const attrsOf = (tag: string): Map<string, string> => new Map([...tag.matchAll(/([\w:-]+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));

const decode = (s: string): string =>
  s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');

const num = (attrs: Map<string, string>, name: string): number => {
  const v = Number(attrs.get(name));
  if (!Number.isFinite(v)) throw new Error(`attribute ${name}="${attrs.get(name)}" is not a number`);
  return v;
};

export const overlaps = (a: Box, b: Box): boolean =>
  Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1) > SLACK && Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1) > SLACK;

const inside = (inner: Box, outer: Box): boolean =>
  inner.x1 >= outer.x1 - SLACK && inner.y1 >= outer.y1 - SLACK && inner.x2 <= outer.x2 + SLACK && inner.y2 <= outer.y2 + SLACK;

const show = (b: Box): string => `(${b.x1.toFixed(1)},${b.y1.toFixed(1)})-(${b.x2.toFixed(1)},${b.y2.toFixed(1)})`;

/** Whether the segment p–q passes through the inside of `box` (Liang–Barsky clipping). */
export function segmentCrosses(p: { x: number; y: number }, q: { x: number; y: number }, box: Box): boolean {
  const shrunk = { x1: box.x1 + SLACK, y1: box.y1 + SLACK, x2: box.x2 - SLACK, y2: box.y2 - SLACK };
  const dx = q.x - p.x;
  const dy = q.y - p.y;
  let t0 = 0;
  let t1 = 1;
  for (const [den, distance] of [
    [-dx, p.x - shrunk.x1],
    [dx, shrunk.x2 - p.x],
    [-dy, p.y - shrunk.y1],
    [dy, shrunk.y2 - p.y],
  ] as const) {
    if (den === 0) {
      if (distance < 0) return false;
      continue;
    }
    const t = distance / den;
    if (den < 0) t0 = Math.max(t0, t);
    else t1 = Math.min(t1, t);
    if (t0 > t1) return false;
  }
  return true;
}

/** The polyline of a path's `d` (M, L, H, V, C, absolute); curves are sampled. */
function polyline(d: string): { x: number; y: number }[] {
  const points: { x: number; y: number }[] = [];
  for (const [, cmd, args] of d.matchAll(/([A-Za-z])([^A-Za-z]*)/g)) {
    const v = (args ?? '').trim().split(/[\s,]+/).filter(Boolean).map(Number);
    const last = points[points.length - 1] ?? { x: 0, y: 0 };
    if (cmd === 'M' || cmd === 'L') for (let i = 0; i + 1 < v.length; i += 2) points.push({ x: v[i]!, y: v[i + 1]! });
    else if (cmd === 'H') points.push({ x: v[0]!, y: last.y });
    else if (cmd === 'V') points.push({ x: last.x, y: v[0]! });
    else if (cmd === 'C') {
      const [x1, y1, x2, y2, x, y] = v as [number, number, number, number, number, number];
      for (let k = 1; k <= 16; k++) {
        const t = k / 16;
        const u = 1 - t;
        points.push({
          x: u * u * u * last.x + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t * t * t * x,
          y: u * u * u * last.y + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t * t * t * y,
        });
      }
    } else throw new Error(`path command ${cmd} is not understood by this check`);
  }
  return points;
}

/** Every problem a reader would see in this diagram; empty when every label can be read. */
export function svgProblems(svg: string): string[] {
  const root = /<svg\b[^>]*>/.exec(svg);
  if (!root) return ['no <svg> element'];
  const rootAttrs = attrsOf(root[0]);
  const view = (rootAttrs.get('viewBox') ?? '').split(/[\s,]+/).map(Number);
  if (view.length !== 4 || view.some((v) => !Number.isFinite(v))) return ['the <svg> has no numeric viewBox'];
  const viewBox: Box = { x1: view[0]!, y1: view[1]!, x2: view[0]! + view[2]!, y2: view[1]! + view[3]! };
  const rootFont = Number(rootAttrs.get('font-size') ?? 16);

  const groups: Group[] = [];
  const texts: Text[] = [];
  const paths: { points: { x: number; y: number }[]; group: number }[] = [];
  const stack: number[] = [];
  // A <text> is read only as plain characters: one holding markup is not read (and so reported).
  for (const m of svg.matchAll(/<text\b([^>]*)>([^<]*)<\/text>|<(\/?)(g|rect|path)\b([^>]*?)\/?>/g)) {
    const [, textAttrs, content, closing, otherTag, otherAttrs] = m;
    const tag = textAttrs !== undefined ? 'text' : otherTag;
    const rawAttrs = textAttrs ?? otherAttrs;
    const current = stack[stack.length - 1] ?? -1;
    if (tag === 'g') {
      if (closing) {
        stack.pop();
        continue;
      }
      const attrs = attrsOf(rawAttrs!);
      const classes = (attrs.get('class') ?? '').split(/\s+/);
      const kind = classes.includes('transition') ? 'transition' : classes.includes('compound') ? 'compound' : classes.includes('state') ? 'state' : 'other';
      const name = kind === 'transition' ? `transition ${attrs.get('data-source')} → ${attrs.get('data-target')}` : `state ${attrs.get('data-path')}`;
      groups.push({ kind, name });
      stack.push(groups.length - 1);
      continue;
    }
    // Elements in <defs> (the arrowhead) are drawn elsewhere, at another scale.
    if (m.index! > svg.indexOf('<defs>') && m.index! < svg.indexOf('</defs>')) continue;
    const attrs = attrsOf(rawAttrs!);
    if (tag === 'rect') {
      const group = groups[current];
      if (group && !group.rect) {
        const x = num(attrs, 'x');
        const y = num(attrs, 'y');
        group.rect = { x1: x, y1: y, x2: x + num(attrs, 'width'), y2: y + num(attrs, 'height') };
      }
    } else if (tag === 'path') {
      if (groups[current]?.kind === 'transition') paths.push({ points: polyline(attrs.get('d') ?? ''), group: current });
    } else if (tag === 'text') {
      const text = decode(content ?? '');
      const size = Number(attrs.get('font-size') ?? rootFont);
      const x = num(attrs, 'x');
      const y = num(attrs, 'y');
      const w = text.length * CHAR_EM * size;
      const anchor = attrs.get('text-anchor') ?? 'start';
      const x1 = anchor === 'middle' ? x - w / 2 : anchor === 'end' ? x - w : x;
      texts.push({ text, group: current, box: { x1, y1: y - ASCENT_EM * size, x2: x1 + w, y2: y + DESCENT_EM * size } });
    }
  }

  const problems: string[] = [];
  // A text this reader skipped would be a text it never judged.
  const written = svg.match(/<text\b/g)?.length ?? 0;
  if (texts.length !== written) problems.push(`only ${texts.length} of the ${written} <text> elements could be read`);
  const where = (t: Text): string => `"${t.text}"${groups[t.group] ? ` (${groups[t.group]!.name})` : ''} at ${show(t.box)}`;
  texts.forEach((t, i) => {
    if (!inside(t.box, viewBox)) problems.push(`${where(t)} is cut off by the viewBox ${show(viewBox)}`);
    const own = groups[t.group];
    if (own && own.kind !== 'transition' && own.kind !== 'other' && own.rect && !inside(t.box, own.rect)) {
      problems.push(`${where(t)} overflows its state's box ${show(own.rect)}`);
    }
    for (const u of texts.slice(i + 1)) if (overlaps(t.box, u.box)) problems.push(`${where(t)} overlaps ${where(u)}`);
    groups.forEach((g, gi) => {
      if (gi === t.group || !g.rect) return;
      if (g.kind === 'state' && overlaps(t.box, g.rect)) problems.push(`${where(t)} is under the box of ${g.name}`);
      if (g.kind === 'compound' && overlaps(t.box, g.rect) && !inside(t.box, g.rect)) problems.push(`${where(t)} straddles the border of ${g.name}`);
    });
    for (const p of paths) {
      for (let k = 1; k < p.points.length; k++) {
        if (segmentCrosses(p.points[k - 1]!, p.points[k]!, t.box)) {
          problems.push(`${where(t)} is crossed by the line of ${groups[p.group]!.name}`);
          break;
        }
      }
    }
  });
  const states = groups.filter((g) => g.rect && (g.kind === 'state' || g.kind === 'compound'));
  states.forEach((a, i) => {
    if (!inside(a.rect!, viewBox)) problems.push(`the box of ${a.name} is cut off by the viewBox`);
    for (const b of states.slice(i + 1)) {
      if (!overlaps(a.rect!, b.rect!)) continue;
      // A frame holds its children; anything else sharing room is an overlap.
      const nested = (a.kind === 'compound' && inside(b.rect!, a.rect!)) || (b.kind === 'compound' && inside(a.rect!, b.rect!));
      if (!nested) problems.push(`the box of ${a.name} ${show(a.rect!)} overlaps the box of ${b.name} ${show(b.rect!)}`);
    }
  });
  return problems;
}
