import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { encodePreamble, PREAMBLE_HEADER_BYTES, signProof, type Leg } from '../../src/core/splice-wire.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { SessionRegistry, type LegPass, type SessionInfo, type SessionMessengers, type SessionRegistryOptions } from '../../src/proxy/session-registry.js';
import { SpliceEndpoint, type RejectReason } from '../../src/proxy/splice-endpoint.js';
import { TokenStore } from '../../src/proxy/token-store.js';
import { MAX_PROOF_BYTES, TOKEN_BYTES } from '../../src/core/constants.js';
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

const PROXY = 'public-proxy-eps-1';
const CERTS = 'settings/dev/certs';
const devCert = (name: string) => new X509Certificate(readFileSync(`${CERTS}/${name}.crt`));
const legOperator: Record<Leg, string> = { a: 'hd-1', b: 'hd-2' };
const legKey = { a: createPrivateKey(readFileSync(`${CERTS}/hd-1.key`)), b: createPrivateKey(readFileSync(`${CERTS}/hd-2.key`)) };
function certificateOf(operator: string) {
  if (operator !== 'hd-1' && operator !== 'hd-2') return undefined;
  const cert = devCert(operator);
  return { certificate: cert.toString(), fingerprint: fingerprintOf(cert) };
}
/** What the leg's real operator sends: its token and a proof signed with its key. */
const realPreamble = (session: SessionInfo, leg: Leg, pass: LegPass) =>
  encodePreamble(pass.token, signProof(legKey[leg], { proxy: PROXY, sessionId: session.sessionId, leg, token: pass.token, challenge: pass.challenge }));

async function startProxy(preambleTimeoutMs: number, hooks: Pick<SessionRegistryOptions, 'onSpliced'> = {}): Promise<Proxy> {
  const tokens = new TokenStore();
  const finished: Proxy['finished'] = [];
  const registry = new SessionRegistry({
    log,
    operator: PROXY,
    certificateOf,
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
    // A hundred hostile dialers at once from 127.0.0.1: the pending caps are splice-floods.test.ts's
    // subject, not this one's. The refusal log's timer is short, so the leak checks see it end.
    maxPendingPerAddress: 1_000,
    refusalLogIntervalMs: 50,
    route: (preamble, socket, rest) => registry.route(preamble, socket, rest),
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

// Bytes of two shapes: anything at all (whose length field, if it gets that far, is nearly always
// over the cap), and a well-framed preamble (a random token, a proof length under or over the cap,
// and some or all or more of the proof), so every branch of the reader is reached.
const anyBytes = fc.integer({ min: 0, max: 80 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
const framedBytes = fc
  .record({
    token: fc.uint8Array({ minLength: TOKEN_BYTES, maxLength: TOKEN_BYTES }),
    length: fc.oneof(fc.integer({ min: 0, max: 80 }), fc.integer({ min: MAX_PROOF_BYTES + 1, max: 0xffff })),
    extra: fc.integer({ min: -40, max: 20 }),
  })
  .map(({ token, length, extra }) => {
    const header = Buffer.alloc(PREAMBLE_HEADER_BYTES);
    header.set(token);
    header.writeUInt16BE(length, TOKEN_BYTES);
    const sent = Math.max(0, Math.min(length, MAX_PROOF_BYTES) + extra);
    return new Uint8Array(Buffer.concat([header, Buffer.alloc(sent, 7)]));
  });

const hostileDialer: fc.Arbitrary<HostileDialer> = fc.record({
  bytes: fc.oneof(anyBytes, framedBytes),
  cuts: fc.uniqueArray(fc.integer({ min: 1, max: 120 }), { maxLength: 3 }),
  ending: fc.constantFrom<Ending>('fin', 'halfClose', 'reset', 'stall'),
});

/** What a complete preamble in these bytes would be refused for, or undefined if it is incomplete. */
function verdictOnBytes(bytes: Uint8Array): RejectReason | undefined {
  if (bytes.length < PREAMBLE_HEADER_BYTES) return undefined;
  const length = Buffer.from(bytes).readUInt16BE(TOKEN_BYTES);
  if (length > MAX_PROOF_BYTES) return 'PREAMBLE_INVALID';
  return bytes.length >= PREAMBLE_HEADER_BYTES + length ? 'UNKNOWN_TOKEN' : undefined;
}

/** The refusals the endpoint may give this dialer; more than one only when an RST races the bytes. */
function expectedReasons(d: HostileDialer): RejectReason[] {
  const verdict = verdictOnBytes(d.bytes);
  if (d.ending === 'reset') return verdict ? [verdict, 'PREAMBLE_CLOSED'] : ['PREAMBLE_CLOSED'];
  if (verdict) return [verdict];
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

/**
 * A well-behaved brokering, B then A, with a payload each way checked byte for byte. Before each
 * real leg dials, two thieves present that leg's real token: one with no proof, one with junk
 * where the proof goes. Both must be refused (BAD_PROOF) without costing the real leg its place.
 */
function legitimateSession(getPort: () => number) {
  const bSockets = new Map<string, Socket>();
  const aSockets = new Map<string, Promise<Socket>>();
  const spliced = new Set<string>();
  const thieves: Promise<'closed' | 'still open'>[] = [];
  const steal = async (pass: LegPass) => {
    for (const proof of [Buffer.alloc(0), randomBytes(71)]) {
      const thief = await dial(getPort());
      thief.write(encodePreamble(pass.token, proof));
      thieves.push(closed(thief, 5_000));
    }
  };
  const hooks: Pick<SessionRegistryOptions, 'onSpliced'> = { onSpliced: (session) => spliced.add(session.sessionId) };
  const messengers: SessionMessengers = {
    notifyB: async (session, pass) => {
      await steal(pass);
      const b = await dial(getPort(), { allowHalfOpen: true });
      b.write(realPreamble(session, 'b', pass));
      bSockets.set(session.sessionId, b);
      return { accepted: true };
    },
    confirmToA: async (session, pass) => {
      await steal(pass);
      aSockets.set(
        session.sessionId,
        dial(getPort(), { allowHalfOpen: true }).then((a) => {
          a.write(realPreamble(session, 'a', pass));
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
  return { hooks, messengers, exchange, thieves };
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
    const sessions = [0, 1, 2].map(() => p.registry.open({ a: legOperator.a, b: legOperator.b, endpoint: `127.0.0.1:${port}` }, { messengers: legit.messengers }));
    await Promise.all(sessions.map((s) => legit.exchange(s.sessionId)));
    const outputs = await Promise.all(sessions.map((s) => s.done));
    await hostile;

    expect(failures).toEqual([]);
    expect(outputs).toEqual(sessions.map(() => ({ outcome: 'closed', detail: 'completed' })));
    expect(await Promise.all(legit.thieves)).toEqual(sessions.flatMap(() => ['closed', 'closed', 'closed', 'closed']));

    // Every hostile connection is refused exactly once, for the reason its behaviour predicts.
    const thefts = legit.thieves.length;
    await waitFor(() => [...p.rejections.values()].reduce((x, y) => x + y, 0) >= dialers.length + thefts, 3_000, 'all refusals');
    const must = new Map<RejectReason, number>();
    const resetRacy = { full: 0 };
    for (const d of dialers) {
      const reasons = expectedReasons(d);
      if (reasons.length === 1) must.set(reasons[0]!, (must.get(reasons[0]!) ?? 0) + 1);
      else resetRacy.full += 1;
    }
    const got = Object.fromEntries(p.rejections);
    expect([...p.rejections.values()].reduce((x, y) => x + y, 0)).toBe(dialers.length + thefts);
    expect(got.BAD_PROOF).toBe(thefts);
    expect(got.PREAMBLE_TIMEOUT ?? 0).toBe(must.get('PREAMBLE_TIMEOUT') ?? 0);
    expect(got.UNKNOWN_TOKEN ?? 0).toBeGreaterThanOrEqual(must.get('UNKNOWN_TOKEN') ?? 0);
    expect(got.UNKNOWN_TOKEN ?? 0).toBeLessThanOrEqual((must.get('UNKNOWN_TOKEN') ?? 0) + resetRacy.full);
    expect(got.PREAMBLE_CLOSED ?? 0).toBeGreaterThanOrEqual(must.get('PREAMBLE_CLOSED') ?? 0);
    expect(got.PREAMBLE_INVALID ?? 0).toBeGreaterThanOrEqual(must.get('PREAMBLE_INVALID') ?? 0);
    expect(got.TOKEN_USED ?? 0).toBe(0);
    expect(got.WRONG_STATE ?? 0).toBe(0);
    expect(got.ROUTE_ERROR ?? 0).toBe(0);
    // The generator must have produced every kind of refusal, or the test proves less than it says.
    expect(Object.keys(got).sort()).toEqual(['BAD_PROOF', 'PREAMBLE_CLOSED', 'PREAMBLE_INVALID', 'PREAMBLE_TIMEOUT', 'UNKNOWN_TOKEN']);

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
    let bPreamble: Buffer | undefined;
    const p = await startProxy(1_500);
    const messengers: SessionMessengers = {
      notifyB: async (s, pass) => {
        bPreamble = realPreamble(s, 'b', pass);
        return { accepted: true };
      },
      confirmToA: async () => {},
    };
    const session = p.registry.open({ a: legOperator.a, b: legOperator.b, endpoint: `127.0.0.1:${p.port}` }, { messengers });
    await waitFor(() => bPreamble !== undefined);

    // Two trickling dialers: one with B's real token and proof, one with garbage.
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
    const results = await Promise.all([trickle(bPreamble!), trickle(randomBytes(TOKEN_BYTES))]);
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
