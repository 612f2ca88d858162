import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { envelopeSchema, wellFormed } from '../../src/bus/envelope.js';

// openEnvelope checks an envelope's shape by hand first and asks zod only when that check fails
// (zod then decides, and words the refusal). So the hand check must accept nothing zod refuses and
// return exactly what zod returns; and it must accept genuine envelopes, or it saves nothing.

const SEED = Number(process.env.HOSTILE_SEED ?? 20_261_201);

const text = (min: number, max: number) => fc.string({ minLength: min, maxLength: max });
/** Around each bound of the schema, and the wrong types. */
const oddString = fc.oneof(text(0, 0), text(1, 3), fc.string({ minLength: 15, maxLength: 17 }), fc.string({ minLength: 63, maxLength: 66 }), fc.string({ minLength: 127, maxLength: 130 }));
const oddValue = fc.oneof(
  oddString,
  fc.integer(),
  fc.constantFrom(-0, 0, 1, -1, 1.5, 2 ** 53, 2 ** 53 - 1, -(2 ** 53), 1e300),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 2 }),
  fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'a', 'code', 'message', 'data', 'toString'), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
);

const base = (kind: 'request' | 'response') => ({
  v: 1,
  from: 'hd-1',
  to: 'public-proxy-eps-1',
  id: 'a3f1c2d4-0000-4000-8000-000000000000',
  ts: 1_764_560_000_000,
  nonce: 'AAAAAAAAAAAAAAAAAAAAAA==',
  sig: 'MEUCIQ==',
  kind,
  ...(kind === 'request' ? { method: 'connectionRequest', params: { to: 'hd-2', channel: 'grpc_server' } } : { result: { ok: true } }),
});

const KEYS = ['v', 'from', 'to', 'id', 'ts', 'nonce', 'sig', 'kind', 'method', 'params', 'result', 'error', 'extra', '__proto__'];

/** A genuine-looking envelope with up to three keys set to odd values or dropped, as JSON text parsed. */
const candidate = fc
  .tuple(fc.constantFrom('request' as const, 'response' as const), fc.array(fc.tuple(fc.constantFrom(...KEYS), fc.option(oddValue, { nil: undefined })), { maxLength: 3 }))
  .map(([kind, edits]) => {
    const env: Record<string, unknown> = base(kind);
    for (const [k, v] of edits) {
      if (v === undefined) delete env[k];
      else Object.defineProperty(env, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
    return JSON.parse(JSON.stringify(env)) as unknown;
  });

/** What JSON text may hold where an envelope is expected. */
const anything = fc.oneof(candidate, fc.jsonValue({ maxDepth: 3 }));

describe('envelope shape check', () => {
  it('envelope - the hand check accepts only what the schema accepts, and returns what it returns', () => {
    fc.assert(
      fc.property(anything, (raw) => {
        const fast = wellFormed(raw);
        const parsed = envelopeSchema.safeParse(raw);
        if (fast === undefined) return;
        expect(parsed.success).toBe(true);
        expect(fast).toStrictEqual(parsed.data);
      }),
      { seed: SEED, numRuns: 5_000 },
    );
  });

  it('envelope - genuine requests and responses take the hand check', () => {
    const request = base('request');
    const refusal = { ...base('response'), result: undefined, error: { code: -32001, message: 'no', data: { limit: 'proxy' } } };
    const { result: _r, ...withError } = refusal;
    for (const env of [request, base('response'), withError, { ...request, params: {} }]) {
      const raw = JSON.parse(JSON.stringify(env)) as unknown;
      expect(wellFormed(raw)).toStrictEqual(envelopeSchema.parse(raw));
    }
  });

  it('envelope - a __proto__ key in params is left to the schema', () => {
    const raw = JSON.parse('{"v":1,"from":"hd-1","to":"hd-2","id":"x","ts":1,"nonce":"AAAAAAAAAAAAAAAAAAAAAA==","sig":"s","kind":"request","method":"m","params":{"__proto__":{"a":1},"b":2}}') as unknown;
    expect(wellFormed(raw)).toBeUndefined();
    expect(envelopeSchema.safeParse(raw).success).toBe(true);
  });
});
