// gRPC over HTTP/2 as the spec (doc/PROTOCOL-HTTP2.md in grpc/grpc) writes it, for one unary call:
// each message is a 5-byte prefix (compressed flag, uint32 big-endian length) and its bytes; the
// status arrives in trailers (or in the headers of a trailers-only answer) as grpc-status and a
// percent-encoded grpc-message; the deadline travels as grpc-timeout.

export const GRPC_CONTENT_TYPE = 'application/grpc';
/** grpc-js's default limit on a received message; a bigger one is refused, not buffered. */
export const MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024;

const PREFIX_BYTES = 5;

/** One uncompressed length-prefixed message. */
export function frameMessage(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, PREFIX_BYTES);
  return out;
}

/** grpc-timeout: at most 8 digits and a unit; milliseconds while they fit, seconds after. */
export function grpcTimeout(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  return whole < 1e8 ? `${whole}m` : `${Math.min(Math.ceil(whole / 1000), 99_999_999)}S`;
}

/** grpc-message is percent-encoded UTF-8; a malformed one is shown as sent. */
export function decodeGrpcMessage(raw: string | string[] | undefined): string {
  const value = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export type ReadResult = { type: 'ok' } | { type: 'tooLarge'; bytes: number } | { type: 'compressed' };

/** Collects the messages of one response stream from its DATA chunks, however they are cut. */
export class MessageReader {
  readonly messages: Buffer[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxMessageBytes = MAX_RECEIVE_MESSAGE_BYTES) {}

  push(chunk: Buffer): ReadResult {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    for (;;) {
      if (this.pendingBytes < PREFIX_BYTES) return { type: 'ok' };
      const head = this.peek(PREFIX_BYTES);
      // We never send grpc-accept-encoding, so a compressed message is a broken peer.
      if (head[0] !== 0) return { type: 'compressed' };
      const length = head.readUInt32BE(1);
      if (length > this.maxMessageBytes) return { type: 'tooLarge', bytes: length };
      if (this.pendingBytes < PREFIX_BYTES + length) return { type: 'ok' };
      const all = this.take(PREFIX_BYTES + length);
      this.messages.push(all.subarray(PREFIX_BYTES));
    }
  }

  /** Bytes left over that do not make a whole message. */
  get leftover(): number {
    return this.pendingBytes;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!;
    this.pending = [Buffer.concat(this.pending)];
    return this.pending[0]!;
  }

  private take(n: number): Buffer {
    const joined = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const out = joined.subarray(0, n);
    const rest = joined.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingBytes = rest.length;
    return out;
  }
}
