import { createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { encodePreamble, signProof, verifyProof, type Leg, type ProofSubject } from '../../src/core/splice-wire.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { ConnectionRequests } from '../../src/proxy/connection-requests.js';
import type { Bus } from '../../src/bus/bus.js';
import { SessionRegistry, type LegPass, type SessionInfo, type SessionMessengers } from '../../src/proxy/session-registry.js';
import { SpliceEndpoint, type RejectReason } from '../../src/proxy/splice-endpoint.js';

// Red-team reproductions against the real splice endpoint and session registry (real TCP, real
// keys of the dev PKI). Each test states what happens today; the numbers go to the report.

const PROXY = 'public-proxy-eps-1';
const CERTS = 'settings/dev/certs';
const keyOf = (name: string): KeyObject => createPrivateKey(readFileSync(`${CERTS}/${name}.key`));
const certOf = (name: string) => {
  const cert = new X509Certificate(readFileSync(`${CERTS}/${name}.crt`));
  return { certificate: cert.toString(), fingerprint: fingerprintOf(cert) };
};
const KEY: Record<Leg, KeyObject> = { a: keyOf('hd-1'), b: keyOf('hd-2') };

interface Harness {
  registry: SessionRegistry;
  endpoint: SpliceEndpoint;
  port: number;
  rejections: RejectReason[];
  lines: { level: number; msg: string; reason?: string }[];
  logBytes: () => number;
  dial: (bytes: Buffer) => Promise<Socket>;
}

const harnesses: Harness[] = [];
const clients: Socket[] = [];

async function harness(opts: { certificateOf?: (op: string) => { certificate: string; fingerprint: string } | undefined; preambleMs?: number } = {}): Promise<Harness> {
  const lines: Harness['lines'] = [];
  let bytes = 0;
  // A real pino at the production level, writing to a counter instead of stdout.
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  const log = pino({ level: 'info' }, sink);
  const registry = new SessionRegistry({
    log,
    operator: PROXY,
    certificateOf: opts.certificateOf ?? ((op) => (op === 'hd-1' || op === 'hd-2' ? certOf(op) : undefined)),
    timeouts: { bDialMs: 20_000, aDialMs: 20_000 },
  });
  const endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, preambleTimeoutMs: opts.preambleMs ?? 2_000, route: (p, s, r) => registry.route(p, s, r) });
  const rejections: RejectReason[] = [];
  endpoint.on('rejected', (r) => rejections.push(r));
  const { port } = await endpoint.listen();
  const dial = async (b: Buffer): Promise<Socket> => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    s.on('error', () => {});
    clients.push(s);
    await once(s, 'connect');
    if (b.length > 0) s.write(b);
    return s;
  };
  const h = { registry, endpoint, port, rejections, lines, logBytes: () => bytes, dial };
  harnesses.push(h);
  return h;
}

const closedByProxy = (s: Socket): Promise<void> =>
  s.closed || s.readableEnded
    ? Promise.resolve()
    : new Promise((resolve) => {
        s.once('end', resolve);
        s.once('close', resolve);
        s.resume();
      });

const waitFor = async (check: () => boolean, ms = 5_000) => {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  for (const h of harnesses.splice(0)) {
    await h.registry.shutdown();
    await h.endpoint.close();
  }
});

const SESSION = { a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:0' };

/** Opens a session whose passes the test keeps; B and A dial only when the test says. */
function openCapturing(h: Harness) {
  const passes: Partial<Record<Leg, LegPass>> = {};
  let info!: SessionInfo;
  const confirmed: { resolve?: () => void } = {};
  const messengers: SessionMessengers = {
    notifyB: async (s, pass) => {
      info = s;
      passes.b = pass;
      return { accepted: true };
    },
    confirmToA: async (_s, pass) => {
      passes.a = pass;
      confirmed.resolve?.();
    },
  };
  const opened = h.registry.open(SESSION, { messengers });
  const proofFor = (leg: Leg, key: KeyObject = KEY[leg]) =>
    signProof(key, { proxy: PROXY, sessionId: opened.sessionId, leg, token: opened.tokens[leg], challenge: opened.challenge });
  return { opened, passes, info: () => info, proofFor };
}

/** A DER ECDSA signature that parses but does not verify: the verifier does the full curve work. */
function wellFormedJunkSignature(): Buffer {
  const int = (b: Buffer) => Buffer.concat([Buffer.from([0x02, b.length]), b]);
  const r = Buffer.concat([Buffer.from([0x01]), randomBytes(31)]);
  const s = Buffer.concat([Buffer.from([0x01]), randomBytes(31)]);
  const body = Buffer.concat([int(r), int(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

describe('red team: splice data plane', () => {
  it('redteam - a stolen token of an already spliced leg is still verified on every dial: a flood costs a signature check and two warn lines each, without bound, for the whole life of the splice', async () => {
    const h = await harness();
    const s = openCapturing(h);
    // The real peers: B dials, A is confirmed and dials, the splice carries bytes.
    const b = await h.dial(encodePreamble(s.opened.tokens.b, s.proofFor('b')));
    await waitFor(() => s.passes.a !== undefined);
    const a = await h.dial(encodePreamble(s.opened.tokens.a, s.proofFor('a')));
    await new Promise((r) => setTimeout(r, 50));
    a.write('hello');
    const got = once(b, 'data');
    expect(String((await got)[0])).toBe('hello');

    // The thief holds B's token (spent: B is spliced) and keeps dialing with junk proofs.
    const N = 600;
    const before = { lines: h.lines.length, bytes: h.logBytes(), heap: process.memoryUsage().heapUsed };
    const started = performance.now();
    const BATCH = 50;
    for (let i = 0; i < N; i += BATCH) {
      const socks = await Promise.all(Array.from({ length: BATCH }, () => h.dial(encodePreamble(s.opened.tokens.b, wellFormedJunkSignature()))));
      await Promise.all(socks.map(closedByProxy));
    }
    const elapsed = performance.now() - started;
    await waitFor(() => h.rejections.length === N);
    // Every one was verified (BAD_PROOF), not short-circuited as TOKEN_USED, though B's leg is spent.
    expect(new Set(h.rejections)).toEqual(new Set(['BAD_PROOF']));
    const newLines = h.lines.slice(before.lines);
    const perAttempt = newLines.length / N;
    expect(newLines.filter((l) => l.msg === 'splice dial without a valid proof refused')).toHaveLength(N);
    expect(newLines.filter((l) => l.msg === 'splice connection refused' && l.reason === 'BAD_PROOF')).toHaveLength(N);
    // The splice is untouched: the real peers still talk.
    b.write('still here');
    expect(String((await once(a, 'data'))[0])).toBe('still here');
    // A valid replay of B's own proof (an on-path observer saw it in clear) is refused by the machine.
    await closedByProxy(await h.dial(encodePreamble(s.opened.tokens.b, s.proofFor('b'))));
    expect(h.rejections.at(-1)).toBe('TOKEN_USED');

    // What one verification costs on its own (P-256, a DER signature that parses).
    const subject: ProofSubject = { proxy: PROXY, sessionId: s.opened.sessionId, leg: 'b', token: s.opened.tokens.b, challenge: s.opened.challenge };
    const junk = Array.from({ length: 2000 }, wellFormedJunkSignature);
    const listed = certOf('hd-2');
    const t0 = performance.now();
    for (const j of junk) verifyProof(j, subject, listed);
    const verifyUs = ((performance.now() - t0) / junk.length) * 1000;
    console.log(
      `[redteam] ${N} junk-proof dials on a spliced leg: ${elapsed.toFixed(0)} ms (${((elapsed / N) * 1000).toFixed(0)} us each, ${(N / (elapsed / 1000)).toFixed(0)}/s), ` +
        `${perAttempt} log lines and ${((h.logBytes() - before.bytes) / N).toFixed(0)} log bytes per attempt, heap delta ${((process.memoryUsage().heapUsed - before.heap) / 1024).toFixed(0)} KiB; ` +
        `verifyProof alone ${verifyUs.toFixed(0)} us`,
    );
    expect(perAttempt).toBe(2);
  }, 60_000);

  it('redteam - the splice endpoint holds any number of connections that never send a preamble (no token needed), each until the deadline, and logs a warning per connection', async () => {
    const h = await harness({ preambleMs: 1_500 });
    const N = 800;
    const socks: Socket[] = [];
    for (let i = 0; i < N; i += 100) socks.push(...(await Promise.all(Array.from({ length: 100 }, () => h.dial(Buffer.alloc(0))))));
    await waitFor(() => h.endpoint.unroutedCount() === N);
    // No cap: every one of them holds a descriptor (and a timer) in the proxy.
    expect(h.endpoint.unroutedCount()).toBe(N);
    // A real session still gets through while they are held (the fd limit here is far away).
    const s = openCapturing(h);
    const b = await h.dial(encodePreamble(s.opened.tokens.b, s.proofFor('b')));
    await waitFor(() => s.passes.a !== undefined);
    expect(b.closed).toBe(false);
    await waitFor(() => h.rejections.filter((r) => r === 'PREAMBLE_TIMEOUT').length === N, 10_000);
    expect(h.lines.filter((l) => l.msg === 'splice connection refused' && l.reason === 'PREAMBLE_TIMEOUT' && l.level === 40)).toHaveLength(N);
    // And a flood of unknown tokens (again no secret needed) is one warn line each.
    const unknown = await Promise.all(Array.from({ length: 100 }, () => h.dial(encodePreamble(randomBytes(32)))));
    await Promise.all(unknown.map(closedByProxy));
    await waitFor(() => h.rejections.filter((r) => r === 'UNKNOWN_TOKEN').length === 100);
    expect(h.lines.filter((l) => l.reason === 'UNKNOWN_TOKEN' && l.level === 40)).toHaveLength(100);
  }, 60_000);

  /** Runs the proxy under 200 descriptors, lets `idleConnections` say nothing, then dials the real B. */
  async function realBUnderIdleFlood(idleConnections: number): Promise<{ outcome: string; state: { unrouted: number; rejected: Record<string, number>; bHeld: boolean } }> {
    const child = spawn('bash', ['-c', 'ulimit -n 200; exec node test/hostile/splice-fd-proxy.mjs 5000'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async () => JSON.parse(String((await lines.next()).value));
    try {
      const info = (await next()) as { port: number; sessionId: string; tokenB: string; challenge: string };
      const token = Buffer.from(info.tokenB, 'base64');
      const bPreamble = encodePreamble(token, signProof(KEY.b, { proxy: PROXY, sessionId: info.sessionId, leg: 'b', token, challenge: Buffer.from(info.challenge, 'base64') }));
      // The attacker: connections that say nothing. The kernel completes every handshake.
      await Promise.all(
        Array.from(
          { length: idleConnections },
          () =>
            new Promise<void>((resolve) => {
              const s = connect({ host: '127.0.0.1', port: info.port });
              s.on('error', () => {});
              clients.push(s);
              s.once('connect', () => resolve());
            }),
        ),
      );
      await new Promise((r) => setTimeout(r, 300));
      const b = connect({ host: '127.0.0.1', port: info.port, noDelay: true });
      clients.push(b);
      const fate = new Promise<string>((resolve) => {
        b.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        b.once('close', () => resolve('closed'));
        setTimeout(() => resolve('open'), 2_000);
      });
      b.once('connect', () => b.write(bPreamble));
      const outcome = await fate;
      child.stdin!.write('\n');
      return { outcome, state: await next() };
    } finally {
      child.kill();
    }
  }

  it('redteam - idle connections with no token exhaust the proxy\'s descriptors: a real B with a valid token and proof is then reset before its preamble is read', async () => {
    // Without the flood the real B is held (the session moves on to confirm A).
    const calm = await realBUnderIdleFlood(0);
    expect(calm).toMatchObject({ outcome: 'open', state: { bHeld: true } });
    // With 300 silent connections against 200 descriptors (a deployment has more; the attacker
    // then needs proportionally more, each one a TCP handshake per preamble deadline).
    const flooded = await realBUnderIdleFlood(300);
    console.log(`[redteam] fd exhaustion: real B ${flooded.outcome}; proxy state ${JSON.stringify(flooded.state)}`);
    expect(flooded.outcome).not.toBe('open');
    expect(flooded.state.bHeld).toBe(false);
  }, 30_000);

  it('redteam - one operator with its own valid key opens brokered sessions without limit: each one makes B dial and holds B\'s socket until aDialMs', async () => {
    const h = await harness();
    // B's side, reduced to what it does on a forward: dial with its valid proof. The bus is a stub
    // here (the caller's identity, `from`, is what the real bus hands the handler once the
    // envelope verified); everything from the registry down is real.
    const bSockets: Socket[] = [];
    const bus = {
      request: async (_to: string, _method: string, params: { token: string; challenge: string; sessionId: string }) => {
        const token = Buffer.from(params.token, 'base64');
        const proof = signProof(KEY.b, { proxy: PROXY, sessionId: params.sessionId, leg: 'b', token, challenge: Buffer.from(params.challenge, 'base64') });
        bSockets.push(await h.dial(encodePreamble(token, proof)));
        return { accepted: true };
      },
    } as unknown as Bus;
    const entry = { ...certOf('hd-2'), name: 'hd-2', channels: [{ type: 'grpc_server', proxy: PROXY }], groups: [], services: [] };
    const requests = new ConnectionRequests({
      operator: PROXY,
      endpoint: `127.0.0.1:${h.port}`,
      bDialMs: 20_000,
      bus,
      directory: { entry: (n: string) => (n === 'hd-2' ? (entry as never) : undefined) },
      open: (request, via) => h.registry.open(request, via),
    });
    // hd-1 asks 300 times and never dials its own leg.
    const N = 300;
    const confirmations = await Promise.all(Array.from({ length: N }, () => requests.handle({ to: 'hd-2', channel: 'grpc_server' }, 'hd-1')));
    expect(confirmations).toHaveLength(N);
    await waitFor(() => h.endpoint.unroutedCount() === 0 && bSockets.length === N);
    // Every one is live and holds a socket of B at the proxy; nothing refused the requester.
    expect(h.registry.liveCount()).toBe(N);
    expect(bSockets.filter((s) => !s.closed)).toHaveLength(N);
    expect(h.rejections).toEqual([]);
  }, 60_000);

  it('redteam - a rotated certificate takes effect on the next dial: the old key is refused, the new key admitted, a listed fingerprint that does not match is refused (protection holds)', async () => {
    let listedB = certOf('hd-2');
    const h = await harness({ certificateOf: (op) => (op === 'hd-2' ? listedB : op === 'hd-1' ? certOf('hd-1') : undefined) });
    // Warm the key cache with hd-2's current certificate.
    const first = openCapturing(h);
    const b1 = await h.dial(encodePreamble(first.opened.tokens.b, first.proofFor('b')));
    await waitFor(() => first.passes.a !== undefined);
    expect(b1.closed).toBe(false);

    // The directory rotates hd-2 to a new certificate (here another key of the dev PKI).
    listedB = certOf('public-proxy-hyper-1');
    const second = openCapturing(h);
    await closedByProxy(await h.dial(encodePreamble(second.opened.tokens.b, second.proofFor('b', KEY.b))));
    expect(h.rejections.at(-1)).toBe('BAD_PROOF');

    // A listing whose fingerprint is not its certificate's is refused, whoever signs.
    listedB = { certificate: certOf('hd-2').certificate, fingerprint: certOf('public-proxy-hyper-1').fingerprint };
    await closedByProxy(await h.dial(encodePreamble(second.opened.tokens.b, second.proofFor('b', KEY.b))));
    expect(h.rejections.at(-1)).toBe('BAD_PROOF');
    listedB = { certificate: certOf('public-proxy-hyper-1').certificate, fingerprint: certOf('hd-2').fingerprint };
    await closedByProxy(await h.dial(encodePreamble(second.opened.tokens.b, second.proofFor('b', keyOf('public-proxy-hyper-1')))));
    expect(h.rejections.at(-1)).toBe('BAD_PROOF');

    // With the rotation listed properly, the new key is admitted on the same, unspent token.
    listedB = certOf('public-proxy-hyper-1');
    const b2 = await h.dial(encodePreamble(second.opened.tokens.b, second.proofFor('b', keyOf('public-proxy-hyper-1'))));
    await waitFor(() => second.passes.a !== undefined);
    expect(b2.closed).toBe(false);
    // hd-2 leaving the directory: refused.
    listedB = undefined as unknown as typeof listedB;
    const third = openCapturing(h);
    await closedByProxy(await h.dial(encodePreamble(third.opened.tokens.b, third.proofFor('b'))));
    expect(h.rejections).toEqual(['BAD_PROOF', 'BAD_PROOF', 'BAD_PROOF', 'BAD_PROOF']);
  }, 30_000);

  it('redteam - proof lengths at the edges on a brokered session: 0, 1, 512 junk are BAD_PROOF; 513 and 65535 are PREAMBLE_INVALID at the header; none spends the token (protection holds)', async () => {
    const h = await harness();
    const s = openCapturing(h);
    const header = (len: number) => {
      const b = Buffer.alloc(34);
      s.opened.tokens.b.copy(b, 0);
      b.writeUInt16BE(len, 32);
      return b;
    };
    const cases: [Buffer, RejectReason][] = [
      [encodePreamble(s.opened.tokens.b), 'BAD_PROOF'],
      [encodePreamble(s.opened.tokens.b, randomBytes(1)), 'BAD_PROOF'],
      [encodePreamble(s.opened.tokens.b, randomBytes(512)), 'BAD_PROOF'],
      [header(513), 'PREAMBLE_INVALID'],
      [header(65535), 'PREAMBLE_INVALID'],
      // A's token with B's valid proof, and a proof over A's leg by B: wrong leg either way.
      [encodePreamble(s.opened.tokens.a, s.proofFor('b')), 'BAD_PROOF'],
    ];
    for (const [bytes] of cases) await closedByProxy(await h.dial(bytes));
    expect(h.rejections).toEqual(cases.map(([, r]) => r));
    // Split at every byte boundary with pauses, still under the deadline: read whole and admitted.
    const real = encodePreamble(s.opened.tokens.b, s.proofFor('b'));
    const sock = await h.dial(Buffer.alloc(0));
    for (let i = 0; i < real.length; i += 8) {
      sock.write(real.subarray(i, i + 8));
      await new Promise((r) => setTimeout(r, 2));
    }
    await waitFor(() => s.passes.a !== undefined);
    expect(sock.closed).toBe(false);
  }, 30_000);

  it('redteam - a relay session (no proofs) and a brokered session share the endpoint: a brokered token still needs its proof, a relay token opens only its own session (protection holds)', async () => {
    const h = await harness();
    const brokered = openCapturing(h);
    const relay = h.registry.open({ a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:0' }, { messengers: { notifyB: async () => ({ accepted: true }), confirmToA: async () => {} }, proofs: false });
    // A brokered leg's token presented the relay way (length 0): refused.
    await closedByProxy(await h.dial(encodePreamble(brokered.opened.tokens.b)));
    expect(h.rejections).toEqual(['BAD_PROOF']);
    // The relay's legs splice to each other, never into the brokered session.
    const r1 = await h.dial(encodePreamble(relay.tokens.a));
    const r2 = await h.dial(encodePreamble(relay.tokens.b));
    await new Promise((r) => setTimeout(r, 50));
    r1.write('relay');
    expect(String((await once(r2, 'data'))[0])).toBe('relay');
    expect(brokered.passes.a).toBeUndefined();
  }, 30_000);
});
