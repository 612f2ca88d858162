import { clientKeyOf } from '../core/client-address.js';
import type { Socket } from 'node:net';

// The splice endpoint's connections that have not sent their preamble yet, counted per source
// address and in all. Nothing about a connection is known before its preamble (no token, no
// proof), so its source address is the only thing a cap can be keyed on; the caps bound what
// silent connections can hold, never who dials.

export type PendingVerdict = 'ok' | 'address' | 'total';

export class PendingConnections {
  readonly #bySource = new Map<string, number>();
  readonly #sources = new Map<Socket, string>();

  constructor(
    readonly maxTotal: number,
    readonly maxPerSource: number,
  ) {}

  /** Counts `socket` unless a cap is full; says which cap refused it otherwise. */
  add(socket: Socket): PendingVerdict {
    const source = clientKeyOf(socket.remoteAddress);
    const fromSource = this.#bySource.get(source) ?? 0;
    if (fromSource >= this.maxPerSource) return 'address';
    if (this.#sources.size >= this.maxTotal) return 'total';
    this.#bySource.set(source, fromSource + 1);
    this.#sources.set(socket, source);
    return 'ok';
  }

  has(socket: Socket): boolean {
    return this.#sources.has(socket);
  }

  delete(socket: Socket): void {
    const source = this.#sources.get(socket);
    if (source === undefined) return;
    this.#sources.delete(socket);
    const left = (this.#bySource.get(source) ?? 1) - 1;
    if (left > 0) this.#bySource.set(source, left);
    else this.#bySource.delete(source);
  }

  get size(): number {
    return this.#sources.size;
  }

  from(remoteAddress: string | undefined): number {
    return this.#bySource.get(clientKeyOf(remoteAddress)) ?? 0;
  }

  sockets(): IterableIterator<Socket> {
    return this.#sources.keys();
  }

  clear(): void {
    this.#sources.clear();
    this.#bySource.clear();
  }
}
