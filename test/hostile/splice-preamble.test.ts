import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { SessionRegistry, type SessionRegistryOptions } from '../../src/proxy/session-registry.js';
import { SpliceEndpoint, type RejectReason } from '../../src/proxy/splice-endpoint.js';
import { TokenStore } from '../../src/proxy/token-store.js';
import { TOKEN_BYTES } from '../../src/core/constants.js';
import { pool, resourceCounts, settledExcess, waitFor } from './helpers.js';

const log = pino({ level: 'silent' });
const SEED = Number(process.env.HOSTILE_SEED ?? 20_240_611);

interface Proxy {
  registry: SessionRegistry;
  endpoint: SpliceEndpoint;
  tokens: TokenStore;
  port: number;
  rejections: Map<RejectReason, number>;
  finished: { outcome: string; detail?: string }[];
}

const proxies: Proxy[] = [];

async function startProxy(preambleTimeoutMs: number, hooks: Pick<SessionRegistryOptions, 'notifyB' | 'confirmToA' | 'onSpliced'>): Promise<Proxy> {
  const tokens = new TokenStore();
  const finished: Proxy['finished'] = [];
  const registry = new SessionRegistry({
    log,
    tokens,
    timeouts: { bDialMs: 5_000, aDialMs: 5_000 },
    ...hooks,
    onFinished: (_s, output) => finished.push(output),
  });
  const endpoint = new SpliceEndpoint({
    host: '127.0.0.1',
    port: 0,
    log,
    preambleTimeoutMs,
    route: (token, socket, rest) => registry.route(token, socket, rest),
  });
  const rejections = new Map<RejectReason, number>();
  endpoint.on('rejected', (reason) => rejections.set(reason, (rejections.get(reason) ?? 0) + 1));
  const { port } = await endpoint.listen();
  const p = { registry, endpoint, tokens, port, rejections, finished };
  proxies.push(p);
  return p;
}

afterEach(async () => {
  for (const p of proxies.splice(0)) {
    await p.registry.shutdown();
    await p.endpoint.close();
  }
});

function dial(port: number, opts: { allowHalfOpen?: boolean } = {}): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: opts.allowHalfOpen ?? false });
  socket.on('error', () => {});
  return once(socket, 'connect').then(() => socket);
}

/** Resolves when the socket is fully closed; the proxy must be the one to close stalled ones. */
function closed(socket: Socket, ms: number): Promise<'closed' | 'still open'> {
  if (socket.closed) return Promise.resolve('closed');
  socket.resume();
  // A cleared timer, not sleep(): a pending sleep would itself count as a leaked Timeout.
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    // Not events.once: it rejects on 'error', and an RST from the proxy is a hang-up too.
    new Promise<'closed'>((resolve) => socket.once('close', () => resolve('closed'))),
    new Promise<'still open'>((resolve) => (timer = setTimeout(() => resolve('still open'), ms))),
  ]).finally(() => clearTimeout(timer));
}

/**
 * How a hostile dialer behaves after (or while) sending its bytes:
 * - fin: end() and close, like a client that gives up;
 * - halfClose: end() but keep reading, waiting for the proxy to hang up;
 * - reset: RST, which may discard bytes the proxy has not read yet;
 * - stall: keep the connection open and say nothing more.
 */
type Ending = 'fin' | 'halfClose' | 'reset' | 'stall';

interface HostileDialer {
  bytes: Uint8Array;
  /** Where the bytes are split into separate writes, with a short pause between them. */
  cuts: number[];
  ending: Ending;
}

const hostileDialer: fc.Arbitrary<HostileDialer> = fc.record({
  // Uniform lengths: fast-check's default size would keep nearly every array under 32 bytes.
  bytes: fc.integer({ min: 0, max: 64 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
  cuts: fc.uniqueArray(fc.integer({ min: 1, max: 63 }), { maxLength: 3 }),
  ending: fc.constantFrom<Ending>('fin', 'halfClose', 'reset', 'stall'),
});

/** The refusals the endpoint may give this dialer; more than one only when an RST races the bytes. */
function expectedReasons(d: HostileDialer): RejectReason[] {
  const full = d.bytes.length >= TOKEN_BYTES;
  if (d.ending === 'reset') return full ? ['UNKNOWN_TOKEN', 'PREAMBLE_CLOSED'] : ['PREAMBLE_CLOSED'];
  if (full) return ['UNKNOWN_TOKEN'];
  return d.ending === 'stall' ? ['PREAMBLE_TIMEOUT'] : ['PREAMBLE_CLOSED'];
}

async function runHostile(port: number, d: HostileDialer, closeWithinMs: number): Promise<string | undefined> {
  const socket = await dial(port, { allowHalfOpen: d.ending === 'halfClose' });
  const cuts = [...d.cuts.filter((c) => c < d.bytes.length)].sort((x, y) => x - y);
  let from = 0;
  for (const cut of [...cuts, d.bytes.length]) {
    if (cut > from) socket.write(d.bytes.subarray(from, cut));
    from = cut;
    if (cut < d.bytes.length) await sleep(1);
  }
  if (d.ending === 'reset') {
    socket.resetAndDestroy();
    return undefined;
  }
  if (d.ending === 'fin') {
    socket.end();
    socket.destroySoon();
  } else if (d.ending === 'halfClose') {
    socket.end();
  }
  const state = await closed(socket, closeWithinMs);
  socket.destroy();
  return state === 'closed' ? undefined : `${d.ending} dialer with ${d.bytes.length} bytes still open after ${closeWithinMs} ms`;
}

/** A well-behaved brokering, B then A, with a payload each way checked byte for byte. */
function legitimateSession(getPort: () => number) {
  const bSockets = new Map<string, Socket>();
  const aSockets = new Map<string, Promise<Socket>>();
  const spliced = new Set<string>();
  const hooks: Pick<SessionRegistryOptions, 'notifyB' | 'confirmToA' | 'onSpliced'> = {
    onSpliced: (session) => spliced.add(session.sessionId),
    notifyB: async (session, token) => {
      const b = await dial(getPort(), { allowHalfOpen: true });
      b.write(token);
      bSockets.set(session.sessionId, b);
      return { accepted: true };
    },
    confirmToA: async (session, token) => {
      aSockets.set(
        session.sessionId,
        dial(getPort(), { allowHalfOpen: true }).then((a) => {
          a.write(token);
          return a;
        }),
      );
    },
  };
  async function exchange(sessionId: string): Promise<void> {
    await waitFor(() => aSockets.has(sessionId), 5_000, 'confirmation to A');
    const a = await aSockets.get(sessionId)!;
    const b = bSockets.get(sessionId)!;
    // B is a TLS server and speaks only after A attaches; a B that half-closes before that is
    // refused as peerClosedEarly, so wait for the splice rather than race A's preamble.
    await waitFor(() => spliced.has(sessionId), 5_000, 'splice');
    const aToB = randomBytes(48 * 1024);
    const bToA = randomBytes(48 * 1024);
    const read = (s: Socket) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      return once(s, 'end').then(() => Buffer.concat(chunks));
    };
    const atB = read(b);
    const atA = read(a);
    a.end(aToB);
    b.end(bToA);
    expect((await atB).equals(aToB)).toBe(true);
    expect((await atA).equals(bToA)).toBe(true);
    a.destroy();
    b.destroy();
  }
  return { hooks, exchange };
}

const LEAK_KINDS = ['TCPSocketWrap', 'Timeout'] as const;

describe('hostile splice endpoint', () => {
  it('splice endpoint - 1,000 random preambles are each refused with the right reason while real sessions still splice', async () => {
    const baseline = resourceCounts();
    let port = 0;
    const legit = legitimateSession(() => port);
    // Long enough that a loaded machine still delivers a closing dialer's FIN before the deadline.
    const p = await startProxy(1_000, legit.hooks);
    port = p.port;

    const dialers = fc.sample(hostileDialer, { seed: SEED, numRuns: 1_000 });
    const failures: string[] = [];
    const hostile = pool(dialers, 100, async (d) => {
      const problem = await runHostile(port, d, 5_000);
      if (problem) failures.push(problem);
    });
    // Real brokerings in the middle of the flood, not before or after it.
    await sleep(50);
    const sessions = [0, 1, 2].map(() => p.registry.open({ a: 'hd-1', b: 'hd-2', endpoint: `127.0.0.1:${port}` }));
    await Promise.all(sessions.map((s) => legit.exchange(s.sessionId)));
    const outputs = await Promise.all(sessions.map((s) => s.done));
    await hostile;

    expect(failures).toEqual([]);
    expect(outputs).toEqual(sessions.map(() => ({ outcome: 'closed', detail: 'completed' })));

    // Every hostile connection is refused exactly once, for the reason its behaviour predicts.
    await waitFor(() => [...p.rejections.values()].reduce((x, y) => x + y, 0) >= dialers.length, 3_000, 'all refusals');
    const must = new Map<RejectReason, number>();
    const resetRacy = { full: 0 };
    for (const d of dialers) {
      const reasons = expectedReasons(d);
      if (reasons.length === 1) must.set(reasons[0]!, (must.get(reasons[0]!) ?? 0) + 1);
      else resetRacy.full += 1;
    }
    const got = Object.fromEntries(p.rejections);
    expect([...p.rejections.values()].reduce((x, y) => x + y, 0)).toBe(dialers.length);
    expect(got.PREAMBLE_TIMEOUT ?? 0).toBe(must.get('PREAMBLE_TIMEOUT') ?? 0);
    expect(got.UNKNOWN_TOKEN ?? 0).toBeGreaterThanOrEqual(must.get('UNKNOWN_TOKEN') ?? 0);
    expect(got.UNKNOWN_TOKEN ?? 0).toBeLessThanOrEqual((must.get('UNKNOWN_TOKEN') ?? 0) + resetRacy.full);
    expect(got.PREAMBLE_CLOSED ?? 0).toBeGreaterThanOrEqual(must.get('PREAMBLE_CLOSED') ?? 0);
    expect(got.TOKEN_USED ?? 0).toBe(0);
    expect(got.WRONG_STATE ?? 0).toBe(0);
    expect(got.ROUTE_ERROR ?? 0).toBe(0);
    // The generator must have produced every kind of refusal, or the test proves less than it says.
    expect(Object.keys(got).sort()).toEqual(['PREAMBLE_CLOSED', 'PREAMBLE_TIMEOUT', 'UNKNOWN_TOKEN']);

    expect(p.registry.liveCount()).toBe(0);
    expect(p.endpoint.unroutedCount()).toBe(0);
    expect(p.tokens.liveCount()).toBe(0);
    expect(await settledExcess(baseline, LEAK_KINDS)).toEqual({});
    // Nothing is left for close() to wait for.
    let timer: NodeJS.Timeout | undefined;
    const closedInTime = await Promise.race([p.endpoint.close().then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 1_000)))]);
    clearTimeout(timer);
    expect(closedInTime).toBe(true);
  }, 30_000);

  it('splice endpoint - a preamble sent one byte per second is dropped at the deadline, valid token or not', async () => {
    const baseline = resourceCounts();
    let bToken: Buffer | undefined;
    const p = await startProxy(1_500, {
      notifyB: async (_s, token) => {
        bToken = token;
        return { accepted: true };
      },
      confirmToA: async () => {},
    });
    const session = p.registry.open({ a: 'hd-1', b: 'hd-2', endpoint: `127.0.0.1:${p.port}` });
    await waitFor(() => bToken !== undefined);

    // Two trickling dialers: one with the session's real token, one with garbage.
    const trickle = async (bytes: Buffer) => {
      const socket = await dial(p.port);
      const started = Date.now();
      let sent = 0;
      const ticker = setInterval(() => {
        if (!socket.destroyed && sent < bytes.length) socket.write(bytes.subarray(sent, ++sent));
      }, 1_000);
      socket.write(bytes.subarray(0, ++sent));
      const state = await closed(socket, 4_000);
      clearInterval(ticker);
      socket.destroy();
      return { state, elapsed: Date.now() - started };
    };
    const results = await Promise.all([trickle(bToken!), trickle(randomBytes(TOKEN_BYTES))]);
    for (const r of results) {
      expect(r.state).toBe('closed');
      expect(r.elapsed).toBeGreaterThanOrEqual(1_450);
      expect(r.elapsed).toBeLessThan(3_000);
    }
    expect(Object.fromEntries(p.rejections)).toEqual({ PREAMBLE_TIMEOUT: 2 });
    // The trickled token never reached the session: it is still waiting for B.
    expect(p.registry.liveCount()).toBe(1);
    expect(p.endpoint.unroutedCount()).toBe(0);
    await p.registry.shutdown();
    expect(await session.done).toEqual({ outcome: 'shutDown', detail: 'proxy shutting down' });
    expect(p.tokens.liveCount()).toBe(0);
    expect(await settledExcess(baseline, LEAK_KINDS)).toEqual({});
  }, 15_000);
});
