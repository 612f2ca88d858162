import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { connectionForwardSchema, connectionForwardTwin } from '../../src/eps/callbacks.js';
import { confirmationSchema, confirmationTwin } from '../../src/eps/peer-channels.js';
import { connectionRequestSchema, connectionRequestTwin } from '../../src/proxy/connection-requests.js';
import { requestSchema, requestTwin } from '../../src/jsonrpc/protocol.js';

// The brokering's parameter checks take a hand-written twin's answer when it accepts, and ask zod
// otherwise (src/core/shape.ts). So each twin must accept nothing its schema refuses and return
// exactly what the schema returns; and it must accept the genuine messages, or it saves nothing.

const SEED = Number(process.env.HOSTILE_SEED ?? 20_261_201);
const TOKEN = Buffer.alloc(32, 7).toString('base64');

const oddValue = fc.oneof(
  fc.string({ maxLength: 3 }),
  fc.string({ minLength: 127, maxLength: 130 }),
  fc.constantFrom(1e400, -0, 2.5, '2.0', '1.0', ''),
  fc.constantFrom('', TOKEN, `${TOKEN.slice(0, 42)}==`, `${TOKEN}A`, TOKEN.replace('B', '-'), 'grpc_server', 'grpc', '127.0.0.1:1', 'host:0', 'host:65536', '[::1]:443', '::1:443', 'a b:1', `${'h'.repeat(295)}:1234`, `${'h'.repeat(296)}:1234`),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 2 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }),
);

interface Case {
  name: string;
  schema: z.ZodType;
  twin: (raw: unknown) => unknown;
  genuine: Record<string, unknown>[];
}

const cases: Case[] = [
  { name: 'connectionRequest', schema: connectionRequestSchema, twin: connectionRequestTwin, genuine: [{ to: 'hd-2', channel: 'grpc_server' }, { to: 'hd-2' }] },
  {
    name: 'connectionForward',
    schema: connectionForwardSchema,
    twin: connectionForwardTwin,
    genuine: [{ requester: 'hd-1', token: TOKEN, challenge: TOKEN, endpoint: '127.0.0.1:4443', sessionId: 'b1f0e5c2-0000-4000-8000-000000000000' }],
  },
  {
    name: 'confirmation',
    schema: confirmationSchema,
    twin: confirmationTwin,
    genuine: [{ token: TOKEN, challenge: TOKEN, endpoint: 'proxy.example:443', sessionId: 'b1f0e5c2-0000-4000-8000-000000000000' }],
  },
  {
    name: 'JSON-RPC request',
    schema: requestSchema,
    twin: requestTwin,
    genuine: [
      { jsonrpc: '2.0', method: 'hd-2.echo', params: { text: 'hi' }, id: 'c-1' },
      { jsonrpc: '2.0', method: 'hd-2.echo', params: ['hi', 1], id: 7 },
      { jsonrpc: '2.0', method: 'hd-2.echo', id: null },
      { jsonrpc: '2.0', method: 'notify' },
    ],
  },
];

describe('hand-written twins of the brokering schemas', () => {
  for (const c of cases) {
    const keys = [...new Set([...c.genuine.flatMap((g) => Object.keys(g)), 'extra', '__proto__', 'constructor'])];
    const candidate = fc
      .tuple(fc.constantFrom(...c.genuine), fc.array(fc.tuple(fc.constantFrom(...keys), fc.option(oddValue, { nil: undefined })), { maxLength: 3 }))
      .map(([base, edits]) => {
        const o: Record<string, unknown> = { ...base };
        for (const [k, v] of edits) {
          if (v === undefined) delete o[k];
          else Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
        }
        return JSON.parse(JSON.stringify(o)) as unknown;
      });

    it(`${c.name} - the twin accepts only what the schema accepts, and returns what it returns`, () => {
      fc.assert(
        fc.property(fc.oneof(candidate, fc.jsonValue({ maxDepth: 2 })), (raw) => {
          const fast = c.twin(raw);
          if (fast === undefined) return;
          const parsed = c.schema.safeParse(raw);
          expect(parsed.success).toBe(true);
          expect(fast).toStrictEqual(parsed.data);
        }),
        { seed: SEED, numRuns: 3_000 },
      );
    });

    it(`${c.name} - genuine messages take the twin`, () => {
      for (const g of c.genuine) expect(c.twin(JSON.parse(JSON.stringify(g)))).toStrictEqual(c.schema.parse(g));
    });
  }
});
