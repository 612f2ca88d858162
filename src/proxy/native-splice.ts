import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SPLICE_END_REASONS, type SpliceEndReason } from '../../machines/brokering.js';
import { DEFAULT_NATIVE_RELAY_COPY_BYTES, DEFAULT_NATIVE_RELAY_MODE, DEFAULT_NATIVE_RELAY_SEND_BYTES, NATIVE_RELAY_MODES } from '../core/constants.js';

// The binding to native/splice (built on install by scripts/build-native.mjs): spliced sessions
// whose bytes the kernel moves socket -> pipe -> socket on one native thread. The splicer hands a
// session over once both sockets are flushed; this module keeps one small record per session
// (its callbacks), collects byte counters for all sessions from one process-wide interval, and
// hears each session's end through the addon's threadsafe function.

/** Which relay the splicer uses: the native addon's, or the JS one (always available). */
export type RelayPath = 'native' | 'js';

/** EPS_SPLICE=js forces the JS relay (tests cover both), =native insists on the addon. */
export const SPLICE_PATH_ENV = 'EPS_SPLICE';

export type NativeRelayMode = (typeof NATIVE_RELAY_MODES)[number];

/** EPS_RELAY_MODE=copy|splice overrides the proxy's splice.relayMode (tests and benches run both). */
export const RELAY_MODE_ENV = 'EPS_RELAY_MODE';
/** EPS_RELAY_COPY_BYTES and EPS_RELAY_SEND_BYTES override copy mode's sizes (the bench tries several). */
export const RELAY_COPY_BYTES_ENV = 'EPS_RELAY_COPY_BYTES';
export const RELAY_SEND_BYTES_ENV = 'EPS_RELAY_SEND_BYTES';

export interface NativeRelayOptions {
  mode: NativeRelayMode;
  /** Copy mode: bytes per recv(), the size of the thread's one shared buffer (whole KiB, at most 32 MiB). */
  copyBytes: number;
  /** Copy mode: bytes per send() (whole KiB); each recv goes out in sends of at most this. */
  sendBytes: number;
}

interface Binding {
  start(onEnded: (id: number, reason: string, aToB: number, bToA: number, deltas: [number, number], error?: string) => void): void;
  add(
    fdA: number,
    fdB: number,
    maxBytesPerDirection: number,
    aToB: number,
    bToA: number,
    maxDurationMs: number,
    idleMs: number,
    copyBytes: number,
    sendBytes: number,
  ): number;
  cancel(id: number): void;
  collect(): number[];
  stats(): NativeSpliceStats;
}

export interface NativeSpliceStats {
  /** Sessions the native thread relays now. */
  sessions: number;
  /** Pipes open, in use or spare: a direction takes one only while it has bytes in flight. */
  pipes: number;
  sparePipes: number;
  /** Copy mode: directions holding the tail of a recv their destination has not taken yet. */
  copyLeftovers: number;
}

/** What a session hands over, besides its two sockets. */
export interface HandOver {
  /** Bytes relayed before the handover, per direction: they count against the byte limit. */
  bytesAToB: number;
  bytesBToA: number;
  maxBytesPerDirection?: number;
  /** What is left of the session's duration limit. */
  maxDurationMs?: number;
  /** 0 or absent: none. */
  idleMs?: number;
  /** Absent: the process's (nativeRelayOptions()). */
  relay?: NativeRelayOptions;
  /** Bytes relayed since the last call, once a second and at the end. */
  onRelayed?: (aToB: number, bToA: number) => void;
  /** Totals include the bytes from before the handover; `error` is the socket error's text. */
  onEnded: (reason: SpliceEndReason, bytesAToB: number, bytesBToA: number, error?: string) => void;
}

export interface NativeSession {
  /** Closes both descriptors without reporting an end (the session was stopped from JS). */
  cancel(): void;
  /**
   * Sends this session's counters and its end to other handlers from now on: the splicer that
   * handed it over lets the session registry take it while the session's actor is parked.
   */
  rebind(handlers: NativeHandlers): void;
}

/** How often byte counters reach the metrics while sessions relay. */
const COLLECT_MS = 1000;
const ADDON_PATH = join('native', 'splice', 'build', 'Release', 'eps_splice.node');

/** The addon under the package root, whether this runs from src/ (tests) or dist/src/. */
function addonFile(): string | undefined {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return existsSync(join(dir, ADDON_PATH)) ? join(dir, ADDON_PATH) : undefined;
  }
  return undefined;
}

export type NativeHandlers = Pick<HandOver, 'onRelayed' | 'onEnded'>;

export class NativeSplicer {
  readonly #binding: Binding;
  readonly #sessions = new Map<number, NativeHandlers>();
  #collector: NodeJS.Timeout | undefined;

  constructor(binding: Binding) {
    this.#binding = binding;
    binding.start((id, reason, aToB, bToA, [deltaA, deltaB], error) => {
      const handlers = this.#sessions.get(id);
      if (!handlers) return;
      this.#forget(id);
      if (deltaA + deltaB > 0) handlers.onRelayed?.(deltaA, deltaB);
      const known = (SPLICE_END_REASONS as readonly string[]).includes(reason) ? (reason as SpliceEndReason) : 'aError';
      handlers.onEnded(known, aToB, bToA, error);
    });
  }

  /** Takes over both sockets' descriptors (the caller destroys the sockets next); throws when it cannot. */
  add(a: Socket, b: Socket, h: HandOver): NativeSession {
    const fdA = fdOf(a);
    const fdB = fdOf(b);
    if (fdA === undefined || fdB === undefined) throw new Error('a spliced socket has no descriptor');
    const relay = h.relay ?? nativeRelayOptions();
    const copyBytes = relay.mode === 'copy' ? relay.copyBytes : 0;
    const id = this.#binding.add(fdA, fdB, h.maxBytesPerDirection ?? 0, h.bytesAToB, h.bytesBToA, h.maxDurationMs ?? 0, h.idleMs ?? 0, copyBytes, relay.sendBytes);
    this.#sessions.set(id, { onRelayed: h.onRelayed, onEnded: h.onEnded });
    this.#collector ??= setInterval(() => this.#collect(), COLLECT_MS).unref();
    return {
      cancel: () => {
        if (!this.#sessions.has(id)) return;
        this.#forget(id);
        this.#binding.cancel(id);
      },
      rebind: (handlers) => {
        if (this.#sessions.has(id)) this.#sessions.set(id, handlers);
      },
    };
  }

  stats(): NativeSpliceStats {
    return this.#binding.stats();
  }

  #collect(): void {
    const rows = this.#binding.collect();
    for (let i = 0; i < rows.length; i += 3) this.#sessions.get(rows[i]!)?.onRelayed?.(rows[i + 1]!, rows[i + 2]!);
  }

  #forget(id: number): void {
    this.#sessions.delete(id);
    if (this.#sessions.size === 0 && this.#collector) {
      clearInterval(this.#collector);
      this.#collector = undefined;
    }
  }
}

const fdOf = (socket: Socket): number | undefined => {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
};

/**
 * Stops the socket's reads in libuv, not only its stream: bytes that arrive from now on stay in
 * the kernel for whoever holds the descriptor next. Bytes the stream already buffered are the
 * caller's to read first (reading after this would start the handle again).
 */
export function stopReading(socket: Socket): void {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (!handle?.readStop) return;
  handle.reading = false;
  handle.readStop();
}

let relayOptions: NativeRelayOptions = {
  mode: DEFAULT_NATIVE_RELAY_MODE,
  copyBytes: DEFAULT_NATIVE_RELAY_COPY_BYTES,
  sendBytes: DEFAULT_NATIVE_RELAY_SEND_BYTES,
};

/**
 * Sets how sessions handed over from now on are relayed (the proxy calls it at start with its
 * splice.relayMode); EPS_RELAY_MODE, EPS_RELAY_COPY_BYTES and EPS_RELAY_SEND_BYTES, when set, win.
 */
export function setNativeRelayOptions(options: Partial<NativeRelayOptions>): void {
  relayOptions = { ...relayOptions, ...options };
}

export function nativeRelayOptions(): NativeRelayOptions {
  const mode = process.env[RELAY_MODE_ENV];
  const size = (name: string, otherwise: number): number => {
    const n = Number(process.env[name]);
    return Number.isInteger(n) && n > 0 ? n : otherwise;
  };
  return {
    mode: mode && (NATIVE_RELAY_MODES as readonly string[]).includes(mode) ? (mode as NativeRelayMode) : relayOptions.mode,
    copyBytes: size(RELAY_COPY_BYTES_ENV, relayOptions.copyBytes),
    sendBytes: size(RELAY_SEND_BYTES_ENV, relayOptions.sendBytes),
  };
}

let loaded: { splicer?: NativeSplicer; why?: string } | undefined;

/** The process's native splicer, loaded once; undefined (with why) when forced off or not built. */
export function nativeSplicer(): { splicer?: NativeSplicer; why?: string } {
  if (loaded) return loaded;
  const wanted = process.env[SPLICE_PATH_ENV];
  if (wanted === 'js') return (loaded = { why: `${SPLICE_PATH_ENV}=js` });
  const file = addonFile();
  if (!file) {
    loaded = { why: 'the addon is not built (npm install builds it: scripts/build-native.mjs)' };
  } else {
    try {
      loaded = { splicer: new NativeSplicer(createRequire(import.meta.url)(file) as Binding) };
    } catch (err) {
      loaded = { why: `the addon did not load: ${(err as Error).message}` };
    }
  }
  if (!loaded.splicer && wanted === 'native') throw new Error(`${SPLICE_PATH_ENV}=native but ${loaded.why}`);
  return loaded;
}
