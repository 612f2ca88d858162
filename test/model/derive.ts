import { createTestModel, getPathsFromEvents } from '@xstate/graph';
import { createMachine, type AnyStateMachine, type EventObject, type StateNode } from 'xstate';

// The abstract test model is DERIVED from a real machine, never written by hand: each atomic
// state becomes a model state, and every way the real machine can leave it (its own and its
// ancestors' `on`, each invoke's done/error, each named delay, each guarded candidate) becomes a
// plain event. createTestModel refuses `invoke` and `after`, which is why they turn into events;
// and because nothing here is hand-written, a state or transition added to machines/*.ts changes
// the model, hence the generated paths, hence what the model tests must drive.

type AnyNode = StateNode<any, any>;

/** One transition candidate of the real machine: a source node, an event type and a guard slot. */
export interface RealTransition {
  /** `<source node path> --<label>--> <targets>`: stable, readable, unique per machine. */
  key: string;
  /** The source state node's path below the root ('' for the root). */
  source: string;
  /** The event type the real actor receives (`xstate.done.actor.notifyB`, `B_DIALED`, ...). */
  eventType: string;
  /** The model's name for it: `notifyB.done[isAccepted]`, `after.bDialTimeout`, `B_DIALED`. */
  label: string;
  /** Target node paths; empty for a targetless transition (actions only). */
  targets: string[];
}

export interface ModelStep {
  /** Abstract event, i.e. RealTransition.label (`+`-joined with the eventless ones it folds). */
  event: string;
  /** Atomic state paths ('requested.notifying'), before and after. */
  from: string;
  to: string;
  real: RealTransition;
  /** Eventless (`always`) transitions the same macrostep takes after `real`, in order. */
  eventless: RealTransition[];
  /** Transient leaves the macrostep passes through on its way to `to`. */
  via: string[];
}

export interface ModelPath {
  name: string;
  steps: ModelStep[];
}

export interface DerivedModel {
  machine: AnyStateMachine;
  /** Every state node below the root, by path. */
  states: string[];
  transitions: RealTransition[];
  /** Atomic states, i.e. the abstract model's states. */
  leaves: string[];
  initial: string;
  finals: Set<string>;
  /** The abstract machine handed to @xstate/graph. */
  abstract: AnyStateMachine;
  /** `${leaf}|${label}` → the real transition and the abstract target leaf. */
  edges: Map<string, Edge>;
}

interface Edge {
  real: RealTransition;
  to: string;
  eventless: RealTransition[];
  via: string[];
}

const pathOf = (node: AnyNode): string => node.path.join('.');

function allNodes(node: AnyNode): AnyNode[] {
  return [node, ...Object.values(node.states as Record<string, AnyNode>).flatMap(allNodes)];
}

function guardName(guard: unknown, index: number): string {
  if (typeof guard === 'string') return guard;
  if (guard && typeof guard === 'object' && 'type' in guard) return String((guard as { type: unknown }).type);
  // An inline guard has no name worth printing; its slot among the candidates identifies it.
  return `#${index}`;
}

function labelOf(node: AnyNode, eventType: string): string {
  const after = (node.after as { eventType: string; delay: unknown }[]).find((a) => a.eventType === eventType);
  if (after) return `after.${String(after.delay)}`;
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) {
    const invoke = (node.invoke as { id: string; src: unknown }[]).find((i) => i.id === actor[2]);
    const name = typeof invoke?.src === 'string' ? invoke.src : actor[2];
    return `${name}.${actor[1]}`;
  }
  const stateDone = /^xstate\.done\.state\.(.+)$/.exec(eventType);
  if (stateDone) return `${node.key}.done`;
  return eventType;
}

/** Every transition candidate of the machine, as the real actor would select among them. */
export function realTransitions(machine: AnyStateMachine): RealTransition[] {
  const out: RealTransition[] = [];
  for (const node of allNodes(machine.root as AnyNode)) {
    for (const [eventType, defs] of node.transitions as Map<string, { guard?: unknown; target?: AnyNode[] }[]>) {
      const base = labelOf(node, eventType);
      defs.forEach((def, index) => {
        const guarded = defs.length > 1 || def.guard !== undefined;
        const label = guarded ? `${base}[${def.guard === undefined ? 'else' : guardName(def.guard, index)}]` : base;
        const targets = (def.target ?? []).map(pathOf);
        const source = pathOf(node);
        out.push({ key: `${source || '(root)'} --${label}--> ${targets.join(',') || '(stays)'}`, source, eventType, label, targets });
      });
    }
    // Eventless transitions have no event of their own: deriveModel folds them into the edge
    // that enters their (transient) state, one abstract edge per candidate.
    const always = (node.always ?? []) as { guard?: unknown; target?: AnyNode[] }[];
    always.forEach((def, index) => {
      const source = pathOf(node);
      const targets = (def.target ?? []).map(pathOf);
      const guarded = always.length > 1 || def.guard !== undefined;
      const label = guarded ? `always[${def.guard === undefined ? 'else' : guardName(def.guard, index)}]` : 'always';
      out.push({ key: `${source || '(root)'} --${label}--> ${targets.join(',') || '(stays)'}`, source, eventType: '', label, targets });
    });
  }
  return out;
}

function initialLeaf(node: AnyNode): AnyNode {
  if (node.type === 'parallel' || node.type === 'history') {
    throw new Error(`${node.id}: ${node.type} states are not supported by the model derivation yet`);
  }
  if (node.type !== 'compound') return node;
  const initial = (node.initial as { target: readonly AnyNode[] }).target[0];
  if (!initial) throw new Error(`${node.id} has no initial state`);
  return initialLeaf(initial);
}

/**
 * `exclude` lists abstract edges (`${leaf}|${label}`) the machine's own context rules out, e.g. an
 * eventless choice whose guard can never hold after that edge: they are left out of the model, so
 * no generated path goes through them.
 */
export function deriveModel(machine: AnyStateMachine, exclude: ReadonlySet<string> = new Set()): DerivedModel {
  const root = machine.root as AnyNode;
  const nodes = allNodes(root);
  const transitions = realTransitions(machine);
  const bySource = new Map<string, RealTransition[]>();
  for (const t of transitions) bySource.set(t.source, [...(bySource.get(t.source) ?? []), t]);
  const byPath = new Map(nodes.map((n) => [pathOf(n), n]));
  const leaves = nodes.filter((n) => n !== root && Object.keys(n.states).length === 0);
  const finals = new Set(leaves.filter((n) => n.type === 'final').map(pathOf));
  const edges = new Map<string, Edge>();
  const alwaysOf = (leaf: string) => (bySource.get(leaf) ?? []).filter((t) => t.eventType === '');
  // A leaf with eventless transitions is transient: the real machine never rests in it, so an
  // edge entering it becomes one abstract edge per candidate it may leave by (chains included,
  // in candidate order up to the first unguarded one), each named `${label}+${candidate}`.
  const transient = new Set(leaves.map(pathOf).filter((l) => alwaysOf(l).length > 0));
  const settle = (leaf: string, seen: string[] = []): { labels: string[]; eventless: RealTransition[]; via: string[]; to: string }[] => {
    if (!transient.has(leaf)) return [{ labels: [], eventless: [], via: [], to: leaf }];
    if (seen.includes(leaf)) throw new Error(`${machine.id}: eventless cycle through ${leaf}`);
    const out: { labels: string[]; eventless: RealTransition[]; via: string[]; to: string }[] = [];
    for (const t of alwaysOf(leaf)) {
      const targetNode = t.targets[0] === undefined ? undefined : byPath.get(t.targets[0]);
      const next = targetNode ? pathOf(initialLeaf(targetNode)) : leaf;
      if (next === leaf) throw new Error(`${machine.id}: targetless eventless transition in ${leaf}`);
      for (const rest of settle(next, [...seen, leaf])) {
        out.push({ labels: [t.label, ...rest.labels], eventless: [t, ...rest.eventless], via: [leaf, ...rest.via], to: rest.to });
      }
      if (t.label === 'always' || t.label.endsWith('[else]')) break;
    }
    return out;
  };

  // State keys of the abstract machine cannot contain dots (they would read as paths).
  const keyOf = (path: string) => path.replaceAll('.', '/');
  const states: Record<string, { type?: 'final'; on?: Record<string, string> }> = {};
  for (const leaf of leaves) {
    const from = pathOf(leaf);
    if (finals.has(from)) {
      states[keyOf(from)] = { type: 'final' };
      continue;
    }
    const on: Record<string, string> = {};
    const add = (label: string, edge: Edge) => {
      if (exclude.has(`${from}|${label}`)) return;
      on[label] = keyOf(edge.to);
      edges.set(`${from}|${label}`, edge);
    };
    if (transient.has(from)) {
      // Only the initial state can be a resting transient one (nothing entered it by an edge):
      // its abstract edges are its eventless candidates, taken as the machine starts.
      for (const s of settle(from)) {
        const [first, ...rest] = s.eventless;
        add(s.labels.join('+'), { real: first!, to: s.to, eventless: rest, via: s.via.slice(1) });
      }
      states[keyOf(from)] = { on };
      continue;
    }
    const settled = new Set<string>();
    // xstate picks the deepest node with an enabled candidate; an unguarded candidate ends the
    // search for that event type, so ancestors' candidates for it are shadowed.
    for (let node: AnyNode | undefined = leaf; node; node = node.parent as AnyNode | undefined) {
      for (const t of bySource.get(pathOf(node)) ?? []) {
        if (settled.has(t.eventType) || t.label === 'always') continue;
        const targetNode = t.targets[0] === undefined ? undefined : byPath.get(t.targets[0]);
        const to = targetNode ? pathOf(initialLeaf(targetNode)) : from;
        for (const s of settle(to)) add([t.label, ...s.labels].join('+'), { real: t, to: s.to, eventless: s.eventless, via: s.via });
        if (!t.label.includes('[') || t.label.endsWith('[else]')) settled.add(t.eventType);
      }
    }
    states[keyOf(from)] = { on };
  }
  const initial = pathOf(initialLeaf(root));
  const abstract = createMachine({ id: `${machine.id}-model`, initial: keyOf(initial), states });
  return {
    machine,
    states: nodes.filter((n) => n !== root).map(pathOf),
    transitions,
    leaves: leaves.map(pathOf),
    initial,
    finals,
    abstract,
    edges,
  };
}

type AbstractPath = { steps: { event: EventObject; state: { value: unknown } }[] };

function toModelPath(model: DerivedModel, path: AbstractPath, name?: string): ModelPath {
  let from = model.initial;
  const steps: ModelStep[] = path.steps
    .filter((s) => s.event.type !== 'xstate.init')
    .map((s) => {
      const edge = model.edges.get(`${from}|${s.event.type}`);
      if (!edge) throw new Error(`${model.machine.id}: no ${s.event.type} from ${from}`);
      const step = { event: s.event.type, from, to: edge.to, real: edge.real, eventless: edge.eventless, via: edge.via };
      from = edge.to;
      return step;
    });
  const last = steps.at(-1);
  const described = steps.map((s) => s.event).join(' → ') || '(start)';
  return { name: name ?? (last ? `${last.from} + ${last.event} → ${last.to} (${described})` : described), steps };
}

/**
 * One path per abstract edge: the shortest way to its source, then the edge. The test model's
 * states are made distinct by the edge that entered them (self-loops included, which
 * createTestModel's default serialization folds away), so getShortestPaths reaches every edge;
 * paths that are a prefix of a longer one are dropped by @xstate/graph's deduplication.
 */
export function generatePaths(model: DerivedModel, scenarios: Record<string, string[]> = {}): ModelPath[] {
  const testModel = createTestModel(model.abstract, {
    serializeTransition: (state, event, prev) =>
      event && prev ? ` via ${event.type} from ${JSON.stringify(prev.value)}` : '',
  });
  const generated = testModel
    .getShortestPaths()
    .filter((p) => p.steps.some((s) => s.event.type !== 'xstate.init'))
    .map((p) => toModelPath(model, p as unknown as AbstractPath));
  // Named scenarios are checked against the same derived model: an event sequence the machine
  // no longer allows fails here instead of silently testing something else.
  const named = Object.entries(scenarios).map(([name, events]) => {
    const found = getPathsFromEvents(model.abstract, events.map((type) => ({ type })));
    const full = found.find((p) => p.steps.filter((s) => s.event.type !== 'xstate.init').length === events.length);
    if (!found.length || !full) throw new Error(`${model.machine.id}: scenario "${name}" (${events.join(' → ')}) is not a path of the machine`);
    return toModelPath(model, full as unknown as AbstractPath, name);
  });
  return [...generated, ...named].sort((a, b) => a.name.localeCompare(b.name));
}

export interface Coverage {
  states: { covered: string[]; missing: string[] };
  transitions: { covered: string[]; missing: string[] };
}

/** Which real states and transitions the given steps reach; the initial state counts as reached. */
export function coverageOf(model: DerivedModel, steps: ModelStep[]): Coverage {
  const reachedLeaves = new Set([model.initial, ...steps.flatMap((s) => [s.from, ...s.via, s.to])]);
  // A compound state is reached whenever one of its descendants is.
  const coveredStates = model.states.filter((s) => [...reachedLeaves].some((l) => l === s || l.startsWith(`${s}.`)));
  const taken = new Set(steps.flatMap((s) => [s.real, ...s.eventless].map((t) => t.key)));
  return {
    states: { covered: coveredStates, missing: model.states.filter((s) => !coveredStates.includes(s)) },
    transitions: {
      covered: model.transitions.filter((t) => taken.has(t.key)).map((t) => t.key),
      missing: model.transitions.filter((t) => !taken.has(t.key)).map((t) => t.key),
    },
  };
}
