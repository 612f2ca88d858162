import { isIPv4, isIPv6 } from 'node:net';

// STUN (RFC 8489) message codec and the Binding server's answer, with no sockets: the UDP server
// and the client only move datagrams, so every rule here is testable with byte vectors.

export const MAGIC_COOKIE = 0x2112a442;
export const HEADER_BYTES = 20;
export const METHOD_BINDING = 0x001;
/** CRC-32 of the message is XORed with this ("STUN") so it differs from other protocols' CRCs. */
export const FINGERPRINT_XOR = 0x5354554e;

export const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014,
  NONCE: 0x0015,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  PASSWORD_ALGORITHM: 0x001d,
  USERHASH: 0x001e,
  XOR_MAPPED_ADDRESS: 0x0020,
  PASSWORD_ALGORITHMS: 0x8002,
  ALTERNATE_DOMAIN: 0x8003,
  SOFTWARE: 0x8022,
  ALTERNATE_SERVER: 0x8023,
  FINGERPRINT: 0x8028,
} as const;

/**
 * Comprehension-required attributes (below 0x8000) this server understands. Authentication
 * attributes count as understood: the server runs without credentials, as RFC 8489 allows for
 * Binding, so it accepts and ignores them rather than refusing clients that always send them.
 */
const KNOWN_REQUIRED = new Set<number>([
  ATTR.MAPPED_ADDRESS,
  ATTR.USERNAME,
  ATTR.MESSAGE_INTEGRITY,
  ATTR.ERROR_CODE,
  ATTR.UNKNOWN_ATTRIBUTES,
  ATTR.REALM,
  ATTR.NONCE,
  ATTR.MESSAGE_INTEGRITY_SHA256,
  ATTR.PASSWORD_ALGORITHM,
  ATTR.USERHASH,
  ATTR.XOR_MAPPED_ADDRESS,
]);

export type StunClass = 'request' | 'indication' | 'success' | 'error';
const CLASS_BITS: Record<StunClass, number> = { request: 0b00, indication: 0b01, success: 0b10, error: 0b11 };
const CLASSES: StunClass[] = ['request', 'indication', 'success', 'error'];

export interface StunAttribute {
  type: number;
  value: Buffer;
}

export interface StunMessage {
  method: number;
  cls: StunClass;
  transactionId: Buffer;
  attributes: StunAttribute[];
}

export interface TransportAddress {
  family: 'IPv4' | 'IPv6';
  address: string;
  port: number;
}

export type DecodeResult = { type: 'ok'; message: StunMessage } | { type: 'invalid'; reason: string };

/** The method's 12 bits and the class's 2 bits interleave in the 14-bit type (RFC 8489 §5). */
export function messageType(method: number, cls: StunClass): number {
  const c = CLASS_BITS[cls];
  return ((method & 0xf80) << 2) | ((method & 0x070) << 1) | (method & 0x00f) | ((c & 0b10) << 7) | ((c & 0b01) << 4);
}

function splitType(t: number): { method: number; cls: StunClass } {
  const method = (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2);
  const c = ((t >> 7) & 0b10) | ((t >> 4) & 0b01);
  return { method, cls: CLASSES[c]! };
}

/** Cheap demultiplexing test (RFC 8489 §7): top bits zero, cookie present, length sane. */
export function looksLikeStun(buf: Buffer): boolean {
  return (
    buf.length >= HEADER_BYTES &&
    (buf[0]! & 0xc0) === 0 &&
    buf.readUInt32BE(4) === MAGIC_COOKIE &&
    buf.readUInt16BE(2) % 4 === 0 &&
    buf.readUInt16BE(2) + HEADER_BYTES === buf.length
  );
}

/** Parses and validates a whole message, FINGERPRINT included when present. */
export function decodeStun(buf: Buffer): DecodeResult {
  if (buf.length < HEADER_BYTES) return { type: 'invalid', reason: `${buf.length} bytes: shorter than the 20-byte header` };
  if ((buf[0]! & 0xc0) !== 0) return { type: 'invalid', reason: 'the two leading bits are not zero' };
  if (buf.readUInt32BE(4) !== MAGIC_COOKIE) return { type: 'invalid', reason: 'no magic cookie (an RFC 3489 client?)' };
  const length = buf.readUInt16BE(2);
  if (length % 4 !== 0) return { type: 'invalid', reason: `length ${length} is not a multiple of 4` };
  if (length + HEADER_BYTES !== buf.length) {
    return { type: 'invalid', reason: `length ${length} does not match the ${buf.length - HEADER_BYTES} bytes after the header` };
  }
  const attributes: StunAttribute[] = [];
  let offset = HEADER_BYTES;
  while (offset < buf.length) {
    if (offset + 4 > buf.length) return { type: 'invalid', reason: 'truncated attribute header' };
    const type = buf.readUInt16BE(offset);
    const len = buf.readUInt16BE(offset + 2);
    const end = offset + 4 + len;
    if (end > buf.length) return { type: 'invalid', reason: `attribute 0x${type.toString(16)} overruns the message` };
    if (attributes.some((a) => a.type === ATTR.FINGERPRINT)) return { type: 'invalid', reason: 'FINGERPRINT is not the last attribute' };
    if (type === ATTR.FINGERPRINT) {
      if (len !== 4) return { type: 'invalid', reason: 'FINGERPRINT must be 4 bytes' };
      const expected = (crc32(buf.subarray(0, offset)) ^ FINGERPRINT_XOR) >>> 0;
      if (buf.readUInt32BE(offset + 4) !== expected) return { type: 'invalid', reason: 'FINGERPRINT does not match' };
    }
    attributes.push({ type, value: buf.subarray(offset + 4, end) });
    offset = end + ((4 - (len % 4)) % 4);
  }
  if (offset !== buf.length) return { type: 'invalid', reason: 'attribute padding overruns the message' };
  const { method, cls } = splitType(buf.readUInt16BE(0));
  return { type: 'ok', message: { method, cls, transactionId: Buffer.from(buf.subarray(8, HEADER_BYTES)), attributes } };
}

/** Encodes a message; FINGERPRINT, when asked for, is computed last over everything before it. */
export function encodeStun(message: StunMessage, opts: { fingerprint?: boolean } = {}): Buffer {
  if (message.transactionId.length !== 12) throw new Error('a transaction id is 12 bytes');
  const parts: Buffer[] = [];
  for (const a of message.attributes) {
    const header = Buffer.alloc(4);
    header.writeUInt16BE(a.type, 0);
    header.writeUInt16BE(a.value.length, 2);
    parts.push(header, a.value, Buffer.alloc((4 - (a.value.length % 4)) % 4));
  }
  const body = Buffer.concat(parts);
  const fpBytes = opts.fingerprint ? 8 : 0;
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt16BE(messageType(message.method, message.cls), 0);
  // The length covers FINGERPRINT before its CRC is computed (RFC 8489 §14.7).
  header.writeUInt16BE(body.length + fpBytes, 2);
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  message.transactionId.copy(header, 8);
  const unsigned = Buffer.concat([header, body]);
  if (!opts.fingerprint) return unsigned;
  const fp = Buffer.alloc(8);
  fp.writeUInt16BE(ATTR.FINGERPRINT, 0);
  fp.writeUInt16BE(4, 2);
  fp.writeUInt32BE((crc32(unsigned) ^ FINGERPRINT_XOR) >>> 0, 4);
  return Buffer.concat([unsigned, fp]);
}

/** XOR-MAPPED-ADDRESS value: the port with the cookie's top half, the address with cookie (+ id). */
export function encodeXorAddress(addr: TransportAddress, transactionId: Buffer): Buffer {
  const raw = addr.family === 'IPv4' ? ipv4Bytes(addr.address) : ipv6Bytes(addr.address);
  const out = Buffer.alloc(4 + raw.length);
  out[1] = addr.family === 'IPv4' ? 0x01 : 0x02;
  out.writeUInt16BE(addr.port ^ (MAGIC_COOKIE >>> 16), 2);
  const mask = xorMask(transactionId);
  for (let i = 0; i < raw.length; i++) out[4 + i] = raw[i]! ^ mask[i]!;
  return out;
}

export function decodeXorAddress(value: Buffer, transactionId: Buffer): TransportAddress | undefined {
  const family = value[1];
  const size = family === 0x01 ? 4 : family === 0x02 ? 16 : 0;
  if (size === 0 || value.length !== 4 + size) return undefined;
  const mask = xorMask(transactionId);
  const raw = Buffer.alloc(size);
  for (let i = 0; i < size; i++) raw[i] = value[4 + i]! ^ mask[i]!;
  const port = value.readUInt16BE(2) ^ (MAGIC_COOKIE >>> 16);
  if (size === 4) return { family: 'IPv4', address: [...raw].join('.'), port };
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
  return { family: 'IPv6', address: compressIPv6(groups), port };
}

/** ERROR-CODE value: class (hundreds) and number in separate fields, then the reason phrase. */
export function encodeErrorCode(code: number, reason: string): Buffer {
  const phrase = Buffer.from(reason, 'utf8');
  const out = Buffer.alloc(4 + phrase.length);
  out[2] = Math.floor(code / 100) & 0x07;
  out[3] = code % 100;
  phrase.copy(out, 4);
  return out;
}

export function decodeErrorCode(value: Buffer): { code: number; reason: string } | undefined {
  if (value.length < 4) return undefined;
  return { code: (value[2]! & 0x07) * 100 + value[3]!, reason: value.subarray(4).toString('utf8') };
}

export function encodeUnknownAttributes(types: number[]): Buffer {
  const out = Buffer.alloc(types.length * 2);
  types.forEach((t, i) => out.writeUInt16BE(t, i * 2));
  return out;
}

/** SOFTWARE must stay under 128 characters (RFC 8489 §14.14). */
export function encodeSoftware(software: string): Buffer {
  return Buffer.from([...software].slice(0, 127).join(''), 'utf8');
}

export type BindingAnswer = { type: 'reply'; bytes: Buffer; kind: 'success' | 'error'; code?: number } | { type: 'drop'; reason: string };

/**
 * What the server sends back for one datagram from `from`. Invalid messages and anything that is
 * not a request are dropped silently (RFC 8489 §6.3), and so is a request for another method: a
 * spoofed source would otherwise draw an error answer several times the request's size. A Binding
 * request with a comprehension-required attribute we do not know gets 420 listing them. Answers
 * carry what they must and no more: the error reason phrases are empty (they are only for
 * diagnostics) and SOFTWARE (20 bytes) only when `software` is set, so a minimal 20-byte request
 * draws a 40-byte answer over IPv4 (32 without FINGERPRINT), 52 over IPv6.
 */
export function answerBinding(datagram: Buffer, from: TransportAddress, opts: { software?: string; fingerprint: boolean }): BindingAnswer {
  const decoded = decodeStun(datagram);
  if (decoded.type === 'invalid') return { type: 'drop', reason: decoded.reason };
  const { message } = decoded;
  if (message.cls !== 'request') return { type: 'drop', reason: `a ${message.cls}, not a request` };
  if (message.method !== METHOD_BINDING) return { type: 'drop', reason: `method 0x${message.method.toString(16)}: only Binding is served` };
  const software: StunAttribute[] = opts.software ? [{ type: ATTR.SOFTWARE, value: encodeSoftware(opts.software) }] : [];
  const unknown = [...new Set(message.attributes.map((a) => a.type).filter((t) => t < 0x8000 && !KNOWN_REQUIRED.has(t)))];
  if (unknown.length > 0) {
    const attributes = [{ type: ATTR.ERROR_CODE, value: encodeErrorCode(420, '') }, { type: ATTR.UNKNOWN_ATTRIBUTES, value: encodeUnknownAttributes(unknown) }, ...software];
    const bytes = encodeStun({ method: message.method, cls: 'error', transactionId: message.transactionId, attributes }, { fingerprint: opts.fingerprint });
    return { type: 'reply', kind: 'error', code: 420, bytes };
  }
  return {
    type: 'reply',
    kind: 'success',
    bytes: encodeStun(
      {
        method: METHOD_BINDING,
        cls: 'success',
        transactionId: message.transactionId,
        attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: encodeXorAddress(from, message.transactionId) }, ...software],
      },
      { fingerprint: opts.fingerprint },
    ),
  };
}

/** A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; they are IPv4 on the wire. */
export function transportAddress(address: string, port: number): TransportAddress {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return { family: 'IPv4', address: mapped[1]!, port };
  return { family: isIPv4(address) ? 'IPv4' : 'IPv6', address, port };
}

function xorMask(transactionId: Buffer): Buffer {
  const mask = Buffer.alloc(16);
  mask.writeUInt32BE(MAGIC_COOKIE, 0);
  transactionId.copy(mask, 4);
  return mask;
}

function ipv4Bytes(address: string): Buffer {
  if (!isIPv4(address)) throw new Error(`not an IPv4 address: ${address}`);
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  const bare = address.replace(/%.*$/, '');
  if (!isIPv6(bare)) throw new Error(`not an IPv6 address: ${address}`);
  let text = bare;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipv4Bytes(v4[1]!);
    text = text.slice(0, v4.index) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** RFC 5952 text: the longest run (two or more) of zero groups becomes "::". */
function compressIPv6(groups: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 as in ITU V.42 / zlib (what FINGERPRINT uses); Node 20.0 has no zlib.crc32 yet. */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
