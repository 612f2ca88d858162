import { isIPv6 } from 'node:net';
import type { Socket } from 'node:net';

// The splice endpoint's connections that have not sent their preamble yet, counted per source
// address and in all. Nothing about a connection is known before its preamble (no token, no
// proof), so its source address is the only thing a cap can be keyed on; the caps bound what
// silent connections can hold, never who dials.

/**
 * The source a cap counts against: an IPv4 address as is (also when mapped into IPv6), an IPv6
 * address by its /64, since one host is routinely handed a whole /64 to pick addresses from.
 */
export function sourceKey(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remoteAddress);
  if (mapped) return mapped[1]!;
  if (!isIPv6(remoteAddress)) return remoteAddress;
  const [head = '', tail = ''] = remoteAddress.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = remoteAddress.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

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
    const source = sourceKey(socket.remoteAddress);
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
    return this.#bySource.get(sourceKey(remoteAddress)) ?? 0;
  }

  sockets(): IterableIterator<Socket> {
    return this.#sources.keys();
  }

  clear(): void {
    this.#sources.clear();
    this.#bySource.clear();
  }
}
