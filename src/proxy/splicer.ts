import type { Socket } from 'node:net';
import { fromCallback } from 'xstate';
import { childOnDemand, type Logger } from '../core/logger.js';
import {
  nativeSplicer,
  stopReading,
  type HandOver as HandOverOptions,
  type NativeRelayOptions,
  type NativeSession,
  type NativeSplicer,
  type RelayPath,
} from './native-splice.js';
import { readIntoReusedBuffers } from './reused-reads.js';
import type { BrokeringEvent, SpliceEndReason, SplicerEvent, SplicerInput } from '../../machines/brokering.js';

// The `splicer` actor: owns B's socket from the moment B dialed and A's once A dials, relays
// bytes both ways, and is the only code that closes either socket (its cleanup runs on every way
// the session ends, including shutdown and timeouts). Once the native relay holds both
// descriptors it may give that relay up (onHandedOver): the session registry then owns it, and
// parks the session's actors.

export type Direction = 'aToB' | 'bToA';

/** A relay grant's limits, enforced on the splice (a brokered session has none). */
export interface SpliceLimits {
  /** From the moment both sockets are spliced. */
  maxDurationMs?: number;
  /** Per direction, counting what B sent before A attached. */
  maxBytesPerDirection?: number;
}

export interface SplicerOptions {
  log: Logger;
  /** Ends a splice with no traffic either way for this long; 0 or absent disables it. */
  idleMs?: number;
  /** The session's limits, read when its splicer starts; absent means none. */
  limitsOf?: (sessionId: string) => SpliceLimits | undefined;
  /** Called per relayed chunk, so counters move while a long-lived channel is open. */
  onRelayed?: (direction: Direction, bytes: number, sessionId: string) => void;
  /** Default true; false relays with 'data' events, the path taken where Node lacks the hook (tests both). */
  reuseReadBuffers?: boolean;
  /** Default: native when the addon loaded (see relayPath()), else js. */
  relay?: RelayPath;
  /** How the native relay moves bytes; default the process's (nativeRelayOptions(), splice.relayMode). */
  nativeRelay?: NativeRelayOptions;
  /**
   * Called once the native relay holds both descriptors and no JS socket is left: from then on
   * the session needs nothing of this splicer. `release()` takes the relay from it (the splicer
   * then neither reports its end nor closes it, its cleanup included) and returns undefined when
   * the splice already ended; the session registry so parks an idle session's actors.
   */
  onHandedOver?: (sessionId: string, release: () => NativeSession | undefined) => void;
}

/** The relay a splicer uses by default, and why when it is not the native one. */
export function relayPath(): { path: RelayPath; why?: string } {
  const { splicer, why } = nativeSplicer();
  return splicer ? { path: 'native' } : { path: 'js', why };
}

/**
 * Bytes B may send before A attaches. B is a TLS server and has nothing to say before A's
 * ClientHello, so anything beyond this is not a well-behaved peer; we stop reading from it.
 */
const MAX_EARLY_B_BYTES = 64 * 1024;

/**
 * Bytes per read once spliced. Twice what Node reads at once: fewer reads and callbacks per GiB
 * (the relay bench: 64 KiB 774 MiB/s at 790 ms CPU per GiB, 128 KiB 935 at 650, 256 KiB 964 at
 * 630), while a direction holds its own buffer only during bulk transfers.
 */
const READ_BYTES = 128 * 1024;

// One read buffer for every spliced socket whose traffic is small. Each read into it is copied
// out before the read callback returns, so no write ever points into it.
let sharedBuffer: Buffer | undefined;
const sharedReadBuffer = (): Buffer => (sharedBuffer ??= Buffer.allocUnsafeSlow(READ_BYTES));

// Own buffers that no direction reads into and no write points into, for the next bulk read of
// any session: a direction gives its own back when a burst ends instead of keeping 128 KiB while
// idle (the memory bench: 9,900 sessions idle after one 256 KiB message each way held 182 KiB of RSS each, now 33).
const MAX_SPARE_BUFFERS = 8;
const spareBuffers: Buffer[] = [];
const takeOwnBuffer = (): Buffer => spareBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BYTES);
const giveBackOwnBuffer = (buffer: Buffer): void => {
  if (spareBuffers.length < MAX_SPARE_BUFFERS) spareBuffers.push(buffer);
};

export function createSplicer(options: SplicerOptions) {
  const { idleMs = 0, onRelayed, reuseReadBuffers = true } = options;
  const native: NativeSplicer | undefined = (options.relay ?? relayPath().path) === 'native' ? nativeSplicer().splicer : undefined;
  if (options.relay === 'native' && !native) throw new Error(`the native relay is not available: ${nativeSplicer().why}`);

  return fromCallback<SplicerEvent, SplicerInput>(({ input, receive, sendBack }) => {
    const log = childOnDemand(options.log, { sessionId: input.sessionId });
    const limits = options.limitsOf?.(input.sessionId) ?? {};
    const maxBytes = limits.maxBytesPerDirection ?? Infinity;
    let durationTimer: NodeJS.Timeout | undefined;
    let nativeSession: NativeSession | undefined;
    let b: Socket | undefined;
    let a: Socket | undefined;
    let ended = false;
    let bytesAToB = 0;
    let bytesBToA = 0;
    // Bytes B sent after its token, held until A attaches.
    const early: Buffer[] = [];
    let earlyBytes = 0;
    let bGoneBeforeA: string | undefined;

    const report = (event: BrokeringEvent): void => sendBack(event);

    const onEarlyData = (chunk: Buffer): void => {
      early.push(chunk);
      earlyBytes += chunk.length;
      if (earlyBytes >= MAX_EARLY_B_BYTES) b?.pause();
    };
    const onEarlyEnd = (): void => bGone('B ended its stream before A dialed');
    const onEarlyClose = (): void => bGone('B closed before A dialed');
    const onEarlyError = (err: Error): void => bGone(`B failed before A dialed: ${err.message}`);

    function bGone(detail: string): void {
      if (bGoneBeforeA !== undefined || a) return;
      bGoneBeforeA = detail;
      report({ type: 'B_CLOSED', detail });
    }

    function attachB(socket: Socket, rest: Uint8Array): void {
      if (b) {
        // The machine never attaches B twice; if it did, this socket is not ours to keep.
        socket.destroy();
        return;
      }
      b = socket;
      b.setNoDelay(true);
      if (rest.length > 0) onEarlyData(Buffer.from(rest));
      b.on('data', onEarlyData);
      b.on('end', onEarlyEnd);
      b.on('close', onEarlyClose);
      b.on('error', onEarlyError);
      if (b.destroyed) bGone('B closed before A dialed');
      else b.resume();
    }

    function attachA(socket: Socket, rest: Uint8Array): void {
      if (a || !b) {
        socket.destroy();
        return;
      }
      a = socket;
      a.setNoDelay(true);
      const bSocket = b;
      bSocket.off('data', onEarlyData);
      bSocket.off('end', onEarlyEnd);
      bSocket.off('close', onEarlyClose);
      bSocket.off('error', onEarlyError);
      if (bGoneBeforeA !== undefined) {
        // The machine moved on with A before it saw our B_CLOSED; end the splice instead.
        end('bClosedBeforeA');
        return;
      }
      splice(a, bSocket, rest);
    }

    function splice(aSocket: Socket, bSocket: Socket, aRest: Uint8Array): void {
      // Nothing may be emitted to nobody while the relay is set up: both wait, and whatever each
      // already buffered (past its preamble, or B's early bytes) is relayed first, in order.
      aSocket.pause();
      bSocket.pause();
      const aPending: Buffer[] = aRest.length > 0 ? [Buffer.from(aRest)] : [];
      const bPending = early.splice(0);
      if (aSocket.readableLength > 0) aPending.push(aSocket.read() as Buffer);
      if (bSocket.readableLength > 0) bPending.push(bSocket.read() as Buffer);

      aSocket.on('error', (err) => end('aError', err));
      bSocket.on('error', (err) => end('bError', err));
      aSocket.on('close', () => end('aClosed'));
      bSocket.on('close', () => end('bClosed'));
      if (idleMs > 0) {
        aSocket.setTimeout(idleMs, () => end('idle'));
        bSocket.setTimeout(idleMs, () => end('idle'));
      }
      const splicedAt = Date.now();
      if (limits.maxDurationMs !== undefined) durationTimer = setTimeout(() => end('durationLimit'), limits.maxDurationMs);

      if (native) handOver(native, aSocket, bSocket, aPending, bPending, splicedAt);
      else relayInJs(aSocket, bSocket, aPending, bPending);
    }

    /**
     * The native relay: flush what came before the splice with the JS sockets, then give both
     * descriptors to the addon and destroy the sockets, so an idle session holds no JS socket.
     */
    function handOver(splicer: NativeSplicer, aSocket: Socket, bSocket: Socket, aPending: Buffer[], bPending: Buffer[], splicedAt: number): void {
      // From here on new bytes stay in the kernel for the addon to move.
      stopReading(aSocket);
      stopReading(bSocket);
      for (const chunk of aPending) if (!forward('aToB', chunk, bSocket)) return;
      for (const chunk of bPending) if (!forward('bToA', chunk, aSocket)) return;
      const go = (): void => {
        if (ended || aSocket.writableLength > 0 || bSocket.writableLength > 0) return;
        if (aSocket.destroyed || bSocket.destroyed) return end(aSocket.destroyed ? 'aClosed' : 'bClosed');
        clearTimeout(durationTimer);
        try {
          nativeSession = splicer.add(aSocket, bSocket, {
            bytesAToB,
            bytesBToA,
            maxBytesPerDirection: limits.maxBytesPerDirection,
            maxDurationMs: limits.maxDurationMs === undefined ? undefined : Math.max(1, limits.maxDurationMs - (Date.now() - splicedAt)),
            idleMs,
            ...(options.nativeRelay ? { relay: options.nativeRelay } : {}),
            ...nativeHandlers(),
          });
        } catch (err) {
          // No descriptor to spare, or the addon refused: this session relays in JS.
          log().warn({ err: (err as Error).message }, 'native relay refused a session; relaying it in JS');
          if (limits.maxDurationMs !== undefined) durationTimer = setTimeout(() => end('durationLimit'), Math.max(1, limits.maxDurationMs - (Date.now() - splicedAt)));
          relayInJs(aSocket, bSocket, [], []);
          return;
        }
        // The descriptors are the addon's: the sockets go without a FIN, and with them their listeners.
        for (const socket of [aSocket, bSocket]) {
          socket.setTimeout(0);
          socket.removeAllListeners();
          socket.on('error', () => {});
          socket.destroy();
        }
        a = b = undefined;
        options.onHandedOver?.(input.sessionId, release);
      };
      aSocket.on('drain', go);
      bSocket.on('drain', go);
      go();
    }

    function release(): NativeSession | undefined {
      if (ended || !nativeSession) return undefined;
      const relay = nativeSession;
      nativeSession = undefined;
      ended = true;
      return relay;
    }

    // Apart from handOver(): a closure made there would keep its scope, and with it both
    // destroyed sockets, alive for as long as the native relay holds the session.
    function nativeHandlers(): Pick<HandOverOptions, 'onRelayed' | 'onEnded'> {
      return {
        onRelayed: (aToB, bToA) => {
          if (aToB > 0) onRelayed?.('aToB', aToB, input.sessionId);
          if (bToA > 0) onRelayed?.('bToA', bToA, input.sessionId);
        },
        onEnded: (reason, aToB, bToA, error) => {
          bytesAToB = aToB;
          bytesBToA = bToA;
          end(reason, error === undefined ? undefined : new Error(error));
        },
      };
    }

    /** Counts and writes one chunk from before the splice; false when it crossed the byte limit (the session ended). */
    function forward(direction: Direction, chunk: Buffer, dst: Socket): boolean {
      const part = withinLimit(direction, chunk);
      if (part.length > 0) dst.write(part);
      if (part.length < chunk.length) end('byteLimit');
      return !ended;
    }

    /** Counts a chunk against its direction: the part that fits the byte limit (all of it, or less when crossed). */
    function withinLimit(direction: Direction, chunk: Buffer): Buffer {
      const sent = direction === 'aToB' ? bytesAToB : bytesBToA;
      // Relay exactly up to the limit, so the byte counts in the output say where it stopped.
      const part = sent + chunk.length > maxBytes ? chunk.subarray(0, Math.max(0, maxBytes - sent)) : chunk;
      if (direction === 'aToB') bytesAToB += part.length;
      else bytesBToA += part.length;
      if (part.length > 0) onRelayed?.(direction, part.length, input.sessionId);
      return part;
    }

    function relayInJs(aSocket: Socket, bSocket: Socket, aPending: Buffer[], bPending: Buffer[]): void {
      let aFinished = false;
      let bFinished = false;
      const aToB = relay(aSocket, bSocket, 'aToB');
      const bToA = relay(bSocket, aSocket, 'bToA');

      // Half-close: a side that finished sending may still be reading the answer.
      aSocket.on('end', () => bSocket.end());
      bSocket.on('end', () => aSocket.end());
      const onFinish = (): void => {
        if (aFinished && bFinished) end('completed');
      };
      aSocket.on('finish', () => {
        aFinished = true;
        onFinish();
      });
      bSocket.on('finish', () => {
        bFinished = true;
        onFinish();
      });

      for (const chunk of aPending) aToB.push(chunk);
      for (const chunk of bPending) bToA.push(chunk);
      // What was sent before the splice may already have hit the byte limit.
      if (ended) return;
      aToB.start();
      bToA.start();
      // Either socket may have died between its dial and now.
      if (aSocket.destroyed) end('aClosed');
      else if (bSocket.destroyed) end('bClosed');
    }

    /** Relays src's bytes to dst, counted and limited; start() once the bytes from before the splice were pushed. */
    function relay(src: Socket, dst: Socket, direction: Direction): { push: (chunk: Buffer) => void; start: () => void } {
      // Set while dst still holds bytes we wrote: src stops reading until dst took them all, so a
      // write never points into a buffer that the next read overwrites.
      let waiting = false;
      // The own buffer this direction stopped reading into, until dst took what was written from it.
      let retiring: Buffer | undefined;
      const retire = (): void => {
        if (retiring && !ended && dst.writableLength === 0) {
          giveBackOwnBuffer(retiring);
          retiring = undefined;
        }
      };
      const written = (): void => {
        retire();
        if (waiting && !ended && dst.writableLength === 0) {
          waiting = false;
          src.resume();
        }
      };
      // Copies (bytes from before the splice, reads from the shared buffer) wait only for the usual
      // backpressure, signalled by 'drain'; a chunk of our own buffer until it was all written.
      dst.on('drain', written);
      const push = (chunk: Buffer, borrowed = false): void => {
        const part = withinLimit(direction, chunk);
        if (part.length < chunk.length) {
          // end() destroys both sockets; flush the allowed part first so the peer sees it.
          if (part.length > 0) dst.write(part);
          end('byteLimit');
          return;
        }
        if (borrowed) {
          dst.write(part, written);
          if (dst.writableLength > 0) waiting = true;
        } else if (!dst.write(part)) waiting = true;
      };

      // Reads land in the shared buffer (copied out at once) until one fills it: more bytes are
      // waiting, so the next read goes into a buffer of this direction's own, written without a
      // copy, until a read that does not fill it. That read emptied the socket, the burst may be
      // over: the next read goes to the shared buffer again, and the own one back to the spares
      // once dst took its bytes. A quiet session so holds no read buffer, also right after a bulk
      // message (unless its last read exactly filled a buffer: then until its next read); a bulk
      // stream reads into an own buffer while its reads come full, and copies one after a short one.
      let own: Buffer | undefined;
      let reading = sharedReadBuffer();
      let lastRead = 0;
      const onRead = (bytes: number, buffer: Buffer): boolean => {
        if (ended) return false;
        lastRead = bytes;
        if (buffer === sharedBuffer) push(Buffer.from(buffer.subarray(0, bytes)));
        else push(buffer.subarray(0, bytes), true);
        return !ended && !waiting;
      };
      const next = (): Buffer => {
        if (own && reading === own && lastRead < own.length) {
          reading = sharedReadBuffer();
          retiring = own;
          own = undefined;
          retire();
        } else if (lastRead === reading.length) reading = own ??= takeOwnBuffer();
        return reading;
      };
      const reused = reuseReadBuffers && readIntoReusedBuffers(src, reading, onRead, next);
      if (!reused) {
        src.on('data', (chunk: Buffer) => {
          if (ended) return;
          push(chunk);
          if (waiting) src.pause();
        });
      }
      return {
        push,
        start: () => {
          if (!waiting) src.resume();
        },
      };
    }

    function end(reason: SpliceEndReason, err?: Error): void {
      if (ended) return;
      ended = true;
      if (err) log().debug({ reason, err: err.message }, 'splice ended with a socket error');
      destroyAll();
      report({ type: 'SPLICE_ENDED', reason, bytesAToB, bytesBToA });
    }

    function destroyAll(): void {
      clearTimeout(durationTimer);
      nativeSession?.cancel();
      a?.setTimeout(0);
      b?.setTimeout(0);
      a?.destroy();
      b?.destroy();
    }

    receive((event) => {
      if (ended) {
        (event.socket as Socket).destroy();
        return;
      }
      if (event.type === 'ATTACH_B') attachB(event.socket as Socket, event.rest);
      else attachA(event.socket as Socket, event.rest);
    });

    return () => {
      ended = true;
      destroyAll();
    };
  });
}
