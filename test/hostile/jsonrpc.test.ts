import { readFileSync } from 'node:fs';
import { Agent, request, type Server } from 'node:https';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/core/errors.js';
import { readTlsMaterial } from '../../src/core/tls-material.js';
import { createGatewayHandler } from '../../src/eps/gateway.js';
import { startJsonRpcServer } from '../../src/jsonrpc/server.js';
import { resourceCounts, settledExcess, type ResourceCounts } from './helpers.js';

// The real JSON-RPC server and gateway handler over real mTLS, in process: every body a client
// can send must get a well-formed JSON-RPC answer with a documented code, and never a 500.

const CERTS = 'settings/dev/certs';
const read = (name: string) => readFileSync(`${CERTS}/${name}`);
const log = pino({ level: 'silent' });
const SEED = Number(process.env.HOSTILE_SEED ?? 20_240_611);
const MAX_BODY = 16 * 1024;

/** Every code the gateway may answer with (README "Errors"); -32603 only for handler bugs. */
const DOCUMENTED = new Set([-32700, -32600, -32601, -32602, -32001, -32002, -32003, -32004, -32005, -32020]);

let server: Server;
let port: number;
let baseline: ResourceCounts;
const handled: string[] = [];
const agents = new Map<string, Agent>();

function agentFor(as: string | undefined): Agent {
  const key = as ?? 'anonymous';
  let agent = agents.get(key);
  if (!agent) {
    agent = new Agent({
      keepAlive: true,
      maxSockets: 4,
      ca: read('root.crt'),
      ...(as ? { cert: read(`${as}.crt`), key: read(`${as}.key`) } : {}),
    });
    agents.set(key, agent);
  }
  return agent;
}

interface Answer {
  status: number;
  text: string;
  body: unknown;
}

function post(body: string | Buffer, opts: { as?: string | null; chunked?: boolean; method?: string; path?: string } = {}): Promise<Answer> {
  const as = opts.as === null ? undefined : (opts.as ?? 'hd-1');
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: opts.path ?? '/jsonrpc',
        method: opts.method ?? 'POST',
        servername: 'hd-1',
        agent: agentFor(as),
        headers: { 'Content-Type': 'application/json', ...(opts.chunked ? {} : { 'Content-Length': payload.length }) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            parsed = Symbol.for('not JSON');
          }
          resolve({ status: res.statusCode ?? 0, text, body: parsed });
        });
      },
    );
    req.on('error', reject);
    if (opts.chunked) {
      // Several writes with no Content-Length: the size is only known while reading.
      for (let i = 0; i < payload.length; i += 8 * 1024) req.write(payload.subarray(i, i + 8 * 1024));
      req.end();
    } else {
      req.end(payload);
    }
  });
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An independent reading of JSON-RPC 2.0 as requestSchema words it. */
function isValidRequest(v: unknown): v is Obj {
  if (!isObj(v)) return false;
  if (Object.keys(v).some((k) => !['jsonrpc', 'method', 'params', 'id'].includes(k))) return false;
  if (v.jsonrpc !== '2.0') return false;
  if (typeof v.method !== 'string' || v.method.length < 1 || v.method.length > 256) return false;
  if ('params' in v && !(isObj(v.params) || Array.isArray(v.params))) return false;
  if ('id' in v) {
    const id = v.id;
    const okId = id === null || (typeof id === 'string' && id.length <= 256) || (typeof id === 'number' && Number.isFinite(id));
    if (!okId) return false;
  }
  return true;
}

/** What the gateway must answer for a valid request's method (see the stub handlers below). */
function expectedFor(method: string): { result: true } | { code: number } {
  const i = method.lastIndexOf('.');
  if (i <= 0 || i === method.length - 1) return { code: -32601 };
  const [operator, m] = [method.slice(0, i), method.slice(i + 1)];
  if (operator === 'hd-1') return m === '_ping' ? { result: true } : { code: -32601 };
  if (operator === 'hd-2') return m === 'unreachable' ? { code: -32003 } : { result: true };
  return { code: -32001 };
}

function checkResponse(r: unknown, request: unknown): string | undefined {
  if (!isObj(r)) return `not an object: ${JSON.stringify(r)}`;
  if (r.jsonrpc !== '2.0') return `jsonrpc is ${JSON.stringify(r.jsonrpc)}`;
  if (!('id' in r) || !(r.id === null || typeof r.id === 'string' || typeof r.id === 'number')) return `bad id ${JSON.stringify(r.id)}`;
  const hasResult = 'result' in r;
  const hasError = 'error' in r;
  if (hasResult === hasError) return 'needs exactly one of result and error';
  if (hasError) {
    const e = r.error;
    if (!isObj(e) || typeof e.code !== 'number' || typeof e.message !== 'string') return `malformed error ${JSON.stringify(e)}`;
    if (!DOCUMENTED.has(e.code)) return `undocumented code ${e.code}: ${e.message}`;
  }
  if (isValidRequest(request)) {
    const id = request.id;
    if (r.id !== id) return `id ${JSON.stringify(r.id)} does not echo ${JSON.stringify(id)}`;
    const want = expectedFor(request.method as string);
    if ('result' in want && !hasResult) return `${String(request.method)}: expected a result, got ${JSON.stringify(r.error)}`;
    if ('code' in want && (r.error as Obj | undefined)?.code !== want.code) return `${String(request.method)}: expected ${want.code}, got ${JSON.stringify(r)}`;
  } else {
    const codes = [-32600];
    if ((r.error as Obj | undefined)?.code === undefined || !codes.includes((r.error as Obj).code as number)) {
      return `invalid request ${JSON.stringify(request)} answered with ${JSON.stringify(r)}`;
    }
  }
  return undefined;
}

/** Checks one HTTP answer to `body` against JSON-RPC 2.0 batch/notification rules. */
function checkAnswer(value: unknown, a: Answer): string | undefined {
  if (a.status === 500 || a.status === 0) return `HTTP ${a.status}`;
  const isNotification = (v: unknown) => isValidRequest(v) && !('id' in v);
  if (Array.isArray(value)) {
    if (value.length === 0) {
      if (a.status !== 200 || !isObj(a.body) || (a.body.error as Obj | undefined)?.code !== -32600) return `empty batch: ${a.text}`;
      return undefined;
    }
    const answered = value.filter((v) => !isNotification(v));
    if (answered.length === 0) return a.status === 204 && a.text === '' ? undefined : `all-notification batch: ${a.status} ${a.text}`;
    if (a.status !== 200 || !Array.isArray(a.body)) return `batch answered with ${a.status} ${a.text}`;
    if (a.body.length !== answered.length) return `batch of ${answered.length} answered with ${a.body.length}`;
    // Answers come in request order here (the server awaits them all), so pair them up.
    for (let i = 0; i < answered.length; i++) {
      const problem = checkResponse(a.body[i], answered[i]);
      if (problem) return `batch item ${i}: ${problem}`;
    }
    return undefined;
  }
  if (isNotification(value)) return a.status === 204 && a.text === '' ? undefined : `notification answered: ${a.status} ${a.text}`;
  if (a.status !== 200) return `HTTP ${a.status} ${a.text}`;
  return checkResponse(a.body, value);
}

// Request-shaped values: each field right, wrong-typed or missing, and sometimes an extra field.
const methodArb = fc.oneof(
  fc.constantFrom('hd-1._ping', 'hd-1.nothing', 'hd-2._ping', 'hd-2.unreachable', 'nobody._ping', 'noseparator', '.x', 'x.', 'hd-1.constructor', '__proto__._ping', 'hd-1.__proto__', 'a.b.c._ping'),
  fc.string({ maxLength: 300 }),
);
const idArb = fc.oneof(fc.string({ maxLength: 300 }), fc.integer(), fc.double(), fc.constant(null), fc.jsonValue({ maxDepth: 2 }));
const requestish: fc.Arbitrary<unknown> = fc
  .record(
    {
      jsonrpc: fc.oneof({ weight: 4, arbitrary: fc.constant('2.0') }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }),
      method: fc.oneof({ weight: 4, arbitrary: methodArb }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }),
      params: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 })), fc.array(fc.jsonValue({ maxDepth: 2 })), fc.jsonValue({ maxDepth: 1 })),
      id: idArb,
    },
    { requiredKeys: ['jsonrpc', 'method'] },
  )
  .chain((r) =>
    fc.oneof(
      { weight: 5, arbitrary: fc.constant(r as unknown) },
      { weight: 1, arbitrary: fc.tuple(fc.string({ minLength: 1 }), fc.jsonValue({ maxDepth: 1 })).map(([k, v]) => ({ ...r, [k]: v }) as unknown) },
    ),
  );

// Valid requests (and notifications) with arbitrary params: these must reach the handlers.
const wellFormed: fc.Arbitrary<unknown> = fc.record(
  {
    jsonrpc: fc.constant('2.0'),
    method: methodArb,
    params: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 })), fc.array(fc.jsonValue({ maxDepth: 3 }))),
    id: fc.oneof(fc.string({ maxLength: 256 }), fc.integer(), fc.constant(null)),
  },
  { requiredKeys: ['jsonrpc', 'method'] },
);

beforeAll(async () => {
  baseline = resourceCounts();
  const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
  const localMethods: Record<string, (params: unknown) => Promise<unknown>> = { _ping: async (params) => ({ pong: true, params }) };
  server = await startJsonRpcServer({
    tls,
    host: '127.0.0.1',
    port: 0,
    maxBodyBytes: MAX_BODY,
    log,
    handle: createGatewayHandler({
      self: { name: 'hd-1', fingerprint: tls.fingerprint },
      isKnownOperator: (name) => name === 'hd-1' || name === 'hd-2',
      // As the EPS server does: an own-property lookup, so `constructor` is not a method.
      callLocal: async (method, params) => {
        handled.push(method);
        const fn = Object.hasOwn(localMethods, method) ? localMethods[method] : undefined;
        if (!fn) throw new RpcError('METHOD_NOT_FOUND', `hd-1.${method}`);
        return fn(params);
      },
      callRemote: async (operator, method) => {
        if (method === 'unreachable') throw new RpcError('PEER_UNREACHABLE', `${operator} is not on the bus`);
        return { relayed: `${operator}.${method}` };
      },
    }),
  });
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  for (const agent of agents.values()) agent.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
});

describe('hostile JSON-RPC gateway', () => {
  it('jsonrpc - fixed hostile bodies each get their standard code', async () => {
    const cases: [string, number, number][] = [
      ['{not json', 200, -32700],
      ['', 200, -32700],
      ['\u0000\u0001', 200, -32700],
      ['{"jsonrpc":"2.0","id":1,"method":5}', 200, -32600],
      ['{"jsonrpc":"1.0","id":1,"method":"hd-1._ping"}', 200, -32600],
      ['{"jsonrpc":"2.0","id":{},"method":"hd-1._ping"}', 200, -32600],
      ['{"jsonrpc":"2.0","id":1,"method":"hd-1._ping","params":"x"}', 200, -32600],
      ['{"jsonrpc":"2.0","id":1,"method":"hd-1._ping","__proto__":{"polluted":1}}', 200, -32600],
      ['{"jsonrpc":"2.0","id":1e400,"method":"hd-1._ping"}', 200, -32600],
      ['[]', 200, -32600],
      ['"2.0"', 200, -32600],
      ['null', 200, -32600],
      ['{"jsonrpc":"2.0","id":1,"method":"nobody._ping"}', 200, -32001],
      ['{"jsonrpc":"2.0","id":1,"method":"hd-1.nothing"}', 200, -32601],
      ['{"jsonrpc":"2.0","id":1,"method":"hd-1.constructor"}', 200, -32601],
      ['{"jsonrpc":"2.0","id":1,"method":"hd-1.__proto__"}', 200, -32601],
      ['{"jsonrpc":"2.0","id":1,"method":"__proto__._ping"}', 200, -32001],
      ['{"jsonrpc":"2.0","id":1,"method":"noseparator"}', 200, -32601],
      ['{"jsonrpc":"2.0","id":1,"method":"hd-2.unreachable"}', 200, -32003],
    ];
    for (const [body, status, code] of cases) {
      const a = await post(body);
      expect({ body, status: a.status }).toEqual({ body, status });
      expect({ body, code: (a.body as { error?: { code?: number } }).error?.code }).toEqual({ body, code });
    }
    expect(({}) as Obj).not.toHaveProperty('polluted');

    // Notifications and batches.
    expect(await post('{"jsonrpc":"2.0","method":"hd-1._ping"}')).toMatchObject({ status: 204, text: '' });
    expect(await post('{"jsonrpc":"2.0","method":"nobody._ping"}')).toMatchObject({ status: 204, text: '' });
    expect(await post('[{"jsonrpc":"2.0","method":"hd-1._ping"},{"jsonrpc":"2.0","method":"x.y"}]')).toMatchObject({ status: 204, text: '' });
    const mixed = await post(
      JSON.stringify([{ jsonrpc: '2.0', id: 'a', method: 'hd-1._ping' }, { jsonrpc: '2.0', method: 'hd-1._ping' }, 5, { jsonrpc: '2.0', id: 'b', method: 'nobody.x' }, []]),
    );
    expect(mixed.status).toBe(200);
    expect((mixed.body as Obj[]).map((r) => (r.error as Obj | undefined)?.code ?? 'result')).toEqual(['result', -32600, -32001, -32600]);
    expect((mixed.body as Obj[]).map((r) => r.id)).toEqual(['a', null, 'b', null]);
  });

  it('jsonrpc - wrong caller, path, verb and oversized bodies get their status and code', async () => {
    const ping = '{"jsonrpc":"2.0","id":1,"method":"hd-1._ping"}';
    const noCert = await post(ping, { as: null });
    expect([noCert.status, (noCert.body as Obj).error]).toMatchObject([401, { code: -32020 }]);
    const other = await post(ping, { as: 'hd-2' });
    expect([other.status, (other.body as Obj).error]).toMatchObject([200, { code: -32002 }]);
    expect((await post(ping, { path: '/other' })).status).toBe(404);
    expect((await post(ping, { method: 'PUT' })).status).toBe(405);

    const pad = (n: number) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'hd-1._ping', params: { pad: 'x'.repeat(n) } });
    const exact = pad(MAX_BODY - pad(0).length);
    expect(Buffer.byteLength(exact)).toBe(MAX_BODY);
    expect((await post(exact)).status).toBe(200);
    for (const chunked of [false, true]) {
      const big = await post(pad(MAX_BODY), { chunked });
      expect({ chunked, status: big.status, code: ((big.body as Obj).error as Obj).code }).toEqual({ chunked, status: 413, code: -32600 });
      const huge = await post(pad(4 * 1024 * 1024), { chunked });
      expect({ chunked, status: huge.status }).toEqual({ chunked, status: 413 });
    }
    // The server is still answering, on a new connection and on kept-alive ones.
    expect(((await post(ping)).body as Obj).result).toMatchObject({ pong: true });
  });

  it('jsonrpc - arbitrary JSON values and request-shaped values always get a well-formed answer', async () => {
    const bodies = fc.oneof(
      { weight: 2, arbitrary: fc.jsonValue() },
      { weight: 3, arbitrary: requestish },
      { weight: 3, arbitrary: wellFormed },
      { weight: 3, arbitrary: fc.array(fc.oneof(requestish, wellFormed, fc.jsonValue({ maxDepth: 1 })), { maxLength: 6 }) },
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (value) => {
        const text = JSON.stringify(value);
        if (Buffer.byteLength(text) > MAX_BODY) return;
        const problem = checkAnswer(JSON.parse(text) as unknown, await post(text));
        if (problem) throw new Error(problem);
      }),
      { numRuns: 400, seed: SEED },
    );
    // The generator must reach the handlers too, not only the request checks.
    expect(handled.filter((m) => m === '_ping').length).toBeGreaterThan(20);
    expect(handled.filter((m) => m !== '_ping').length).toBeGreaterThan(5);
  }, 25_000);

  it('jsonrpc - arbitrary byte strings are refused as parse errors unless they happen to be JSON', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1'))), async (text) => {
        let value: unknown;
        let isJson = true;
        try {
          value = JSON.parse(text);
        } catch {
          isJson = false;
        }
        const a = await post(Buffer.from(text, 'utf8'));
        if (!isJson) {
          if (a.status !== 200 || ((a.body as Obj | undefined)?.error as Obj | undefined)?.code !== -32700) throw new Error(`${JSON.stringify(text)}: ${a.status} ${a.text}`);
          return;
        }
        const problem = checkAnswer(value, a);
        if (problem) throw new Error(problem);
      }),
      { numRuns: 300, seed: SEED },
    );
  }, 20_000);

  it('jsonrpc - after the flood the server holds no connection, socket or timer', async () => {
    for (const agent of agents.values()) agent.destroy();
    agents.clear();
    const connections = () => new Promise<number>((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    const until = Date.now() + 3_000;
    while ((await connections()) > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(await connections()).toBe(0);
    expect(await settledExcess(baseline, ['TCPSocketWrap'])).toEqual({});
  });
});

describe('hostile JSON-RPC gateway - edges', () => {
  let edgeServer: Server;
  let edgePort: number;
  const calls: string[] = [];

  beforeAll(async () => {
    const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
    edgeServer = await startJsonRpcServer({
      tls,
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 1024 * 1024,
      maxBatchCalls: 50,
      log,
      handle: createGatewayHandler({
        self: { name: 'hd-1', fingerprint: tls.fingerprint },
        isKnownOperator: (name) => name === 'hd-2',
        callLocal: async (method, params) => (calls.push(method), { pong: true, params }),
        callRemote: async (operator, method) => (calls.push(`${operator}.${method}`), { relayed: true }),
      }),
    });
    edgePort = (edgeServer.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => edgeServer.close(() => resolve()));
    edgeServer.closeAllConnections();
  });

  const postEdge = (body: string) =>
    new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: edgePort, path: '/jsonrpc', method: 'POST', servername: 'hd-1', agent: agentFor('hd-1'), headers: { 'content-type': 'application/json' } },
        (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const batch = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'hd-2._ping', params: {} })));

  it('jsonrpc - a batch over jsonrpc.maxBatchCalls is refused -32600 whole, before any call runs; one at the limit is answered', async () => {
    calls.length = 0;
    const over = await postEdge(batch(51));
    expect(over.status).toBe(200);
    expect(over.body.error).toMatchObject({ code: -32600 });
    expect(over.body.error.message).toContain('a batch of 51 calls exceeds the limit of 50 (jsonrpc.maxBatchCalls)');
    expect(calls).toEqual([]);
    const atLimit = await postEdge(batch(50));
    expect(atLimit.body).toHaveLength(50);
    expect(calls).toHaveLength(50);
  });

  it('jsonrpc - 100,000 nested arrays in params get -32600, never a 500; ordinary nesting still reaches the method', async () => {
    const deep = `{"jsonrpc":"2.0","id":1,"method":"hd-1._ping","params":{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`;
    const refused = await postEdge(deep);
    expect(refused.status).toBe(200);
    expect(refused.body.error).toMatchObject({ code: -32600 });
    expect(refused.body.error.message).toMatch(/nested deeper than 64 levels/);
    const fine = await postEdge(`{"jsonrpc":"2.0","id":2,"method":"hd-1._ping","params":{"x":${'['.repeat(10)}${']'.repeat(10)}}}`);
    expect(fine.body.result.pong).toBe(true);
  });
});
