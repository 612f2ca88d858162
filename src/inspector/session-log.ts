import { DEFAULT_INSPECTOR_MAX_LIVE } from '../core/constants.js';
import { redact } from './redact.js';

// What the inspector knows: every live session and the most recently finished ones, each with its
// current state and a bounded timeline of the events it processed. Pure bookkeeping (no I/O, no
// xstate): the feeds translate what a process sees into open/step/finish calls, the HTTP layer
// reads and subscribes.
//
// Kept cheap for the common case where nobody is watching: a step stores the event's type, its
// primitive fields and two state names, and nothing is redacted, serialised or scheduled until a
// subscriber exists. Redaction happens on the way out, in summary()/detail()/changes.

export interface TimelineEntry {
  /** Per-session sequence number, so a page can append pushed entries without duplicates. */
  seq: number;
  at: number;
  event: string;
  from: string;
  to: string;
  /** The event's own fields (primitives, short lists), redacted on the way out. */
  detail?: Record<string, unknown>;
}

export interface SessionSummary {
  id: string;
  /** The machine's id, which names its diagram. */
  machine: string;
  parties: string;
  state: string;
  status: 'live' | 'finished';
  outcome?: string;
  startedAt: number;
  updatedAt: number;
  finishedAt?: number;
  bytes?: { aToB: number; bToA: number };
}

export interface SessionDetail {
  summary: SessionSummary;
  timeline: TimelineEntry[];
  /** Timeline entries dropped from the front to keep it bounded. */
  dropped: number;
  context: unknown;
}

export interface SessionChange {
  summary: SessionSummary;
  /** Entries added since the previous push. */
  entries: TimelineEntry[];
}

export interface SessionLogOptions {
  maxFinished: number;
  maxTimeline: number;
  /**
   * Live sessions kept at most; past it the one updated longest ago is dropped. A proxy's live
   * sessions end by themselves, but a games instance never sees the end of a game another
   * instance deleted, so without this bound such games would pile up.
   */
  maxLive?: number;
  now?: () => number;
  /** How long changes gather before one push to subscribers. */
  flushMs?: number;
  /** Injected so tests can flush by hand. */
  schedule?: (fn: () => void, ms: number) => void;
}

interface Rec {
  id: string;
  machine: string;
  parties: string;
  state: string;
  outcome: string | undefined;
  startedAt: number;
  updatedAt: number;
  finishedAt: number | undefined;
  bytes: { aToB: number; bToA: number } | undefined;
  context: unknown;
  timeline: TimelineEntry[];
  dropped: number;
  seq: number;
  /** Highest seq already pushed to subscribers. */
  pushed: number;
}

export type SessionListener = (changes: SessionChange[]) => void;

export class SessionLog {
  readonly #sessions = new Map<string, Rec>();
  /** Finished session ids, oldest first. */
  readonly #finished: string[] = [];
  readonly #listeners = new Set<SessionListener>();
  readonly #dirty = new Set<string>();
  #flushScheduled = false;
  readonly #opts: Required<Omit<SessionLogOptions, 'schedule'>> & Pick<SessionLogOptions, 'schedule'>;

  constructor(options: SessionLogOptions) {
    this.#opts = { now: Date.now, flushMs: 100, maxLive: DEFAULT_INSPECTOR_MAX_LIVE, ...options };
  }

  /** Starts a session (or restarts one whose id came back, e.g. a game registered again). */
  open(id: string, s: { machine: string; parties: string; state: string; event: string; context?: unknown; detail?: Record<string, unknown> }): void {
    const at = this.#opts.now();
    const old = this.#sessions.get(id);
    if (old?.finishedAt !== undefined) this.#finished.splice(this.#finished.indexOf(id), 1);
    const rec: Rec = {
      id,
      machine: s.machine,
      parties: s.parties,
      state: s.state,
      outcome: undefined,
      startedAt: at,
      updatedAt: at,
      finishedAt: undefined,
      bytes: undefined,
      context: s.context,
      timeline: [],
      dropped: 0,
      seq: 0,
      pushed: 0,
    };
    this.#sessions.set(id, rec);
    if (this.liveCount() > this.#opts.maxLive) this.#dropStalestLive(id);
    this.#append(rec, { event: s.event, from: '', to: s.state, detail: s.detail });
  }

  /** One event the session processed, and the state it is in afterwards. */
  step(id: string, s: { event: string; state: string; context?: unknown; parties?: string; detail?: Record<string, unknown> }): void {
    const rec = this.#sessions.get(id);
    if (!rec) return;
    const from = rec.state;
    rec.state = s.state;
    if (s.context !== undefined) rec.context = s.context;
    if (s.parties !== undefined) rec.parties = s.parties;
    this.#append(rec, { event: s.event, from, to: s.state, detail: s.detail });
  }

  /** Counts relayed bytes; called per chunk, so it does as little as possible. */
  addBytes(id: string, direction: 'aToB' | 'bToA', n: number): void {
    const rec = this.#sessions.get(id);
    if (!rec) return;
    rec.bytes ??= { aToB: 0, bToA: 0 };
    rec.bytes[direction] += n;
    this.#touch(rec);
  }

  /** The session ended; it stays listed until `maxFinished` newer ones have ended. */
  finish(id: string, outcome: string): void {
    const rec = this.#sessions.get(id);
    if (!rec || rec.finishedAt !== undefined) return;
    rec.outcome = outcome;
    rec.finishedAt = this.#opts.now();
    rec.updatedAt = rec.finishedAt;
    this.#finished.push(id);
    while (this.#finished.length > this.#opts.maxFinished) {
      const gone = this.#finished.shift()!;
      this.#sessions.delete(gone);
      this.#dirty.delete(gone);
    }
    this.#touch(rec);
  }

  has(id: string): boolean {
    return this.#sessions.has(id);
  }

  liveCount(): number {
    return this.#sessions.size - this.#finished.length;
  }

  /** Every known session, newest first. */
  list(): SessionSummary[] {
    return [...this.#sessions.values()].sort((a, b) => b.startedAt - a.startedAt).map(summaryOf);
  }

  detail(id: string): SessionDetail | undefined {
    const rec = this.#sessions.get(id);
    if (!rec) return undefined;
    return { summary: summaryOf(rec), timeline: rec.timeline.map(redactEntry), dropped: rec.dropped, context: redact(rec.context) };
  }

  get watched(): boolean {
    return this.#listeners.size > 0;
  }

  /** How many subscribers (open pages) there are. */
  get watchers(): number {
    return this.#listeners.size;
  }

  /** Pushes batches of changes to `listener` until the returned function is called. */
  subscribe(listener: SessionListener): () => void {
    if (this.#listeners.size === 0) {
      // Nothing was tracked while nobody watched: start from what exists now.
      for (const rec of this.#sessions.values()) rec.pushed = rec.seq;
      this.#dirty.clear();
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Pushes what changed since the last push (called by the scheduled timer; tests call it). */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#dirty.size === 0 || this.#listeners.size === 0) return;
    const changes: SessionChange[] = [];
    for (const id of this.#dirty) {
      const rec = this.#sessions.get(id);
      if (!rec) continue;
      const entries = rec.timeline.filter((e) => e.seq > rec.pushed).map(redactEntry);
      rec.pushed = rec.seq;
      changes.push({ summary: summaryOf(rec), entries });
    }
    this.#dirty.clear();
    for (const listener of this.#listeners) listener(changes);
  }

  #dropStalestLive(keep: string): void {
    let stalest: Rec | undefined;
    for (const rec of this.#sessions.values()) {
      if (rec.id !== keep && rec.finishedAt === undefined && (!stalest || rec.updatedAt < stalest.updatedAt)) stalest = rec;
    }
    if (!stalest) return;
    this.#sessions.delete(stalest.id);
    this.#dirty.delete(stalest.id);
  }

  #append(rec: Rec, e: Omit<TimelineEntry, 'seq' | 'at'>): void {
    const at = this.#opts.now();
    rec.updatedAt = at;
    const entry: TimelineEntry = { seq: ++rec.seq, at, event: e.event, from: e.from, to: e.to };
    if (e.detail !== undefined) entry.detail = e.detail;
    rec.timeline.push(entry);
    if (rec.timeline.length > this.#opts.maxTimeline) {
      rec.timeline.shift();
      rec.dropped++;
    }
    this.#touch(rec);
  }

  #touch(rec: Rec): void {
    if (this.#listeners.size === 0) return;
    this.#dirty.add(rec.id);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    const schedule = this.#opts.schedule ?? ((fn, ms) => setTimeout(fn, ms).unref());
    schedule(() => this.flush(), this.#opts.flushMs);
  }
}

function summaryOf(rec: Rec): SessionSummary {
  const s: SessionSummary = {
    id: rec.id,
    machine: rec.machine,
    parties: redact(rec.parties) as string,
    state: rec.state,
    status: rec.finishedAt === undefined ? 'live' : 'finished',
    startedAt: rec.startedAt,
    updatedAt: rec.updatedAt,
  };
  if (rec.outcome !== undefined) s.outcome = rec.outcome;
  if (rec.finishedAt !== undefined) s.finishedAt = rec.finishedAt;
  if (rec.bytes) s.bytes = { ...rec.bytes };
  return s;
}

function redactEntry(e: TimelineEntry): TimelineEntry {
  return e.detail === undefined ? { ...e } : { ...e, detail: redact(e.detail) as Record<string, unknown> };
}

/** `{ holding: 'spliced' }` → `holding.spliced`; parallel regions are joined with `, `. */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  if (!value || typeof value !== 'object') return String(value);
  return Object.entries(value as Record<string, unknown>)
    .map(([key, child]) => {
      const inner = statePath(child);
      return inner === '' || (child && typeof child === 'object' && Object.keys(child).length === 0) ? key : `${key}.${inner}`;
    })
    .join(', ');
}

/**
 * The fields of an event worth showing, copied cheaply: primitives, lists of strings, byte
 * lengths of binary data, one level of plain objects; sockets and other objects only by name.
 * `type` is left out (it is the entry's `event`).
 */
export function eventDetail(event: object): Record<string, unknown> | undefined {
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(event)) {
    if (k === 'type') continue;
    const copy = shallow(v, true);
    if (copy === undefined) continue;
    (out ??= {})[k] = copy;
  }
  return out;
}

function shallow(v: unknown, nest: boolean): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v !== 'object') return undefined;
  if (v instanceof Uint8Array) return `[${v.byteLength} bytes]`;
  if (v instanceof Error) return v.message;
  if (Array.isArray(v)) return v.length <= 16 && v.every((x) => typeof x === 'string' || typeof x === 'number') ? [...v] : `[${v.length} items]`;
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return `[${(v as object).constructor?.name || 'object'}]`;
  if (!nest) return '[object]';
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const c = shallow(x, false);
    if (c !== undefined) out[k] = c;
  }
  return out;
}
