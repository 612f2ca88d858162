import type { InspectionEvent } from 'xstate';
import type { BrokeringContext, BrokeringOutput } from '../../machines/brokering.js';
import type { GameSessionContext, GameSessionOutput } from '../../machines/game-session.js';
import { eventDetail, statePath, type SessionLog } from './session-log.js';

// Translate what each process sees into SessionLog calls: the proxy's live brokering actors
// through XState's inspection API, and the games service's pure transitions through its
// onTransition hook (it keeps no live actor).

/** xstate's internal event types, worded as the diagrams word them. */
export function eventLabel(type: string): string {
  if (!type.startsWith('xstate.')) return type;
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(type);
  if (actor) return `${actor[2]}.${actor[1]}`;
  const after = /^xstate\.after\.([^.]+)\./.exec(type);
  if (after) return `after ${after[1]}`;
  return type;
}

/**
 * An `inspect` hook for brokering actors. Only each root actor's snapshots are read (children,
 * the splicer and the bus calls, show up as the events they send their parent), and only the
 * event's small fields are kept: B_DIALED's socket is named, never held.
 */
export function brokeringFeed(log: SessionLog): {
  inspect: (ev: InspectionEvent) => void;
  relayed: (direction: 'aToB' | 'bToA', bytes: number, sessionId: string) => void;
} {
  return {
    inspect(ev) {
      if (ev.type !== '@xstate.snapshot' || ev.actorRef.sessionId !== ev.rootId) return;
      const snap = ev.snapshot as unknown as { value: unknown; status: string; context: BrokeringContext; output?: BrokeringOutput };
      const state = statePath(snap.value);
      const id = snap.context.sessionId;
      if (!log.has(id)) {
        log.open(id, { machine: 'brokering', parties: `${snap.context.a} → ${snap.context.b}`, state, event: ev.event.type, context: snap.context });
      } else {
        log.step(id, { event: eventLabel(ev.event.type), state, context: snap.context, detail: eventDetail(ev.event) });
      }
      if (snap.status !== 'active') log.finish(id, snap.output?.outcome ?? snap.status);
    },
    relayed(direction, bytes, sessionId) {
      log.addBytes(sessionId, direction, bytes);
    },
  };
}

/** What the games service reports of each step it wrote: a snapshot of the game machine. */
export interface GameStepSnapshot {
  value: unknown;
  status: string;
  context: GameSessionContext;
  output?: unknown;
}

/**
 * The games service's onTransition hook: one session per game name. A game the log has not seen
 * (registered before this process started: games outlive instances) is opened at its first step.
 */
export function gamesFeed(log: SessionLog): (game: string, event: { type: string }, snapshot: GameStepSnapshot) => void {
  return (game, event, snapshot) => {
    const { context } = snapshot;
    const parties = `host + ${context.guests.length} guest${context.guests.length === 1 ? '' : 's'}`;
    const state = statePath(snapshot.value);
    const detail = eventDetail(event);
    const step = { event: event.type, state, context, parties, ...(detail ? { detail } : {}) };
    if (event.type === 'xstate.init' || !log.has(game)) log.open(game, { machine: 'game', ...step });
    else log.step(game, step);
    // A rename moves the game to a new key: the old name's session ends, the new one goes on.
    if (event.type === 'RENAMED' && context.name !== game) {
      log.finish(game, `renamed to ${context.name}`);
      log.open(context.name, { machine: 'game', ...step });
    }
    if (snapshot.status !== 'active') log.finish(game, (snapshot.output as GameSessionOutput | undefined)?.outcome ?? snapshot.status);
  };
}
