import { createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { secureRandomBytes } from '../core/random-pool.js';
import { z } from 'zod';
import { canonicalJson } from '../core/canonical-json.js';
import { listedKey } from '../core/listed-key.js';
import { isRecord, isText, onlyKeys, parseWithTwin } from '../core/shape.js';

// Every message on the bus is an envelope signed by its sender. The receiver checks the signature
// against the sender's certificate as the signed directory lists it, so the bus itself (NATS, or
// whoever can publish on it) is never trusted.

const errorObject = z.strictObject({ code: z.number().int(), message: z.string().max(4096), data: z.unknown().optional() });

const common = {
  v: z.literal(1),
  from: z.string().min(1).max(128),
  to: z.string().min(1).max(128),
  id: z.string().min(1).max(128),
  /** Sender's clock, ms since the epoch: bounds how long a captured envelope can be replayed. */
  ts: z.number().int().nonnegative(),
  /** 16 random bytes, base64: with `from`, identifies the envelope in the replay cache. */
  nonce: z.string().min(16).max(64),
  sig: z.string().min(1).max(1024),
};

export const requestEnvelopeSchema = z.strictObject({
  ...common,
  kind: z.literal('request'),
  method: z.string().min(1).max(128),
  params: z.record(z.string(), z.unknown()),
});

export const responseEnvelopeSchema = z.strictObject({
  ...common,
  kind: z.literal('response'),
  result: z.unknown().optional(),
  error: errorObject.optional(),
});

export const envelopeSchema = z.discriminatedUnion('kind', [requestEnvelopeSchema, responseEnvelopeSchema]);

export type RequestEnvelope = z.infer<typeof requestEnvelopeSchema>;
export type ResponseEnvelope = z.infer<typeof responseEnvelopeSchema>;
export type Envelope = z.infer<typeof envelopeSchema>;

type Unsigned<E> = Omit<E, 'sig' | 'nonce' | 'ts' | 'v'>;

export interface Signer {
  name: string;
  key: KeyObject;
}

export function createSigner(name: string, keyPem: Buffer | string): Signer {
  return { name, key: createPrivateKey(keyPem) };
}

function signingBytes(env: Omit<Envelope, 'sig'>): Buffer {
  return Buffer.from(canonicalJson(env), 'utf8');
}

export function sealEnvelope<E extends Envelope>(signer: Signer, body: Unsigned<E>, now = Date.now()): E {
  const unsigned = { ...body, v: 1 as const, ts: now, nonce: secureRandomBytes(16).toString('base64') } as Omit<E, 'sig'>;
  const sig = sign('sha256', signingBytes(unsigned as Omit<Envelope, 'sig'>), signer.key).toString('base64');
  return { ...unsigned, sig } as E;
}

/** Why an envelope was refused; each maps to a precise error for the sender and a log line. */
export type EnvelopeRefusal =
  | { ok: false; code: 'MALFORMED'; detail: string }
  | { ok: false; code: 'OVERSIZED'; detail: string }
  | { ok: false; code: 'UNKNOWN_SENDER'; detail: string }
  | { ok: false; code: 'BAD_SIGNATURE'; detail: string }
  | { ok: false; code: 'STALE'; detail: string }
  | { ok: false; code: 'REPLAYED'; detail: string }
  | { ok: false; code: 'MISADDRESSED'; detail: string };

export type EnvelopeCheck = { ok: true; envelope: Envelope } | EnvelopeRefusal;

export interface EnvelopeCheckOptions {
  self: string;
  /** Certificate of an operator as the directory lists it, or undefined if unknown. */
  certificateOf: (operator: string) => { certificate: string; fingerprint: string } | undefined;
  replay: ReplayCache;
  maxAgeMs: number;
  maxBytes: number;
  now?: number;
}

const COMMON_KEYS = ['v', 'from', 'to', 'id', 'ts', 'nonce', 'sig', 'kind'] as const;
const REQUEST_KEYS = new Set<string>([...COMMON_KEYS, 'method', 'params']);
const RESPONSE_KEYS = new Set<string>([...COMMON_KEYS, 'result', 'error']);
const ERROR_KEYS = new Set(['code', 'message', 'data']);

/**
 * The envelope schema's checks written out, for what arrives from JSON.parse: the envelope when
 * every check passes, undefined otherwise, and then the schema itself decides and words the refusal.
 * Why: a process wakes cold for each brokering, and zod's parse of one envelope then takes ~130 µs
 * (13 hot) on the critical path of every hop. It accepts nothing the schema refuses (test/unit/
 * envelope.test.ts holds them to the same verdicts) and returns what the schema would: `params`
 * and `error` copied, a `__proto__` key in `params` left to zod (which drops it).
 */
export function wellFormed(raw: unknown): Envelope | undefined {
  if (!isRecord(raw)) return undefined;
  const { v, from, to, id, ts, nonce, sig, kind } = raw;
  if (v !== 1 || !isText(from, 1, 128) || !isText(to, 1, 128) || !isText(id, 1, 128) || !isText(nonce, 16, 64) || !isText(sig, 1, 1024)) return undefined;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) return undefined;
  if (kind === 'request') {
    const { method, params } = raw;
    if (!onlyKeys(raw, REQUEST_KEYS) || !isText(method, 1, 128) || !isRecord(params) || Object.hasOwn(params, '__proto__')) return undefined;
    return { v, from, to, id, ts, nonce, sig, kind, method, params: { ...params } };
  }
  if (kind !== 'response' || !onlyKeys(raw, RESPONSE_KEYS)) return undefined;
  const env: ResponseEnvelope = { v, from, to, id, ts, nonce, sig, kind };
  if ('result' in raw) env.result = raw.result;
  if ('error' in raw) {
    const error = raw.error;
    if (!isRecord(error) || !onlyKeys(error, ERROR_KEYS)) return undefined;
    const { code, message } = error;
    if (typeof code !== 'number' || !Number.isSafeInteger(code) || !isText(message, 0, 4096)) return undefined;
    env.error = 'data' in error ? { code, message, data: error.data } : { code, message };
  }
  return env;
}

/** Decodes and checks an envelope: size, shape, addressee, sender, signature, age, replay, in that order. */
export function openEnvelope(data: Uint8Array, opts: EnvelopeCheckOptions): EnvelopeCheck {
  if (data.length > opts.maxBytes) {
    return { ok: false, code: 'OVERSIZED', detail: `${data.length} bytes exceeds the limit of ${opts.maxBytes}` };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch {
    return { ok: false, code: 'MALFORMED', detail: 'not JSON' };
  }
  const parsed = parseWithTwin(envelopeSchema, wellFormed, raw);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || 'envelope'}: ${i.message}`).join('; ');
    return { ok: false, code: 'MALFORMED', detail };
  }
  const env = parsed.data;
  if (env.to !== opts.self) return { ok: false, code: 'MISADDRESSED', detail: `addressed to ${env.to}, not ${opts.self}` };
  const known = opts.certificateOf(env.from);
  if (!known) return { ok: false, code: 'UNKNOWN_SENDER', detail: `${env.from} is not in the directory` };
  const key = listedKey(known);
  if (typeof key === 'string') return { ok: false, code: 'UNKNOWN_SENDER', detail: `${env.from}: ${key}` };
  // Verify what arrived, not the schema's output: zod drops a `__proto__` key inside `params`,
  // so checking the parsed copy would accept bytes the sender never signed.
  const { sig: _sig, ...received } = raw as Record<string, unknown>;
  const { sig } = env;
  let valid = false;
  try {
    valid = verify('sha256', signingBytes(received as Omit<Envelope, 'sig'>), key, Buffer.from(sig, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, code: 'BAD_SIGNATURE', detail: `signature does not match ${env.from}'s certificate` };
  const now = opts.now ?? Date.now();
  if (Math.abs(now - env.ts) > opts.maxAgeMs) {
    return { ok: false, code: 'STALE', detail: `sent ${now - env.ts} ms ago; the limit is ${opts.maxAgeMs} ms` };
  }
  if (!opts.replay.remember(`${env.from}|${env.nonce}`, env.ts + opts.maxAgeMs, now)) {
    return { ok: false, code: 'REPLAYED', detail: `nonce already seen from ${env.from}` };
  }
  return { ok: true, envelope: env };
}

/**
 * Nonces seen within the freshness window. An envelope older than the window is refused as stale
 * anyway, so a nonce can be forgotten once the window has passed: the cache stays bounded.
 */
export class ReplayCache {
  private readonly expiries = new Map<string, number>();
  private lastSweep = 0;

  constructor(private readonly maxEntries = 100_000) {}

  /** Returns false when the key was already seen and has not expired. */
  remember(key: string, expiresAt: number, now: number): boolean {
    this.sweep(now);
    const seen = this.expiries.get(key);
    if (seen !== undefined && seen >= now) return false;
    if (this.expiries.size >= this.maxEntries) return false; // under a flood, refuse rather than forget
    this.expiries.set(key, expiresAt);
    return true;
  }

  get size(): number {
    return this.expiries.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    for (const [k, exp] of this.expiries) if (exp < now) this.expiries.delete(k);
  }
}
