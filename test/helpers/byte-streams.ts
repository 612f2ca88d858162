// Streams for byte-for-byte relay tests: deterministic patterns, writers of mixed sizes that
// respect backpressure, and readers that pause now and then so a relay's writes back up.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Socket } from 'node:net';

/** Deterministic bytes, different per seed, so a misplaced chunk shows in the digest. */
export function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

export const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes `data` in sizes from 1 byte to 200 KiB, respecting backpressure, then ends. */
export async function send(socket: Socket, data: Buffer, seed: number): Promise<void> {
  let at = 0;
  let i = seed;
  while (at < data.length) {
    const size = [1, 64, 1500, 16 * 1024, 64 * 1024, 200 * 1024, 70_000][i++ % 7]!;
    const chunk = data.subarray(at, at + size);
    at += chunk.length;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  socket.end();
}

/** Reads everything, pausing now and then so the proxy's writes to it back up. */
export function receive(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let reads = 0;
  socket.on('data', (c: Buffer) => {
    chunks.push(c);
    if (++reads % 40 === 0) {
      socket.pause();
      setTimeout(() => socket.resume(), 5);
    }
  });
  return once(socket, 'end').then(() => Buffer.concat(chunks));
}
