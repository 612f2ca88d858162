import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, busSubject } from '../../src/bus/bus.js';
import { busFailureOf } from '../../src/bus/bus-errors.js';
import {
  ReplayCache,
  createSigner,
  openEnvelope,
  sealEnvelope,
  type EnvelopeRefusal,
  type RequestEnvelope,
  type ResponseEnvelope,
} from '../../src/bus/envelope.js';
import { canonicalJson } from '../../src/core/canonical-json.js';
import { inboxPrefixOf } from '../../src/core/nats.js';
import type { RpcError } from '../../src/core/errors.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { waitFor } from './helpers.js';

// Forged, replayed, stale, oversized and malformed envelopes: fast-check mutates one valid
// sealed envelope, and each mutation names the refusal it must get, first from openEnvelope
// alone, then from a Bus serving a method on a real nats-server (whose handler must never run).

const CERTS = 'settings/dev/certs';
const pem = (n: string) => readFileSync(`${CERTS}/${n}`, 'utf8');
const log = pino({ level: 'silent' });
const SEED = Number(process.env.HOSTILE_SEED ?? 20_240_611);
const MAX_AGE_MS = 30_000;
const MAX_BYTES = 8 * 1024;
const SELF = 'hd-2';

const directory: Record<string, { certificate: string; fingerprint: string }> = Object.fromEntries(
  ['hd-1', 'hd-2', 'public-proxy-eps-1'].map((n) => [n, { certificate: pem(`${n}.crt`), fingerprint: fingerprintOf(pem(`${n}.crt`)) }]),
);
const hd1 = createSigner('hd-1', pem('hd-1.key'));

type Code = EnvelopeRefusal['code'];
type Obj = Record<string, unknown>;

/** A fresh, valid request from hd-1 to hd-2; every mutation starts from one of these. */
function sealed(method = '_ping', params: Obj = { probe: 1 }, now = Date.now()): RequestEnvelope {
  return sealEnvelope<RequestEnvelope>(hd1, { kind: 'request', from: 'hd-1', to: SELF, id: 'req-1', method, params }, now);
}

/** A mutation: what it does to the envelope (or its bytes) and the refusal it must earn. */
interface Mutation {
  what: string;
  code: Code;
  apply: (env: Obj) => Obj | Buffer;
}

const FIELDS = ['v', 'kind', 'from', 'to', 'id', 'ts', 'nonce', 'sig', 'method', 'params'] as const;
const STRING_FIELDS = ['kind', 'from', 'to', 'id', 'nonce', 'sig', 'method'] as const;
const notString = fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }), fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }));
const set = (field: string, value: unknown) => (env: Obj) => ({ ...env, [field]: value });
const differs = (a: unknown) => (b: unknown) => canonicalJson(a) !== canonicalJson(b);

function mutations(base: Obj): fc.Arbitrary<Mutation> {
  const now = base.ts as number;
  const malformed: fc.Arbitrary<Mutation>[] = [
    fc.constantFrom(...FIELDS).map((f) => ({
      what: `drop ${f}`,
      code: 'MALFORMED' as const,
      apply: (env: Obj) => Object.fromEntries(Object.entries(env).filter(([k]) => k !== f)),
    })),
    fc
      .tuple(fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'result', 'error')), fc.jsonValue({ maxDepth: 1 }))
      .filter(([k]) => !(FIELDS as readonly string[]).includes(k))
      .map(([k, v]) => ({
        what: `add ${JSON.stringify(k)}`,
        code: 'MALFORMED' as const,
        // Object.defineProperty, so `__proto__` becomes a real key of the JSON text.
        apply: (env: Obj) => Object.defineProperty({ ...env }, k, { value: v, enumerable: true }),
      })),
    fc.tuple(fc.constantFrom(...STRING_FIELDS), notString).map(([f, v]) => ({ what: `${f} as ${JSON.stringify(v)}`, code: 'MALFORMED' as const, apply: set(f, v) })),
    fc
      .oneof(fc.string(), fc.boolean(), fc.constant(null), fc.integer({ max: -1 }), fc.double({ noInteger: true }), fc.constant(Number.MAX_SAFE_INTEGER + 2))
      .map((v) => ({ what: `ts as ${JSON.stringify(v)}`, code: 'MALFORMED' as const, apply: set('ts', v) })),
    fc.jsonValue({ maxDepth: 1 }).filter((v) => v !== 1).map((v) => ({ what: `v as ${JSON.stringify(v)}`, code: 'MALFORMED' as const, apply: set('v', v) })),
    fc
      .oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }))
      .map((v) => ({ what: `params as ${JSON.stringify(v)}`, code: 'MALFORMED' as const, apply: set('params', v) })),
    fc.string().filter((k) => k !== 'request').map((k) => ({ what: `kind ${JSON.stringify(k)}`, code: 'MALFORMED' as const, apply: set('kind', k) })),
    fc.constantFrom(
      { f: 'from', v: '' },
      { f: 'from', v: 'x'.repeat(129) },
      { f: 'to', v: '' },
      { f: 'id', v: 'i'.repeat(129) },
      { f: 'nonce', v: 'n'.repeat(15) },
      { f: 'nonce', v: 'n'.repeat(65) },
      { f: 'sig', v: '' },
      { f: 'sig', v: 's'.repeat(1025) },
      { f: 'method', v: '' },
    ).map(({ f, v }) => ({ what: `${f} of length ${v.length}`, code: 'MALFORMED' as const, apply: set(f, v) })),
    fc
      .uint8Array({ minLength: 1, maxLength: 200 })
      .filter((b) => {
        try {
          JSON.parse(Buffer.from(b).toString('utf8'));
          return false;
        } catch {
          return true;
        }
      })
      .map((b) => ({ what: 'bytes that are not JSON', code: 'MALFORMED' as const, apply: () => Buffer.from(b) })),
  ];
  // Schema-valid changes to signed fields: only the signature can catch them.
  const forged: fc.Arbitrary<Mutation>[] = [
    fc.string({ minLength: 1, maxLength: 128 }).filter((v) => v !== base.id).map((v) => ({ what: 'change id', code: 'BAD_SIGNATURE' as const, apply: set('id', v) })),
    fc.string({ minLength: 1, maxLength: 128 }).filter((v) => v !== base.method).map((v) => ({ what: 'change method', code: 'BAD_SIGNATURE' as const, apply: set('method', v) })),
    fc.string({ minLength: 16, maxLength: 64 }).filter((v) => v !== base.nonce).map((v) => ({ what: 'change nonce', code: 'BAD_SIGNATURE' as const, apply: set('nonce', v) })),
    fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).filter(differs(base.params)).map((v) => ({ what: 'change params', code: 'BAD_SIGNATURE' as const, apply: set('params', v) })),
    fc
      .tuple(fc.constantFrom('__proto__', 'constructor', 'toString'), fc.jsonValue({ maxDepth: 1 }))
      .map(([k, v]) => ({
        what: `slip ${k} into params`,
        code: 'BAD_SIGNATURE' as const,
        apply: (env: Obj) => ({ ...env, params: Object.defineProperty({ ...(env.params as Obj) }, k, { value: v, enumerable: true }) }),
      })),
    fc.integer({ min: -MAX_AGE_MS / 2, max: MAX_AGE_MS / 2 }).filter((d) => d !== 0).map((d) => ({ what: `shift ts by ${d}`, code: 'BAD_SIGNATURE' as const, apply: set('ts', now + d) })),
    fc.string({ minLength: 1, maxLength: 1024 }).filter((v) => v !== base.sig).map((v) => ({ what: 'replace sig', code: 'BAD_SIGNATURE' as const, apply: set('sig', v) })),
    fc.integer({ min: 0, max: 63 }).map((i) => ({
      what: `flip sig byte ${i}`,
      code: 'BAD_SIGNATURE' as const,
      apply: (env: Obj) => {
        const bytes = Buffer.from(env.sig as string, 'base64');
        bytes[i % bytes.length]! ^= 0x01;
        return { ...env, sig: bytes.toString('base64') };
      },
    })),
    fc.constant({ what: 'claim to be another known operator', code: 'BAD_SIGNATURE' as const, apply: set('from', 'public-proxy-eps-1') }),
    fc
      .string({ minLength: 1, maxLength: 128 })
      .filter((v) => !(v in directory) && !Object.hasOwn(Object.prototype, v))
      .map((v) => ({ what: `claim to be ${JSON.stringify(v)}`, code: 'UNKNOWN_SENDER' as const, apply: set('from', v) })),
    fc.string({ minLength: 1, maxLength: 128 }).filter((v) => v !== SELF).map((v) => ({ what: `address to ${JSON.stringify(v)}`, code: 'MISADDRESSED' as const, apply: set('to', v) })),
  ];
  // Genuinely signed, but too old, from the future, or too big.
  const sealedBadly: fc.Arbitrary<Mutation>[] = [
    fc
      .tuple(fc.constantFrom(-1, 1), fc.integer({ min: MAX_AGE_MS + 1_000, max: 10 * 365 * 86_400_000 }))
      .map(([sign, age]) => ({ what: `sealed ${sign * age} ms away`, code: 'STALE' as const, apply: () => sealed('_ping', { probe: 1 }, now + sign * age) })),
    fc.integer({ min: MAX_BYTES, max: 4 * MAX_BYTES }).map((n) => ({ what: `${n} bytes of params`, code: 'OVERSIZED' as const, apply: () => sealed('_ping', { pad: 'x'.repeat(n) }) })),
  ];
  return fc.oneof(
    { weight: 4, arbitrary: fc.oneof(...malformed) },
    { weight: 4, arbitrary: fc.oneof(...forged) },
    { weight: 1, arbitrary: fc.oneof(...sealedBadly) },
  );
}

const bytesOf = (m: Obj | Buffer) => (Buffer.isBuffer(m) ? m : Buffer.from(JSON.stringify(m)));

function open(data: Uint8Array, replay = new ReplayCache()) {
  return openEnvelope(data, { self: SELF, certificateOf: (op) => (Object.hasOwn(directory, op) ? directory[op] : undefined), replay, maxAgeMs: MAX_AGE_MS, maxBytes: MAX_BYTES });
}

describe('hostile bus envelopes', () => {
  it('envelope - every mutation of a sealed envelope is refused with the code it earns', () => {
    const seen = new Set<Code>();
    fc.assert(
      fc.property(
        fc.constant(null).chain(() => {
          const base = sealed() as unknown as Obj;
          return mutations(base).map((m) => ({ base, m }));
        }),
        ({ base, m }) => {
          const result = open(bytesOf(m.apply(base)));
          if (result.ok || result.code !== m.code) throw new Error(`${m.what}: expected ${m.code}, got ${JSON.stringify(result)}`);
          seen.add(result.code);
        },
      ),
      { numRuns: 1_000, seed: SEED },
    );
    expect([...seen].sort()).toEqual(['BAD_SIGNATURE', 'MALFORMED', 'MISADDRESSED', 'OVERSIZED', 'STALE', 'UNKNOWN_SENDER']);
  });

  it('envelope - a genuine envelope opens once and is REPLAYED after, with any whitespace or key order', () => {
    const replay = new ReplayCache();
    const env = sealed();
    expect(open(Buffer.from(JSON.stringify(env)), replay).ok).toBe(true);
    // Re-encoding changes the bytes but not the envelope: still a replay.
    const reordered = Object.fromEntries(Object.entries(env).reverse());
    expect(open(Buffer.from(JSON.stringify(reordered, null, 2)), replay)).toMatchObject({ ok: false, code: 'REPLAYED' });
    expect(open(Buffer.from(JSON.stringify(env)), replay)).toMatchObject({ ok: false, code: 'REPLAYED' });
  });
});

describe('hostile bus envelopes over NATS', () => {
  let nats: TestNatsServer;
  let serverNc: NatsConnection;
  let attacker: NatsConnection;
  let bus: Bus;
  const calls: Obj[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    serverNc = await nats.connectAs(SELF);
    // The bus refuses strangers (test/hostile/bus-access.test.ts); these attacks come from a
    // principal that may reach every method of hd-2, to pin the envelope checks behind the bus.
    attacker = await nats.admin();
    bus = new Bus({
      nc: serverNc,
      signer: createSigner(SELF, pem('hd-2.key')),
      directory: {
        entry: (name) => (Object.hasOwn(directory, name) ? directory[name] : undefined),
        isPermitted: (caller, _target, method) => caller === 'hd-1' && method === '_ping',
      },
      log,
      maxAgeMs: MAX_AGE_MS,
      maxBytes: MAX_BYTES,
      requestTimeoutMs: 2_000,
    });
    for (const method of ['_ping', 'connectionForward']) {
      bus.serve(method, async (params, from) => {
        calls.push({ method, params, from });
        return { pong: true };
      });
    }
    // The subscriptions must reach the server before the attacker's first request, which travels
    // on another connection: under load it could otherwise find no responders.
    await serverNc.flush();
  });

  afterAll(async () => {
    bus?.close();
    await attacker?.close();
    await serverNc?.drain();
    await nats?.stop();
  });

  /** Sends raw bytes to hd-2's `_ping` and returns the error in the (verified) reply. */
  async function send(data: Uint8Array, method = '_ping'): Promise<{ code: number; message: string } | { result: unknown }> {
    const msg = await attacker.request(busSubject(SELF, method), data, { timeout: 3_000 });
    // The refusal is itself a signed envelope from hd-2, checked as hd-1 would.
    const reply = openEnvelope(msg.data, {
      self: 'hd-1',
      certificateOf: (op) => directory[op],
      replay: new ReplayCache(),
      maxAgeMs: MAX_AGE_MS,
      maxBytes: 1024 * 1024,
    });
    if (reply.ok && reply.envelope.kind === 'response') return reply.envelope.error ?? { result: reply.envelope.result };
    // A refusal to an envelope with an unusable `from` is addressed to someone else; still read it.
    const raw = JSON.parse(Buffer.from(msg.data).toString('utf8')) as ResponseEnvelope;
    if (!raw.error) throw new Error(`unexpected reply ${JSON.stringify(raw)}`);
    return raw.error;
  }

  const WIRE: Record<Code, number> = { MALFORMED: -32600, OVERSIZED: -32600, MISADDRESSED: -32600, UNKNOWN_SENDER: -32001, BAD_SIGNATURE: -32010, STALE: -32010, REPLAYED: -32010 };

  it('bus - each mutated envelope gets its precise error over NATS and the handler never runs', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constant(null).chain(() => {
          const base = sealed() as unknown as Obj;
          return mutations(base).map((m) => ({ base, m }));
        }),
        async ({ base, m }) => {
          const answer = await send(bytesOf(m.apply(base)));
          if (!('code' in answer) || answer.code !== WIRE[m.code] || !answer.message.includes(`${m.code}: `)) {
            throw new Error(`${m.what}: expected ${WIRE[m.code]} ${m.code}, got ${JSON.stringify(answer)}`);
          }
        },
      ),
      { numRuns: 200, seed: SEED },
    );
    expect(calls).toEqual([]);
  }, 25_000);

  it('bus - replayed, misdirected and unpermitted envelopes are refused; a genuine one still works', async () => {
    const genuine = sealed();
    expect(await send(Buffer.from(JSON.stringify(genuine)))).toEqual({ result: { pong: true } });
    expect(calls).toHaveLength(1);

    const replayed = await send(Buffer.from(JSON.stringify(genuine)));
    expect(replayed).toMatchObject({ code: -32010, message: expect.stringContaining('REPLAYED: ') });

    // A genuine _ping request sent to the connectionForward subject.
    const misrouted = await send(Buffer.from(JSON.stringify(sealed())), 'connectionForward');
    expect(misrouted).toMatchObject({ code: -32600, message: expect.stringContaining('not a connectionForward request') });

    // Genuine, but the directory does not let hd-1 call connectionForward.
    const unpermitted = await send(Buffer.from(JSON.stringify(sealed('connectionForward'))), 'connectionForward');
    expect(unpermitted).toMatchObject({ code: -32002 });

    // A genuine response envelope is not a request.
    const response = sealEnvelope<ResponseEnvelope>(hd1, { kind: 'response', from: 'hd-1', to: SELF, id: 'r', result: null });
    expect(await send(Buffer.from(JSON.stringify(response)))).toMatchObject({ code: -32600 });

    // A forged envelope published without a reply subject is dropped silently.
    attacker.publish(busSubject(SELF, '_ping'), JSON.stringify({ ...sealed(), id: 'tampered' }));
    expect(await send(Buffer.from(JSON.stringify(sealed())))).toEqual({ result: { pong: true } });
    expect(calls).toHaveLength(2);
  });
});

// A hostile responder: it hears every request to hd-2 and answers first with junk. The caller must
// log and skip each junk reply and still return hd-2's real answer; only the deadline ends a call.
describe('hostile bus replies', () => {
  let nats: TestNatsServer;
  let callerNc: NatsConnection;
  let serverNc: NatsConnection;
  let attacker: NatsConnection;
  let caller: Bus;
  let server: Bus;
  const warnings: Obj[] = [];
  /** Probes the attacker has finished answering: hd-2 answers only after, so junk always comes first. */
  const junkSent = new Set<number>();
  let captured: Uint8Array | undefined;
  let attackerSubs: { unsubscribe(): void }[] = [];
  const proxySigner = createSigner('public-proxy-eps-1', pem('public-proxy-eps-1.key'));

  const dir = {
    entry: (name: string) => (Object.hasOwn(directory, name) ? directory[name] : undefined),
    isPermitted: (caller: string, _t: string, method: string) => caller === 'hd-1' && method === '_ping',
  };
  const busFor = (nc: NatsConnection, name: string, logger = log) =>
    new Bus({ nc, signer: createSigner(name, pem(`${name}.key`)), directory: dir, log: logger, maxAgeMs: MAX_AGE_MS, maxBytes: MAX_BYTES, requestTimeoutMs: 2_000 });

  /** Every kind of junk, aimed at the request the attacker just heard. */
  function junkFor(request: RequestEnvelope): { what: string; data: Uint8Array }[] {
    const forgedByProxy = sealEnvelope<ResponseEnvelope>(proxySigner, { kind: 'response', from: 'hd-2', to: 'hd-1', id: request.id, result: { pong: 'forged' } });
    const flipped = sealEnvelope<ResponseEnvelope>(proxySigner, { kind: 'response', from: 'public-proxy-eps-1', to: 'hd-1', id: request.id, result: { pong: 'proxy' } });
    const bytes = Buffer.from(flipped.sig, 'base64');
    bytes[5]! ^= 0x01;
    const junk: { what: string; data: Uint8Array }[] = [
      { what: 'not JSON', data: Buffer.from('{"kind":') },
      { what: 'wrong shape', data: Buffer.from(JSON.stringify({ kind: 'response', result: { pong: 'junk' } })) },
      { what: 'claims hd-2, signed by the proxy', data: Buffer.from(JSON.stringify(forgedByProxy)) },
      { what: 'the proxy, signature tampered', data: Buffer.from(JSON.stringify({ ...flipped, sig: bytes.toString('base64') })) },
      {
        what: 'another operator answering in its own name',
        data: Buffer.from(JSON.stringify(sealEnvelope<ResponseEnvelope>(proxySigner, { kind: 'response', from: 'public-proxy-eps-1', to: 'hd-1', id: request.id, result: { pong: 'proxy' } }))),
      },
      { what: 'an unknown operator', data: Buffer.from(JSON.stringify({ ...forgedByProxy, from: 'mallory' })) },
    ];
    if (captured) junk.push({ what: "hd-2's earlier genuine reply, replayed", data: captured });
    return junk;
  }

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    [callerNc, serverNc] = await Promise.all([nats.connectAs('hd-1'), nats.connectAs('hd-2')]);
    // On the secured bus a stranger can neither hear hd-2's requests nor answer into hd-1's inbox
    // (test/hostile/bus-access.test.ts); the admin plays an insider who can, to show that the
    // reply checks hold even then.
    attacker = await nats.admin();
    const collect = { write: (line: string) => void warnings.push(JSON.parse(line) as Obj) };
    caller = busFor(callerNc, 'hd-1', pino({ level: 'warn' }, collect));
    server = busFor(serverNc, 'hd-2');
    server.serve('_ping', async (params) => {
      await waitFor(() => !attackerSubs.length || junkSent.has(params.probe as number), 2_000, 'the attacker to answer first');
      return { pong: true, probe: params.probe };
    });
    await serverNc.flush();
  });

  afterAll(async () => {
    caller?.close();
    server?.close();
    await attacker?.close();
    await callerNc?.drain();
    await serverNc?.drain();
    await nats?.stop();
  });

  function startAttacker(): void {
    const requests = attacker.subscribe(busSubject('hd-2', '_ping'), {
      callback: (_err, msg) => {
        const request = JSON.parse(Buffer.from(msg.data).toString('utf8')) as RequestEnvelope;
        for (const j of junkFor(request)) msg.respond(j.data);
        void attacker.flush().then(() => junkSent.add(request.params.probe as number));
      },
    });
    attackerSubs.push(requests);
  }

  it('bus - a call answered first with every kind of junk still returns the real answer, and each junk reply is logged', async () => {
    // A genuine exchange the attacker records, to replay later.
    const spy = attacker.subscribe(`${inboxPrefixOf('hd-1')}.>`, { callback: (_e, m) => {
        captured ??= m.data;
      },
    });
    await attacker.flush();
    expect(await caller.request('hd-2', '_ping', { probe: 0 })).toEqual({ pong: true, probe: 0 });
    await waitFor(() => captured !== undefined, 2_000, 'the attacker to capture a genuine reply');
    spy.unsubscribe();
    expect(warnings).toEqual([]);

    startAttacker();
    await attacker.flush();
    for (let probe = 1; probe <= 5; probe++) {
      const before = warnings.length;
      expect(await caller.request('hd-2', '_ping', { probe })).toEqual({ pong: true, probe });
      const rejected = warnings.slice(before).filter((w) => w.msg === 'bus reply rejected; still waiting for a valid one');
      const refusals = rejected.map((w) => w.refusal).sort();
      expect(refusals).toEqual(['BAD_SIGNATURE', 'BAD_SIGNATURE', 'MALFORMED', 'MALFORMED', 'REPLAYED', 'UNKNOWN_SENDER', 'WRONG_SENDER']);
      expect(rejected.every((w) => w.to === 'hd-2' && w.method === '_ping' && typeof w.detail === 'string')).toBe(true);
    }
  });

  it('bus - with only junk answering, the call ends at its deadline saying how many replies it rejected', async () => {
    if (!attackerSubs.length) startAttacker();
    server.close(); // hd-2 goes away; the attacker keeps answering
    await serverNc.flush();
    const startedAt = Date.now();
    const err = await caller.request('hd-2', '_ping', { probe: 99 }, 600).then(() => undefined, (e: unknown) => e);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(590);
    expect(busFailureOf(err)).toMatchObject({ type: 'replyRejected', waitedMs: 600, rejected: 7 });
    expect((err as Error).message).toMatch(/^Peer did not answer in time: hd-2\._ping: no valid answer on the bus within 600 ms; 7 replies rejected \(last: /);
    expect((err as RpcError).code).toBe(-32005);

    // Nobody at all: NATS says so at once, and that is a different failure.
    for (const s of attackerSubs) s.unsubscribe();
    attackerSubs = [];
    await attacker.flush();
    const fast = Date.now();
    const gone = await caller.request('hd-2', '_ping', { probe: 100 }, 2_000).then(() => undefined, (e: unknown) => e);
    expect(busFailureOf(gone)).toEqual({ type: 'noResponders' });
    expect((gone as Error).message).toBe('Peer unreachable: hd-2._ping: nobody serves it on the bus');
    expect(Date.now() - fast).toBeLessThan(1_000);
  });
});
