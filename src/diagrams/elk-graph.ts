import type { ElkExtendedEdge, ElkNode, LayoutOptions } from 'elkjs/lib/elk-api.js';
import type { GraphState, MachineGraph } from './machine-graph.js';
import { LINE_H, linesSize, textWidth } from './metrics.js';

// The input ELK lays out for one machine: every state a node (a compound state a node holding its
// children, with room at its top for its title), a small node for each initial-state dot, and
// one edge per pair of states joined by transitions, labelled with all their event labels, one
// per line. Pure: sizes come from the text estimates in metrics.ts, nothing runs ELK here.

export const ROOT_ID = '#root';
export const initId = (container: string): string => `#init:${container}`;

export const PAD_X = 12;
export const PAD_Y = 8;
export const INIT_SIZE = 12;
/** Room around an edge label's text, so its white backing does not touch the text. */
export const LABEL_PAD = 3;
const FRAME_PAD = 16;

/** What a leaf state's box says: its name, then its outcome (final states) and its internal transitions. */
export function leafLines(s: GraphState): string[] {
  const lines = [s.key];
  if (s.kind === 'final') lines.push(s.outcome !== undefined ? `outcome: ${s.outcome}` : 'final');
  return [...lines, ...s.internal];
}

/** What a compound state's title band says: its name, then its internal transitions. */
export function frameLines(s: GraphState): string[] {
  return [s.key, ...s.internal];
}

export const frameTitleHeight = (s: GraphState): number => frameLines(s).length * LINE_H + PAD_Y * 2;

/** One edge per (source, target): transitions between the same two states share one label. */
export interface MergedEdge {
  id: string;
  source: string;
  target: string;
  labels: string[];
}

export function mergedEdges(graph: MachineGraph): MergedEdge[] {
  const edges: MergedEdge[] = [];
  for (const t of graph.transitions) {
    const found = edges.find((e) => e.source === t.source && e.target === t.target);
    if (found) found.labels.push(t.label);
    else edges.push({ id: `#edge:${edges.length}`, source: t.source, target: t.target, labels: [t.label] });
  }
  return edges;
}

const SPACING: LayoutOptions = {
  'elk.spacing.nodeNode': '28',
  'elk.layered.spacing.nodeNodeBetweenLayers': '36',
  'elk.spacing.edgeNode': '16',
  'elk.spacing.edgeEdge': '12',
  'elk.layered.spacing.edgeNodeBetweenLayers': '16',
  'elk.layered.spacing.edgeEdgeBetweenLayers': '12',
  'elk.spacing.edgeLabel': '4',
  'elk.spacing.labelLabel': '4',
};

const ROOT_OPTIONS: LayoutOptions = {
  'elk.algorithm': 'layered',
  'elk.direction': 'DOWN',
  // Transitions cross compound states' borders: one layout over every level routes them.
  'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.edgeLabels.placement': 'CENTER',
  // Document order breaks ties, so the drawing follows the machine's own reading order.
  'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
  'elk.randomSeed': '1',
  'elk.padding': '[top=0,left=0,bottom=0,right=0]',
  ...SPACING,
};

export function elkGraph(graph: MachineGraph): ElkNode {
  const byPath = new Map(graph.states.map((s) => [s.path, s]));
  const initNode = (container: string): ElkNode => ({
    id: initId(container),
    width: INIT_SIZE,
    height: INIT_SIZE,
    layoutOptions: { 'elk.layered.layering.layerConstraint': 'FIRST' },
  });
  const node = (s: GraphState): ElkNode => {
    if (s.children.length) {
      const lines = frameLines(s);
      const children = s.children.map((p) => node(byPath.get(p)!));
      return {
        id: s.path,
        layoutOptions: {
          ...SPACING,
          'elk.padding': `[top=${frameTitleHeight(s)},left=${FRAME_PAD},bottom=${FRAME_PAD},right=${FRAME_PAD}]`,
          'elk.nodeSize.constraints': 'MINIMUM_SIZE',
          'elk.nodeSize.minimum': `(${Math.max(...lines.map((l) => textWidth(l))) + PAD_X * 2}, ${frameTitleHeight(s) + FRAME_PAD})`,
        },
        children: s.initial ? [initNode(s.path), ...children] : children,
      };
    }
    const { w, h } = linesSize(leafLines(s));
    const out: ElkNode = { id: s.path, width: w + PAD_X * 2, height: h + PAD_Y * 2 };
    // Final states have no way out: on the last layer, every edge to them runs downward.
    if (s.kind === 'final') out.layoutOptions = { 'elk.layered.layering.layerConstraint': 'LAST' };
    return out;
  };
  const edges: ElkExtendedEdge[] = [
    { id: `#edge:init:`, sources: [initId('')], targets: [graph.initial] },
    ...graph.states.filter((s) => s.initial).map((s) => ({ id: `#edge:init:${s.path}`, sources: [initId(s.path)], targets: [s.initial!] })),
    ...mergedEdges(graph).map((e) => {
      const { w, h } = linesSize(e.labels);
      return {
        id: e.id,
        sources: [e.source],
        targets: [e.target],
        labels: [{ id: `${e.id}:label`, text: e.labels.join('\n'), width: w + LABEL_PAD * 2, height: h }],
      };
    }),
  ];
  return {
    id: ROOT_ID,
    layoutOptions: ROOT_OPTIONS,
    children: [initNode(''), ...graph.topLevel.map((p) => node(byPath.get(p)!))],
    edges,
  };
}
