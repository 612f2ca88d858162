import type { Readable } from 'node:stream';

// The token preamble: the first 32 bytes a dialer sends. TCP may deliver them in any pieces, so
// read until there are enough; whatever came in the same chunk after them belongs to the peer's
// protocol (a TLS ClientHello, say) and is handed back in `rest`, never dropped. This module
// never closes the socket: the caller decides, because only it knows whether to refuse or route.

export class PreambleTimeout extends Error {
  override readonly name = 'PreambleTimeout';
  constructor(
    readonly received: number,
    timeoutMs: number,
  ) {
    super(`preamble not complete after ${timeoutMs} ms (${received} bytes received)`);
  }
}

export class PreambleClosed extends Error {
  override readonly name = 'PreambleClosed';
  constructor(
    readonly received: number,
    options?: { cause?: unknown },
  ) {
    super(`peer closed after ${received} preamble bytes`, options);
  }
}

export interface PreambleOptions {
  bytes: number;
  timeoutMs: number;
}

export interface Preamble {
  token: Buffer;
  rest: Buffer;
}

/** A socket, or any readable stream for tests; `setTimeout` is cleared when present. */
export type PreambleSource = Readable & { setTimeout?: (ms: number) => unknown };

export function readPreamble(socket: PreambleSource, { bytes, timeoutMs }: PreambleOptions): Promise<Preamble> {
  return new Promise<Preamble>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;

    // An absolute deadline, not socket.setTimeout: an idle timer would let a dialer trickle one
    // byte just inside each period and hold the slot forever.
    const timer = setTimeout(() => finish(new PreambleTimeout(received, timeoutMs)), timeoutMs);

    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (received < bytes) return;
      const all = chunks.length === 1 ? chunk : Buffer.concat(chunks, received);
      // Copies, so the token does not pin (or alias) the socket's larger read buffer.
      finish(undefined, { token: Buffer.from(all.subarray(0, bytes)), rest: Buffer.from(all.subarray(bytes)) });
    };
    const onEnd = (): void => finish(new PreambleClosed(received));
    const onClose = (): void => finish(new PreambleClosed(received));
    const onError = (err: Error): void => finish(new PreambleClosed(received, { cause: err }));

    function finish(error: Error | undefined, preamble?: Preamble): void {
      clearTimeout(timer);
      // Pause before removing the listener: with no 'data' listener and the stream still
      // flowing, the next chunk would be emitted to nobody and lost.
      socket.pause();
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onClose);
      socket.off('error', onError);
      socket.setTimeout?.(0);
      if (error) reject(error);
      else resolve(preamble as Preamble);
    }

    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
    if (socket.destroyed) {
      finish(new PreambleClosed(0));
      return;
    }
    socket.resume();
  });
}
