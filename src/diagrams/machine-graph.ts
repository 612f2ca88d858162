import type { AnyStateMachine, StateNode } from 'xstate';

// Extracts a plain, serialisable graph from an XState v5 machine definition: its state nodes
// (document order), and every transition candidate with a readable label (`EVENT [guard]`,
// `after delayName`, `actorSrc.done`, `actorSrc.error`, `always [guard]`). Nothing here runs the
// machine except a final state's `output` function, which is called once with a stand-in
// context to read the literal `outcome` it words (see outcomeOf).

type AnyNode = StateNode<any, any>;

export type StateKind = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

export interface GraphState {
  /** Dot-joined path below the root: `requested.notifying`. */
  path: string;
  /** The node's own key: `notifying`. */
  key: string;
  /** Path of the parent state, '' for a top-level state. */
  parent: string;
  kind: StateKind;
  /** Paths of the child states, document order. */
  children: string[];
  /** Path of the initial child (compound states only). */
  initial?: string;
  /** The literal `outcome` a final state's output names, when it can be read. */
  outcome?: string;
  /** Transitions without a target (actions only), as `EVENT [guard] / action, action`. */
  internal: string[];
}

export interface GraphTransition {
  /** Source state path ('' would be the root: those are expanded to every top-level state). */
  source: string;
  target: string;
  /** `B_DIALED`, `notifyB.done [isAccepted]`, `after bDialTimeout`, `always [else]`. */
  label: string;
  /** The event part of the label, without the guard. */
  event: string;
}

export interface MachineGraph {
  id: string;
  /** Every state below the root, document order (parents before children). */
  states: GraphState[];
  /** Top-level state paths, document order. */
  topLevel: string[];
  /** The root's initial state. */
  initial: string;
  transitions: GraphTransition[];
  /** Transitions without a target declared on the root itself. */
  rootInternal: string[];
}

const pathOf = (node: AnyNode): string => node.path.join('.');

function walk(node: AnyNode): AnyNode[] {
  return [node, ...Object.values(node.states as Record<string, AnyNode>).flatMap(walk)];
}

function guardName(guard: unknown, index: number): string {
  if (typeof guard === 'string') return guard;
  if (guard && typeof guard === 'object' && 'type' in guard) return String((guard as { type: unknown }).type);
  return `inline ${index + 1}`;
}

function eventLabel(node: AnyNode, eventType: string): string {
  const after = ((node.after ?? []) as { eventType: string; delay: unknown }[]).find((a) => a.eventType === eventType);
  if (after) return typeof after.delay === 'number' ? `after ${after.delay}ms` : `after ${String(after.delay)}`;
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  if (actor) {
    const invoke = ((node.invoke ?? []) as { id: string; src: unknown }[]).find((i) => i.id === actor[2]);
    const name = typeof invoke?.src === 'string' ? invoke.src : actor[2];
    return `${name}.${actor[1]}`;
  }
  if (/^xstate\.done\.state\./.test(eventType)) return `${node.key}.done`;
  return eventType;
}

function actionNames(actions: unknown): string[] {
  const list = Array.isArray(actions) ? actions : actions === undefined ? [] : [actions];
  return list.flatMap((a) => {
    const type = typeof a === 'string' ? a : a && (typeof a === 'object' || typeof a === 'function') ? (a as { type?: unknown }).type : undefined;
    return typeof type === 'string' && !type.startsWith('xstate.') ? [type] : [];
  });
}

/** A context/event stand-in on which any property read, call or coercion succeeds. */
function standIn(): unknown {
  const target = function () {};
  const proxy: unknown = new Proxy(target, {
    get: (_t, prop) => {
      if (prop === Symbol.toPrimitive) return () => '';
      if (prop === 'length') return 0;
      if (prop === Symbol.iterator) return function* () {};
      return proxy;
    },
    apply: () => proxy,
  });
  return proxy;
}

/** A final state's `outcome`: read from a literal output, or from what its output function returns. */
function outcomeOf(node: AnyNode): string | undefined {
  const output = (node as { output?: unknown }).output;
  let value: unknown = output;
  if (typeof output === 'function') {
    try {
      value = output({ context: standIn(), event: standIn(), self: standIn(), system: standIn() }, undefined);
    } catch {
      return undefined;
    }
  }
  if (value && typeof value === 'object' && typeof (value as { outcome?: unknown }).outcome === 'string') {
    return (value as { outcome: string }).outcome;
  }
  return undefined;
}

export function machineGraph(machine: AnyStateMachine): MachineGraph {
  const root = machine.root as AnyNode;
  const nodes = walk(root).filter((n) => n !== root);
  const states: GraphState[] = nodes.map((n) => {
    const children = Object.values(n.states as Record<string, AnyNode>).map(pathOf);
    const state: GraphState = {
      path: pathOf(n),
      key: n.key,
      parent: n.path.slice(0, -1).join('.'),
      kind: n.type as StateKind,
      children,
      internal: [],
    };
    const initial = (n.initial as { target?: readonly AnyNode[] } | undefined)?.target?.[0];
    if (n.type === 'compound' && initial) state.initial = pathOf(initial);
    if (n.type === 'final') {
      const outcome = outcomeOf(n);
      if (outcome !== undefined) state.outcome = outcome;
    }
    return state;
  });
  const byPath = new Map(states.map((s) => [s.path, s]));
  const topLevel = states.filter((s) => s.parent === '').map((s) => s.path);
  const transitions: GraphTransition[] = [];
  const rootInternal: string[] = [];

  // Handlers each top-level state declares itself (unguarded), which shadow the root's.
  const ownUnguarded = (path: string, eventType: string): boolean => {
    const node = walk(root).find((n) => pathOf(n) === path);
    const defs = (node?.transitions as Map<string, { guard?: unknown }[]> | undefined)?.get(eventType) ?? [];
    return defs.some((d) => d.guard === undefined);
  };

  for (const node of walk(root)) {
    const source = pathOf(node);
    const candidates: { eventType: string; event: string; defs: { guard?: unknown; target?: AnyNode[]; actions?: unknown }[] }[] = [];
    for (const [eventType, defs] of node.transitions as Map<string, { guard?: unknown; target?: AnyNode[]; actions?: unknown }[]>) {
      candidates.push({ eventType, event: eventLabel(node, eventType), defs });
    }
    const always = (node.always ?? []) as { guard?: unknown; target?: AnyNode[]; actions?: unknown }[];
    if (always.length) candidates.push({ eventType: '', event: 'always', defs: always });

    for (const { eventType, event, defs } of candidates) {
      defs.forEach((def, index) => {
        const guarded = defs.length > 1 || def.guard !== undefined;
        const label = guarded ? `${event} [${def.guard === undefined ? 'else' : guardName(def.guard, index)}]` : event;
        const targets = (def.target ?? []).map(pathOf);
        if (targets.length === 0) {
          const names = actionNames(def.actions);
          const text = names.length ? `${label} / ${names.join(', ')}` : label;
          if (source === '') rootInternal.push(text);
          else byPath.get(source)!.internal.push(text);
          return;
        }
        for (const target of targets) {
          if (source !== '') {
            transitions.push({ source, target, label, event });
            continue;
          }
          // The root's handlers apply in every state: drawn from each top-level state that is
          // not final and does not handle the event itself.
          for (const top of topLevel) {
            const s = byPath.get(top)!;
            if (s.kind === 'final' || top === target || ownUnguarded(top, eventType)) continue;
            transitions.push({ source: top, target, label, event });
          }
        }
      });
    }
  }
  const rootInitial = (root.initial as { target?: readonly AnyNode[] } | undefined)?.target?.[0];
  return {
    id: machine.id,
    states,
    topLevel,
    initial: rootInitial ? pathOf(rootInitial) : (topLevel[0] ?? ''),
    transitions,
    rootInternal,
  };
}

/** Every event type the machine's transitions name (delays, invokes and `always` excluded). */
export function plainEvents(graph: MachineGraph): string[] {
  const events = new Set<string>();
  for (const t of graph.transitions) if (!/^(after |always$)|\.(done|error)$/.test(t.event)) events.add(t.event);
  for (const s of graph.states) for (const i of s.internal) events.add(i.split(/[ /]/)[0]!);
  return [...events].sort();
}
