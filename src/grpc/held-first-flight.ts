import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/**
 * The socket A's TLS client writes to before A has one: what TLS writes (its ClientHello) is held
 * here until `attach` names the connection to the proxy and the preamble that must precede it; the
 * two then leave in one write, and from there on this stream relays both ways.
 *
 * Why: A may only send TLS bytes after its preamble, and the preamble is known only once P's
 * confirmation arrives. Setting up a TLS client (Node's TLSSocket, the offered session parsed, the
 * ClientHello built) cost ~1.3 ms of A's CPU between the confirmation and the first byte to B,
 * while during the bus round trip before it A sits idle. Node offers no way to build a ClientHello
 * on a TCP socket and send it later, so TLS runs on this stream instead (Node wraps it in its
 * JS stream adapter, ~20-100 µs more per round trip than on the socket itself).
 *
 * Nothing is sent before `attach`; a stream destroyed before it never sends a byte, and a socket
 * attached to a destroyed stream is destroyed unwritten.
 */
export class HeldFirstFlight extends Duplex {
  #held: Buffer[] = [];
  #socket: Socket | undefined;

  get attached(): boolean {
    return this.#socket !== undefined;
  }

  /** Sends `prefix` and what TLS wrote so far on `socket`, then relays between them. */
  attach(socket: Socket, prefix: Buffer): void {
    if (this.#socket) throw new Error('already attached to a socket');
    if (this.destroyed) {
      socket.destroy();
      return;
    }
    this.#socket = socket;
    // Nagle on the relay leg would hold each small TLS record ~40 ms for a delayed ACK.
    socket.setNoDelay(true);
    socket.write(this.#held.length === 0 ? prefix : Buffer.concat([prefix, ...this.#held]));
    this.#held = [];
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('error', (err: Error) => this.destroy(err));
    socket.once('close', () => this.destroy());
  }

  override _read(): void {
    this.#socket?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    const socket = this.#socket;
    if (!socket) {
      this.#held.push(chunk);
      done();
      return;
    }
    // The socket calls back once it has taken the chunk: TLS writes no faster than it drains.
    socket.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    if (this.#socket) this.#socket.end(done);
    else done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#held = [];
    this.#socket?.destroy();
    done(err);
  }
}
