import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Bus } from '../../src/bus/bus.js';
import { DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS } from '../../src/core/constants.js';
import { RpcError } from '../../src/core/errors.js';
import { encodePreamble, signProof, type Leg } from '../../src/core/splice-wire.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { ConnectionRequests } from '../../src/proxy/connection-requests.js';
import { countRejections, createProxyMetrics } from '../../src/proxy/metrics.js';
import { SessionRegistry, type LegPass, type SessionMessengers } from '../../src/proxy/session-registry.js';
import { SpliceEndpoint, type RejectReason, type SpliceEndpointOptions } from '../../src/proxy/splice-endpoint.js';
import { waitFor } from './helpers.js';

// Floods against the splice data plane, on the real endpoint and session registry (real TCP, the
// dev PKI's keys), each beside the legitimate use that must still work: silent connections that
// would hold the proxy's descriptors, replays of a spent token, a thief hammering a live one, and
// one operator opening brokerings without end. Loopback has a whole /8 of source addresses, so
// "another address" is 127.0.0.2 and up.

const PROXY = 'public-proxy-eps-1';
const CERTS = 'settings/dev/certs';
const keyOf = (name: string): KeyObject => createPrivateKey(readFileSync(`${CERTS}/${name}.key`));
const certOf = (name: string) => {
  const cert = new X509Certificate(readFileSync(`${CERTS}/${name}.crt`));
  return { certificate: cert.toString(), fingerprint: fingerprintOf(cert) };
};
const KEY: Record<Leg, KeyObject> = { a: keyOf('hd-1'), b: keyOf('hd-2') };
const LISTED = { 'hd-1': certOf('hd-1'), 'hd-2': certOf('hd-2') } as Record<string, { certificate: string; fingerprint: string }>;

interface LogLine {
  [field: string]: unknown;
  level: number;
  msg: string;
  reason?: string;
  count?: number;
  badProofs?: Record<Leg, number>;
}

interface Harness {
  registry: SessionRegistry;
  endpoint: SpliceEndpoint;
  port: number;
  rejections: RejectReason[];
  lines: LogLine[];
  /** Calls to the directory lookup: one per proof the registry verifies. */
  lookups: () => number;
  metric: (reason: RejectReason) => Promise<number>;
  dial: (bytes: Buffer, from?: string) => Promise<Socket>;
}

const harnesses: Harness[] = [];
const clients: Socket[] = [];

async function harness(opts: Partial<Pick<SpliceEndpointOptions, 'preambleTimeoutMs' | 'maxPending' | 'maxPendingPerAddress' | 'refusalLogIntervalMs'>> = {}): Promise<Harness> {
  const lines: LogLine[] = [];
  // A real pino at the production level, writing into the test instead of stdout.
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  let lookups = 0;
  const registry = new SessionRegistry({
    log,
    operator: PROXY,
    certificateOf: (op) => {
      lookups += 1;
      return LISTED[op];
    },
    timeouts: { bDialMs: 20_000, aDialMs: 20_000 },
  });
  const endpoint = new SpliceEndpoint({
    host: '127.0.0.1',
    port: 0,
    log,
    preambleTimeoutMs: 2_000,
    refusalLogIntervalMs: 300,
    ...opts,
    route: (p, s, r) => registry.route(p, s, r),
  });
  const metrics = createProxyMetrics();
  countRejections(metrics, endpoint);
  const rejections: RejectReason[] = [];
  endpoint.on('rejected', (r) => rejections.push(r));
  const { port } = await endpoint.listen();
  const dial = async (bytes: Buffer, from?: string): Promise<Socket> => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true, ...(from ? { localAddress: from } : {}) });
    s.on('error', () => {});
    clients.push(s);
    await once(s, 'connect');
    if (bytes.length > 0) s.write(bytes);
    return s;
  };
  const metric = async (reason: RejectReason) => (await metrics.preambleRejections.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  const h = { registry, endpoint, port, rejections, lines, lookups: () => lookups, metric, dial };
  harnesses.push(h);
  return h;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  for (const h of harnesses.splice(0)) {
    await h.registry.shutdown();
    await h.endpoint.close();
  }
});

/** Resolves once the proxy has closed (or reset) the socket. */
const closedByProxy = (s: Socket): Promise<void> =>
  s.closed
    ? Promise.resolve()
    : new Promise((resolve) => {
        s.once('close', () => resolve());
        s.resume();
      });

/**
 * Connections that never say a word. Each resolves once connected or already refused: under load
 * the proxy's reset can beat the client's own 'connect' event.
 */
const silent = (h: Harness, n: number, from?: string): Promise<Socket[]> =>
  Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve) => {
          const s = connect({ host: '127.0.0.1', port: h.port, ...(from ? { localAddress: from } : {}) });
          clients.push(s);
          s.on('error', () => resolve(s));
          s.once('close', () => resolve(s));
          s.once('connect', () => resolve(s));
        }),
    ),
  );

/** Opens a brokered session hd-1 -> hd-2 whose passes the test keeps; nobody dials until told. */
function openSession(h: Harness) {
  const passes: Partial<Record<Leg, LegPass>> = {};
  const messengers: SessionMessengers = {
    notifyB: async (_s, pass) => {
      passes.b = pass;
      return { accepted: true };
    },
    confirmToA: async (_s, pass) => {
      passes.a = pass;
    },
  };
  const opened = h.registry.open({ a: 'hd-1', b: 'hd-2', endpoint: `127.0.0.1:${h.port}` }, { messengers });
  const preamble = (leg: Leg, key: KeyObject = KEY[leg]) =>
    encodePreamble(opened.tokens[leg], signProof(key, { proxy: PROXY, sessionId: opened.sessionId, leg, token: opened.tokens[leg], challenge: opened.challenge }));
  return { opened, passes, preamble };
}

/** B then A dial with their real proofs; resolves once bytes cross the splice. */
async function splice(h: Harness, s: ReturnType<typeof openSession>, from?: string): Promise<{ a: Socket; b: Socket }> {
  const b = await h.dial(s.preamble('b'), from);
  await waitFor(() => s.passes.a !== undefined, 5_000, "A's confirmation");
  const a = await h.dial(s.preamble('a'), from);
  const got = once(b, 'data');
  a.write('hello');
  expect(String((await got)[0])).toBe('hello');
  return { a, b };
}

const refusedLines = (h: Harness, reason: RejectReason) => h.lines.filter((l) => l.reason === reason && l.msg.startsWith('splice connection refused'));
/** What the rate-limited log accounts for: one per detailed line, plus the count of each summary. */
const loggedCount = (lines: LogLine[]) => lines.reduce((n, l) => n + (l.count ?? 1), 0);

describe('hostile: floods against the splice endpoint', () => {
  it('splice floods - silent connections beyond the per-address cap are reset at once, unread; a real B from another address is held meanwhile; the log stays two lines', async () => {
    const PREAMBLE_MS = 2_000;
    const h = await harness({ preambleTimeoutMs: PREAMBLE_MS, refusalLogIntervalMs: 1_000 });
    const CAP = DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS;
    const N = 200;
    const started = Date.now();
    const flood = await silent(h, N, '127.0.0.1');
    await waitFor(() => h.rejections.length === N - CAP, 1_000, 'the extras to be refused');
    // Refused on arrival, not at the preamble deadline: they hold nothing.
    await Promise.all(flood.slice(CAP).map(closedByProxy));
    expect(Date.now() - started).toBeLessThan(PREAMBLE_MS);
    expect(new Set(h.rejections)).toEqual(new Set(['TOO_MANY_PENDING']));
    expect(h.endpoint.unroutedCount('127.0.0.1')).toBe(CAP);
    expect(h.endpoint.unroutedCount()).toBe(CAP);

    // The legitimate use: a real brokering from another address splices while the flood is held.
    const s = openSession(h);
    const { a, b } = await splice(h, s, '127.0.0.2');
    b.write('back');
    expect(String((await once(a, 'data'))[0])).toBe('back');

    // The held ones end at the deadline; the address may then dial again.
    await waitFor(() => h.rejections.filter((r) => r === 'PREAMBLE_TIMEOUT').length === CAP, PREAMBLE_MS * 3, 'the held ones to time out');
    expect(h.endpoint.unroutedCount()).toBe(0);
    const again = openSession(h);
    await splice(h, again, '127.0.0.1');

    // N - CAP refusals of one reason, in two lines: the first with its details, then a count (a
    // third if a slow machine spreads the flood over two intervals).
    await waitFor(() => loggedCount(refusedLines(h, 'TOO_MANY_PENDING')) === N - CAP, 3_000, 'the summary line');
    const lines = refusedLines(h, 'TOO_MANY_PENDING');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.length).toBeLessThanOrEqual(3);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'splice connection refused', limit: 'address', max: CAP });
    expect(await h.metric('TOO_MANY_PENDING')).toBe(N - CAP);
  }, 20_000);

  it('splice floods - silent connections from many addresses stop at the total cap; a spliced session carries on through the flood', async () => {
    const h = await harness({ maxPending: 40, maxPendingPerAddress: 16, preambleTimeoutMs: 3_000 });
    const s = openSession(h);
    const { a, b } = await splice(h, s, '127.0.0.2');
    // Four addresses of sixteen each: 64 silent connections against a cap of 40.
    for (const from of ['127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6']) await silent(h, 16, from);
    await waitFor(() => h.rejections.length === 24, 1_000, 'the extras to be refused');
    expect(new Set(h.rejections)).toEqual(new Set(['TOO_MANY_PENDING']));
    expect(h.endpoint.unroutedCount()).toBe(40);
    b.write('still spliced');
    expect(String((await once(a, 'data'))[0])).toBe('still spliced');
  }, 15_000);

  /**
   * Runs a splice endpoint (the proxy's defaults) in its own process under 200 descriptors, has
   * 300 connections from 127.0.0.1 say nothing, then dials the real B from 127.0.0.2.
   */
  async function realBUnderIdleFlood(idleConnections: number) {
    const child = spawn('bash', ['-c', 'ulimit -n 200; exec node test/hostile/splice-fd-proxy.mjs 5000'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async () => JSON.parse(String((await lines.next()).value)) as Record<string, unknown>;
    try {
      const info = (await next()) as { port: number; sessionId: string; tokenB: string; challenge: string };
      const token = Buffer.from(info.tokenB, 'base64');
      const bPreamble = encodePreamble(token, signProof(KEY.b, { proxy: PROXY, sessionId: info.sessionId, leg: 'b', token, challenge: Buffer.from(info.challenge, 'base64') }));
      await Promise.all(
        Array.from(
          { length: idleConnections },
          () =>
            new Promise<void>((resolve) => {
              const s = connect({ host: '127.0.0.1', port: info.port });
              s.on('error', () => resolve());
              clients.push(s);
              s.once('connect', () => resolve());
            }),
        ),
      );
      const b = connect({ host: '127.0.0.1', port: info.port, noDelay: true, localAddress: '127.0.0.2' });
      clients.push(b);
      const fate = new Promise<string>((resolve) => {
        b.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        b.once('close', () => resolve('closed'));
        setTimeout(() => resolve('open'), 1_000);
      });
      b.once('connect', () => b.write(bPreamble));
      const outcome = await fate;
      child.stdin!.write('\n');
      return { outcome, state: (await next()) as { unrouted: number; rejected: Record<string, number>; bHeld: boolean } };
    } finally {
      child.kill();
    }
  }

  it('splice floods - 300 silent connections against a proxy with 200 descriptors: the extras are reset, the descriptors last, and a real B with a valid proof is held', async () => {
    // Without the cap, the same flood left the proxy without descriptors and the real B was reset.
    const flooded = await realBUnderIdleFlood(300);
    expect(flooded.outcome).toBe('open');
    expect(flooded.state.bHeld).toBe(true);
    expect(flooded.state.unrouted).toBe(DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS);
    expect(flooded.state.rejected).toEqual({ TOO_MANY_PENDING: 300 - DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS });
  }, 20_000);

  it("splice floods - a spent leg's token is refused TOKEN_USED without its proof being checked, in a couple of log lines; the splice carries on", async () => {
    const h = await harness();
    const s = openSession(h);
    const { a, b } = await splice(h, s);
    const lookupsBefore = h.lookups();
    const linesBefore = h.lines.length;

    // A thief holding B's token (read off a log, say) keeps dialing with junk proofs, and with
    // B's own valid proof replayed.
    const N = 300;
    const started = performance.now();
    for (let i = 0; i < N; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, j) => h.dial(i + j === 0 ? s.preamble('b') : encodePreamble(s.opened.tokens.b, randomBytes(72)))));
      await Promise.all(batch.map(closedByProxy));
    }
    const elapsed = performance.now() - started;
    await waitFor(() => h.rejections.length === N, 2_000, 'every refusal');
    expect(new Set(h.rejections)).toEqual(new Set(['TOKEN_USED']));
    // No proof was verified: the directory was not even asked for the leg's certificate.
    expect(h.lookups() - lookupsBefore).toBe(0);
    expect(await h.metric('TOKEN_USED')).toBe(N);
    await waitFor(() => loggedCount(refusedLines(h, 'TOKEN_USED')) === N, 2_000, 'the summary line');
    // One detailed line, then at most one count per refusal-log interval the flood lasted (a
    // fast machine: a line and one count; a loaded one spills into a few more intervals). What
    // must not happen is a line per refusal: 300 here.
    const flooded = performance.now() - started;
    expect(h.lines.length - linesBefore).toBeLessThanOrEqual(2 + Math.ceil(flooded / 300));
    expect(h.lines.length - linesBefore).toBeLessThan(N / 10);
    console.log(`[splice floods] ${N} replays of a spent token: ${((elapsed / N) * 1000).toFixed(0)} us each, ${h.lines.length - linesBefore} log lines`);

    b.write('still here');
    expect(String((await once(a, 'data'))[0])).toBe('still here');
  }, 20_000);

  it("splice floods - a thief hammering a live leg's token: each try counted BAD_PROOF, one log line for the leg; the real B still gets in", async () => {
    const h = await harness();
    const s = openSession(h);
    await waitFor(() => s.passes.b !== undefined, 2_000, 'B to be told');
    const N = 100;
    const thieves = await Promise.all(Array.from({ length: N }, (_, i) => h.dial(encodePreamble(s.opened.tokens.b, i % 2 === 0 ? randomBytes(72) : Buffer.alloc(0)))));
    await Promise.all(thieves.map(closedByProxy));
    await waitFor(() => h.rejections.length === N, 2_000, 'every refusal');
    expect(new Set(h.rejections)).toEqual(new Set(['BAD_PROOF']));
    expect(await h.metric('BAD_PROOF')).toBe(N);
    const warned = h.lines.filter((l) => l.level === 40);
    expect(warned.map((l) => l.msg)).toEqual(['splice dial without a valid proof refused']);

    // The token was not spent: the real B is held and A is confirmed.
    const b = await h.dial(s.preamble('b'));
    await waitFor(() => s.passes.a !== undefined, 5_000, "A's confirmation");
    expect(b.closed).toBe(false);
    await h.registry.shutdown();
    expect(h.lines.find((l) => l.msg === 'brokering session finished')?.badProofs).toEqual({ a: 0, b: N });
  }, 15_000);
});

describe('hostile: one operator opening brokered sessions without end', () => {
  /**
   * ConnectionRequests with the real registry and endpoint. The bus is reduced to what the proxy
   * asks of it (the caller's identity, `from`, is what the real bus hands the handler once the
   * envelope verified); B answers a forward by dialing with its valid proof.
   */
  async function brokering(caps: { maxPending: number; maxPendingPerRequester: number }) {
    const h = await harness();
    const forwarded: string[] = [];
    const bus = {
      request: async (_to: string, _method: string, params: { token: string; challenge: string; sessionId: string }) => {
        forwarded.push(params.sessionId);
        const token = Buffer.from(params.token, 'base64');
        const proof = signProof(KEY.b, { proxy: PROXY, sessionId: params.sessionId, leg: 'b', token, challenge: Buffer.from(params.challenge, 'base64') });
        await h.dial(encodePreamble(token, proof));
        return { accepted: true };
      },
    } as unknown as Bus;
    const entry = { ...LISTED['hd-2'], name: 'hd-2', channels: [{ type: 'grpc_server', proxy: PROXY }], groups: [], services: [] };
    const requests = new ConnectionRequests({
      operator: PROXY,
      endpoint: `127.0.0.1:${h.port}`,
      bDialMs: 20_000,
      bus,
      directory: { entry: (n: string) => (n === 'hd-2' ? (entry as never) : undefined) },
      open: (request, via) => h.registry.open(request, via),
      log: pino({ level: 'silent' }),
      ...caps,
    });
    const ask = (from: string) =>
      requests.handle({ to: 'hd-2', channel: 'grpc_server' }, from).then(
        (confirmation) => ({ confirmation }),
        (err: unknown) => ({ err: err as RpcError }),
      );
    return { h, requests, forwarded, ask };
  }

  it('brokering caps - past its cap a requester is refused -32031 before B is told; another requester still gets through up to the total; a splice frees a slot', async () => {
    const { h, requests, forwarded, ask } = await brokering({ maxPending: 12, maxPendingPerRequester: 8 });
    // hd-1, with its own valid key, asks 20 times and dials none of its legs.
    const first = await Promise.all(Array.from({ length: 20 }, () => ask('hd-1')));
    const refused = first.filter((r) => 'err' in r).map((r) => (r as { err: RpcError }).err);
    expect(first.filter((r) => 'confirmation' in r)).toHaveLength(8);
    expect(refused).toHaveLength(12);
    expect(refused.map((e) => [e.code, e.data])).toEqual(Array(12).fill([-32031, { limit: 'requester', max: 8 }]));
    expect(refused[0]!.message).toBe('Brokering refused: too many sessions waiting for their peers to dial: hd-1 has 8 brokered sessions not yet spliced, its limit of 8 per requester; retry shortly');
    // B heard of the eight only, and holds eight sockets at the proxy, not twenty.
    expect(forwarded).toHaveLength(8);
    expect(h.registry.liveCount()).toBe(8);

    // Another requester fills what is left of the total, then meets the proxy's cap.
    const second = await Promise.all(Array.from({ length: 6 }, () => ask('hd-3')));
    expect(second.filter((r) => 'confirmation' in r)).toHaveLength(4);
    expect(second.filter((r) => 'err' in r).map((r) => (r as { err: RpcError }).err.data)).toEqual([{ limit: 'proxy', max: 12 }, { limit: 'proxy', max: 12 }]);
    expect(forwarded).toHaveLength(12);

    // hd-1 dials one of its legs for real: that session is spliced, no longer pending, and hd-1 may ask again.
    const c = (first.find((r) => 'confirmation' in r) as { confirmation: { token: string; challenge: string; sessionId: string } }).confirmation;
    const token = Buffer.from(c.token, 'base64');
    await h.dial(encodePreamble(token, signProof(KEY.a, { proxy: PROXY, sessionId: c.sessionId, leg: 'a', token, challenge: Buffer.from(c.challenge, 'base64') })));
    await waitFor(() => requests.pending('hd-1') === 7, 2_000, 'the spliced session to stop counting');
    expect(requests.pending()).toBe(11);
    expect('confirmation' in (await ask('hd-1'))).toBe(true);
    expect(forwarded).toHaveLength(13);
  }, 20_000);

  it('brokering caps - a session that ends unspliced frees its slot', async () => {
    const { h, requests, ask } = await brokering({ maxPending: 100, maxPendingPerRequester: 1 });
    expect('confirmation' in (await ask('hd-1'))).toBe(true);
    expect('err' in (await ask('hd-1'))).toBe(true);
    await h.registry.shutdown();
    await waitFor(() => requests.pending('hd-1') === 0, 1_000, 'the slot to be freed');
    expect(requests.pending()).toBe(0);
  }, 10_000);
});
