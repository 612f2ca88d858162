import type { ELK, ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api.js';
import { elkGraph, frameLines, initId, leafLines, mergedEdges, ROOT_ID } from './elk-graph.js';
import type { MachineGraph, StateKind } from './machine-graph.js';
import { LINE_H, TITLE_FONT_SIZE, textWidth } from './metrics.js';

// Runs ELK's layered layout on a machine graph and turns its answer into a `Diagram`: every box,
// dot, edge route and label in absolute coordinates, with the text each one shows, ready for the
// SVG writer. ELK gives positions relative to each node's parent (and each edge's container);
// everything is made absolute here, and rounded to one decimal so the bytes are stable.

export interface Point {
  x: number;
  y: number;
}

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface DiagramState {
  path: string;
  kind: StateKind;
  rect: Rect;
  /** Leaf states: the lines inside the box; compound states: the lines of the title band. */
  lines: string[];
}

export interface DiagramEdge {
  source: string;
  target: string;
  /** The route, from the source's border to the target's border. */
  points: Point[];
  label?: { lines: string[]; rect: Rect };
}

export interface Diagram {
  id: string;
  title: { text: string; x: number; y: number };
  width: number;
  height: number;
  /** Document order: a compound state comes before its children. */
  states: DiagramState[];
  initials: Rect[];
  edges: DiagramEdge[];
}

const MARGIN = 20;
const TITLE_H = 30;

let elk: Promise<ELK> | undefined;
/** ELK is loaded on first use only: a process that never draws a diagram never parses it. */
function layoutEngine(): Promise<ELK> {
  // A CommonJS module: its `default` export is the constructor on `module.exports.default`.
  elk ??= import('elkjs/lib/elk.bundled.js').then(({ default: bundle }) => new bundle.default());
  return elk;
}

const round = (v: number): number => {
  const r = Math.round(v * 10) / 10;
  return Object.is(r, -0) ? 0 : r;
};

export async function layoutMachine(graph: MachineGraph): Promise<Diagram> {
  const laid = await (await layoutEngine()).layout(elkGraph(graph));
  const title = `machine ${graph.id}`;
  const origin = { x: MARGIN, y: MARGIN + TITLE_H };

  // Absolute top-left corner of every node, by id.
  const nodes = new Map<string, { node: ElkNode; at: Point }>();
  const visit = (node: ElkNode, at: Point): void => {
    nodes.set(node.id, { node, at });
    for (const child of node.children ?? []) visit(child, { x: at.x + (child.x ?? 0), y: at.y + (child.y ?? 0) });
  };
  visit(laid, origin);
  const rectOf = (id: string): Rect => {
    const { node, at } = nodes.get(id)!;
    return { x: round(at.x), y: round(at.y), w: round(node.width ?? 0), h: round(node.height ?? 0) };
  };

  const states: DiagramState[] = graph.states.map((s) => ({
    path: s.path,
    kind: s.kind,
    rect: rectOf(s.path),
    lines: s.children.length ? frameLines(s) : leafLines(s),
  }));
  const initials = [initId(''), ...graph.states.filter((s) => s.initial).map((s) => initId(s.path))].map(rectOf);

  const labelsById = new Map(mergedEdges(graph).map((e) => [e.id, e.labels]));
  const allEdges: ElkExtendedEdge[] = [];
  for (const { node } of nodes.values()) allEdges.push(...(node.edges ?? []));
  const edges: DiagramEdge[] = allEdges.map((e) => {
    // Routes and labels are relative to the edge's container (the root when ELK names none).
    const at = nodes.get(e.container ?? ROOT_ID)!.at;
    const section = e.sections![0]!;
    const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint].map((p) => ({ x: round(at.x + p.x), y: round(at.y + p.y) }));
    const out: DiagramEdge = { source: e.sources[0]!, target: e.targets[0]!, points };
    const label = e.labels?.[0];
    const lines = labelsById.get(e.id);
    if (label && lines) {
      out.label = { lines, rect: { x: round(at.x + label.x!), y: round(at.y + label.y!), w: round(label.width!), h: round(label.height!) } };
    }
    return out;
  });

  const width = Math.max(round(laid.width ?? 0), textWidth(title, TITLE_FONT_SIZE)) + MARGIN * 2;
  const height = round(laid.height ?? 0) + origin.y + MARGIN;
  return { id: graph.id, title: { text: title, x: MARGIN, y: MARGIN + LINE_H }, width: round(width), height: round(height), states, initials, edges };
}
