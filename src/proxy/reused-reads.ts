import type { Socket } from 'node:net';

// Reads into buffers we choose instead of a fresh one per read. By default a net.Socket gets a
// new 64 KiB ArrayBuffer for every read; relaying a GiB then allocates a GiB of them, and the
// garbage collector and cache-cold pages cost more CPU than the copies themselves (the bench
// measured 1.5 s of relay CPU per GiB against 0.55 s with reused buffers, haproxy 0.5 s).
//
// Node offers this as net.connect's `onread` option, but not for sockets a server accepted, and
// the splice only has those. So this installs the same machinery on an existing socket: the
// socket's own `onread` slots (found by their symbol descriptions) and its handle's
// useUserBuffer(). When any of that is missing (another Node, a socket that is not TCP) it
// installs nothing and says so; the caller then relays with 'data' events as before.

export type OnRead = (bytes: number, buffer: Buffer) => boolean;

interface Slots {
  buffer: symbol;
  callback: symbol;
  next: symbol;
}

function slotsOf(socket: Socket): Slots | undefined {
  let buffer: symbol | undefined;
  let callback: symbol | undefined;
  let next: symbol | undefined;
  for (const s of Object.getOwnPropertySymbols(socket)) {
    if (s.description === 'kBuffer') buffer = s;
    else if (s.description === 'kBufferCb') callback = s;
    else if (s.description === 'kBufferGen') next = s;
  }
  return buffer && callback && next ? { buffer, callback, next } : undefined;
}

/**
 * From now on the socket reads into `first`, then into whatever `next` returns after each read,
 * calling `onRead` with the bytes read (false stops reading until socket.resume()); 'data' is no
 * longer emitted, 'end', 'close' and the idle timeout work as before. The socket must be paused
 * with nothing buffered. Returns false, changing nothing, where this Node does not support it.
 */
export function readIntoReusedBuffers(socket: Socket, first: Buffer, onRead: OnRead, next: () => Buffer): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  const slots = slotsOf(socket);
  if (!slots || typeof handle?.useUserBuffer !== 'function' || socket.readableLength > 0) return false;
  const raw = socket as unknown as Record<symbol, unknown>;
  raw[slots.buffer] = first;
  raw[slots.callback] = onRead;
  raw[slots.next] = next;
  handle.useUserBuffer(first);
  return true;
}
