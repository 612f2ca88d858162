import type { Socket } from 'node:net';
import { fromCallback } from 'xstate';
import type { Logger } from '../core/logger.js';
import type { BrokeringEvent, SpliceEndReason, SplicerEvent, SplicerInput } from '../../machines/brokering.js';

// The `splicer` actor: owns B's socket from the moment B dialed and A's once A dials, relays
// bytes both ways, and is the only code that closes either socket (its cleanup runs on every way
// the session ends, including shutdown and timeouts).

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
}

/**
 * Bytes B may send before A attaches. B is a TLS server and has nothing to say before A's
 * ClientHello, so anything beyond this is not a well-behaved peer; we stop reading from it.
 */
const MAX_EARLY_B_BYTES = 64 * 1024;

export function createSplicer(options: SplicerOptions) {
  const { idleMs = 0, onRelayed } = options;

  return fromCallback<SplicerEvent, SplicerInput>(({ input, receive, sendBack }) => {
    const log = options.log.child({ sessionId: input.sessionId });
    const limits = options.limitsOf?.(input.sessionId) ?? {};
    const maxBytes = limits.maxBytesPerDirection ?? Infinity;
    let durationTimer: NodeJS.Timeout | undefined;
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
      let aFinished = false;
      let bFinished = false;

      const relay = (src: Socket, dst: Socket, direction: Direction) => (chunk: Buffer) => {
        if (ended) return;
        const sent = direction === 'aToB' ? bytesAToB : bytesBToA;
        // Relay exactly up to the limit, so the byte counts in the output say where it stopped.
        const over = sent + chunk.length > maxBytes;
        const part = over ? chunk.subarray(0, Math.max(0, maxBytes - sent)) : chunk;
        if (direction === 'aToB') bytesAToB += part.length;
        else bytesBToA += part.length;
        if (part.length > 0) onRelayed?.(direction, part.length, input.sessionId);
        if (over) {
          // end() destroys both sockets; flush the allowed part first so the peer sees it.
          if (part.length > 0) dst.write(part);
          end('byteLimit');
          return;
        }
        if (!dst.write(part)) src.pause();
      };

      // Whatever each side sent before the splice goes first, in order.
      if (aRest.length > 0) relay(aSocket, bSocket, 'aToB')(Buffer.from(aRest));
      for (const chunk of early) relay(bSocket, aSocket, 'bToA')(chunk);
      early.length = 0;
      // What was sent before the splice may already have hit the byte limit.
      if (ended) return;

      aSocket.on('data', relay(aSocket, bSocket, 'aToB'));
      bSocket.on('data', relay(bSocket, aSocket, 'bToA'));
      bSocket.on('drain', () => aSocket.resume());
      aSocket.on('drain', () => bSocket.resume());

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

      aSocket.on('error', (err) => end('aError', err));
      bSocket.on('error', (err) => end('bError', err));
      aSocket.on('close', () => end('aClosed'));
      bSocket.on('close', () => end('bClosed'));

      if (idleMs > 0) {
        aSocket.setTimeout(idleMs, () => end('idle'));
        bSocket.setTimeout(idleMs, () => end('idle'));
      }
      if (limits.maxDurationMs !== undefined) durationTimer = setTimeout(() => end('durationLimit'), limits.maxDurationMs);
      // The early bytes above may already have filled a write buffer; respect that.
      if (bSocket.writableNeedDrain) aSocket.pause();
      else aSocket.resume();
      if (aSocket.writableNeedDrain) bSocket.pause();
      else bSocket.resume();
      // Either socket may have died between its dial and now.
      if (aSocket.destroyed) end('aClosed');
      else if (bSocket.destroyed) end('bClosed');
    }

    function end(reason: SpliceEndReason, err?: Error): void {
      if (ended) return;
      ended = true;
      if (err) log.debug({ reason, err: err.message }, 'splice ended with a socket error');
      destroyAll();
      report({ type: 'SPLICE_ENDED', reason, bytesAToB, bytesBToA });
    }

    function destroyAll(): void {
      clearTimeout(durationTimer);
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
