import { BlockList, isIP } from 'node:net';

// What may leave the process through the inspector. Everything the page shows passes through
// redact(): an allow-list of shapes (primitives, plain objects, arrays), so a socket, a Buffer or
// a class instance that slips into an event is named, never serialised; keys that name secrets
// lose their values; and any address in a private range loses its host.

export const REDACTED = '[redacted]';

/** Hosts that say where an operator's machines sit inside their own network. */
const PRIVATE = new BlockList();
PRIVATE.addSubnet('0.0.0.0', 8, 'ipv4');
PRIVATE.addSubnet('10.0.0.0', 8, 'ipv4');
PRIVATE.addSubnet('100.64.0.0', 10, 'ipv4'); // carrier-grade NAT (RFC 6598)
PRIVATE.addSubnet('127.0.0.0', 8, 'ipv4');
PRIVATE.addSubnet('169.254.0.0', 16, 'ipv4');
PRIVATE.addSubnet('172.16.0.0', 12, 'ipv4');
PRIVATE.addSubnet('192.168.0.0', 16, 'ipv4');
PRIVATE.addAddress('::', 'ipv6');
PRIVATE.addAddress('::1', 'ipv6');
PRIVATE.addSubnet('fc00::', 7, 'ipv6'); // unique local
PRIVATE.addSubnet('fe80::', 10, 'ipv6'); // link local

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is checked as the IPv4 address it carries. */
function unmapped(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

function inList(list: BlockList, ip: string): boolean {
  const addr = unmapped(ip);
  const family = isIP(addr);
  return family !== 0 && list.check(addr, family === 4 ? 'ipv4' : 'ipv6');
}

export const isPrivateIp = (ip: string): boolean => inList(PRIVATE, ip);
export const isLoopbackIp = (ip: string | undefined): boolean => ip !== undefined && inList(LOOPBACK, ip);

/** `ip`, `ip:port` or `[ipv6]:port` split into host and port; undefined for anything else. */
function parseAddress(text: string): { host: string; port: string | undefined; bracketed: boolean } | undefined {
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/.exec(text);
  if (v6) return isIP(v6[1]!) ? { host: v6[1]!, port: v6[2], bracketed: true } : undefined;
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(text);
  if (v4) return isIP(v4[1]!) ? { host: v4[1]!, port: v4[2], bracketed: false } : undefined;
  return isIP(text) ? { host: text, port: undefined, bracketed: false } : undefined;
}

/** A private address keeps only its port (`private:40123`); public ones and other text pass. */
export function redactAddress(text: string): string {
  const a = parseAddress(text);
  if (!a || !isPrivateIp(a.host)) return text;
  return a.port === undefined ? 'private' : `private:${a.port}`;
}

/**
 * Keys whose values are secrets or identify a secret: tokens, keys, the games' secret hash, and
 * peer ids (a guest's peer id keys the HMAC of its hole-punching probes).
 */
// Matching too much only hides a value; matching too little leaks one.
const SECRET_KEY = /token|secret|password|passphrase|signature|hash|nonce|authori[sz]ation|cookie|peer_?id|key|cert/i;

export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key);

export interface RedactLimits {
  depth: number;
  items: number;
  chars: number;
}

const LIMITS: RedactLimits = { depth: 5, items: 64, chars: 300 };

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A JSON-safe copy of `value` with secrets, private addresses and foreign objects taken out. */
export function redact(value: unknown, limits: RedactLimits = LIMITS, depth = 0): unknown {
  if (value === null || value === undefined) return value ?? null;
  switch (typeof value) {
    case 'string': {
      const text = redactAddress(value);
      return text.length > limits.chars ? `${text.slice(0, limits.chars)}…` : text;
    }
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'function':
    case 'symbol':
      return undefined;
  }
  const obj = value as object;
  if (obj instanceof Uint8Array) return `[${obj.byteLength} bytes]`;
  if (obj instanceof Error) return { error: redact(obj.message, limits, depth + 1) };
  if (depth >= limits.depth) return '[…]';
  if (Array.isArray(obj)) {
    const out = obj.slice(0, limits.items).map((v) => redact(v, limits, depth + 1) ?? null);
    if (obj.length > limits.items) out.push(`… ${obj.length - limits.items} more`);
    return out;
  }
  if (!isPlainObject(obj)) return `[${obj.constructor?.name || 'object'}]`;
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(obj)) {
    if (n++ >= limits.items) break;
    if (isSecretKey(k)) {
      out[k] = REDACTED;
      continue;
    }
    const r = redact(v, limits, depth + 1);
    if (r !== undefined) out[k] = r;
  }
  return out;
}
