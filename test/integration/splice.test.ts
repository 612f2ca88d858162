import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { NotifyResult } from '../../machines/brokering.js';
import { encodePreamble, signProof, type Leg } from '../../src/core/splice-wire.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { SessionRegistry, type LegPass, type SessionInfo, type SessionMessengers, type SessionRegistryOptions } from '../../src/proxy/session-registry.js';
import { SpliceEndpoint, type RejectReason } from '../../src/proxy/splice-endpoint.js';
import { relayPath } from '../../src/proxy/splicer.js';
import { readUntil, readUntilEnd } from '../helpers/socket-reads.js';

const log = pino({ level: 'silent' });
const PREAMBLE_MS = 300;
/** With the native relay (the default when built) an idle spliced session is parked: its actor stopped. */
const parks = relayPath().path === 'native';

const PROXY = 'public-proxy-eps-1';
const CERTS = 'settings/dev/certs';
const OPERATOR: Record<Leg, string> = { a: 'hd-1', b: 'hd-2' };
const KEY = { a: createPrivateKey(readFileSync(`${CERTS}/hd-1.key`)), b: createPrivateKey(readFileSync(`${CERTS}/hd-2.key`)) };
function certificateOf(operator: string) {
  if (operator !== 'hd-1' && operator !== 'hd-2') return undefined;
  const cert = new X509Certificate(readFileSync(`${CERTS}/${operator}.crt`));
  return { certificate: cert.toString(), fingerprint: fingerprintOf(cert) };
}
/** The preamble the leg's real operator sends: its token and its proof. */
const preambleOf = (session: SessionInfo, leg: Leg, pass: LegPass) =>
  encodePreamble(pass.token, signProof(KEY[leg], { proxy: PROXY, sessionId: session.sessionId, leg, token: pass.token, challenge: pass.challenge }));

/** How B and A behave; each is handed the full preamble its leg's real operator would send. */
type Behaviour = {
  notifyB?: (session: SessionInfo, preamble: Buffer) => Promise<NotifyResult>;
  confirmToA?: (session: SessionInfo, preamble: Buffer) => Promise<void>;
  timeouts?: SessionRegistryOptions['timeouts'];
  spliceIdleMs?: number;
};

interface Harness {
  registry: SessionRegistry;
  endpoint: SpliceEndpoint;
  port: number;
  rejections: RejectReason[];
  spliced: string[];
  finished: { outcome: string; bytesAToB: number; bytesBToA: number }[];
  dial: (preamble: Buffer, opts?: { byteByByte?: boolean; extra?: Buffer }) => Promise<Socket>;
  /** The behaviour's messengers: the one way a session is opened. */
  messengers: SessionMessengers;
}

const harnesses: Harness[] = [];
const clients: Socket[] = [];

async function harness(behaviour: Behaviour): Promise<Harness> {
  const rejections: RejectReason[] = [];
  const spliced: string[] = [];
  const finished: Harness['finished'] = [];
  const registry = new SessionRegistry({
    log,
    operator: PROXY,
    certificateOf,
    timeouts: behaviour.timeouts ?? { bDialMs: 5_000, aDialMs: 5_000 },
    ...(behaviour.spliceIdleMs ? { spliceIdleMs: behaviour.spliceIdleMs } : {}),
    onSpliced: (s) => spliced.push(s.sessionId),
    onFinished: (_s, output, stats) => finished.push({ outcome: output.outcome, bytesAToB: stats.bytesAToB, bytesBToA: stats.bytesBToA }),
  });
  const endpoint = new SpliceEndpoint({
    host: '127.0.0.1',
    port: 0,
    log,
    preambleTimeoutMs: PREAMBLE_MS,
    route: (preamble, socket, rest) => registry.route(preamble, socket, rest),
  });
  const messengers: SessionMessengers = {
    notifyB: (s, pass) => (behaviour.notifyB ? behaviour.notifyB(s, preambleOf(s, 'b', pass)) : new Promise(() => {})),
    confirmToA: (s, pass) => (behaviour.confirmToA ? behaviour.confirmToA(s, preambleOf(s, 'a', pass)) : new Promise(() => {})),
  };
  endpoint.on('rejected', (reason) => rejections.push(reason));
  const { port } = await endpoint.listen();

  const dial = async (token: Buffer, opts: { byteByByte?: boolean; extra?: Buffer } = {}): Promise<Socket> => {
    const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    socket.on('error', () => {});
    clients.push(socket);
    await once(socket, 'connect');
    if (opts.byteByByte) {
      for (const byte of token) {
        socket.write(Buffer.from([byte]));
        await new Promise((r) => setTimeout(r, 1));
      }
    } else {
      socket.write(token);
    }
    if (opts.extra) socket.write(opts.extra);
    return socket;
  };
  const h = { registry, endpoint, port, rejections, spliced, finished, dial, messengers };
  harnesses.push(h);
  return h;
}

/** Resolves once every connection the endpoint accepted is gone, or fails the test. */
async function assertNoOpenSockets(h: Harness): Promise<void> {
  await h.registry.shutdown();
  expect(h.registry.liveCount()).toBe(0);
  const closed = h.endpoint.close().then(() => 'closed');
  const timeout = new Promise((r) => setTimeout(() => r('sockets still open'), 2_000));
  expect(await Promise.race([closed, timeout])).toBe('closed');
}



// Clients are half-open, so the proxy closing its side shows up as 'end' (FIN) or 'close' (RST).
const closedByProxy = (socket: Socket): Promise<void> =>
  socket.closed || socket.readableEnded
    ? Promise.resolve()
    : new Promise((resolve) => {
        socket.once('end', resolve);
        socket.once('close', resolve);
        // A paused client would never see its 'end'.
        socket.resume();
      });
const waitFor = async (check: () => boolean, ms = 2_000) => {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  for (const h of harnesses.splice(0)) {
    await h.registry.shutdown();
    await h.endpoint.close();
  }
});

const session = { a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:0' };

/** A harness whose B dials as soon as it is told and whose A dials once confirmed: the usual pair. */
async function dialingPeers(): Promise<{ h: Harness; peers: Promise<{ a: Socket; b: Socket }> }> {
  let b!: Socket;
  const dialed = deferred<{ a: Socket; b: Socket }>();
  const h = await harness({
    notifyB: async (_s, token) => {
      b = await h.dial(token);
      return { accepted: true };
    },
    confirmToA: async (_s, token) => {
      // After P has answered, as over the bus.
      setImmediate(async () => dialed.resolve({ a: await h.dial(token), b }));
    },
  });
  return { h, peers: dialed.promise };
}

describe('splice (real TCP)', () => {
  it('splice - bytes flow both ways with half-close, then the session closes with byte counts', async () => {
    let bSocket!: Socket;
    let aSocket!: Socket;
    const aDialed = deferred();
    const h = await harness({
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token);
        return { accepted: true };
      },
      confirmToA: async (_s, token) => {
        // A dials only after P has answered, as over the bus.
        setImmediate(async () => {
          aSocket = await h.dial(token, { extra: Buffer.from('hello from A') });
          aDialed.resolve();
        });
      },
    });
    const { done } = h.registry.open(session, { messengers: h.messengers });
    await aDialed.promise;

    // A sends (with bytes in the same segment as its token), then half-closes.
    const bGot = readUntilEnd(bSocket);
    aSocket.end(' and more');
    expect(await bGot).toBe('hello from A and more');

    // B can still answer after A's FIN, then ends too.
    const aGot = readUntilEnd(aSocket);
    bSocket.end('reply from B');
    expect(await aGot).toBe('reply from B');

    const output = await done;
    expect(output).toEqual({ outcome: 'closed', detail: 'completed' });
    expect(h.spliced).toHaveLength(1);
    expect(h.finished).toEqual([{ outcome: 'closed', bytesAToB: 21, bytesBToA: 12 }]);
    await Promise.all([closedByProxy(aSocket), closedByProxy(bSocket)]);
    await assertNoOpenSockets(h);
  });

  it('splice - a 1-byte-at-a-time preamble works and bytes B sent early reach A', async () => {
    let bSocket!: Socket;
    let aSocket!: Socket;
    const aDialed = deferred();
    const h = await harness({
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token, { byteByByte: true, extra: Buffer.from('early B') });
        return { accepted: true };
      },
      confirmToA: async (_s, token) => {
        setImmediate(async () => {
          aSocket = await h.dial(token, { byteByByte: true });
          aDialed.resolve();
        });
      },
    });
    const { done } = h.registry.open(session, { messengers: h.messengers });
    await aDialed.promise;
    expect(await readUntil(aSocket, 'early B')).toBe('early B');
    aSocket.write('ping');
    expect(await readUntil(bSocket, 'ping')).toBe('ping');
    // A FIN from one side is only a half-close; the splice ends when both sides are done.
    aSocket.destroy();
    bSocket.destroy();
    aSocket.destroy();
    expect((await done).outcome).toBe('closed');
    await assertNoOpenSockets(h);
  });

  it('splice - an unknown token is refused and the socket closed', async () => {
    const h = await harness({});
    const socket = await h.dial(encodePreamble(randomBytes(32)));
    await closedByProxy(socket);
    expect(h.rejections).toEqual(['UNKNOWN_TOKEN']);
    await assertNoOpenSockets(h);
  });

  it('splice - a reused token is refused and the splice carries on', async () => {
    let bSocket!: Socket;
    let aSocket!: Socket;
    let aToken!: Buffer;
    const aDialed = deferred();
    const h = await harness({
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token);
        return { accepted: true };
      },
      confirmToA: async (_s, token) => {
        aToken = token;
        setImmediate(async () => {
          aSocket = await h.dial(token);
          aDialed.resolve();
        });
      },
    });
    const { done } = h.registry.open(session, { messengers: h.messengers });
    await aDialed.promise;
    await waitFor(() => h.spliced.length === 1);
    // A parked session's actor is revived for the dial, refuses it, and parks again.
    if (parks) await waitFor(() => h.registry.parkedCount() === 1);

    const intruder = await h.dial(aToken);
    await closedByProxy(intruder);
    expect(h.rejections).toEqual(['TOKEN_USED']);
    expect(h.registry.parkedCount()).toBe(parks ? 1 : 0);

    aSocket.write('still here');
    expect(await readUntil(bSocket, 'still here')).toBe('still here');
    bSocket.destroy();
    aSocket.destroy();
    expect((await done).outcome).toBe('closed');
    await assertNoOpenSockets(h);
  });

  it('splice - A dialing before the confirmation is refused as WRONG_STATE without ending the session', async () => {
    const confirming = deferred<Buffer>();
    let bSocket!: Socket;
    const h = await harness({
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token);
        return { accepted: true };
      },
      confirmToA: (_s, token) => {
        confirming.resolve(token);
        return new Promise(() => {});
      },
    });
    h.registry.open(session, { messengers: h.messengers });
    const token = await confirming.promise;
    const early = await h.dial(token);
    await closedByProxy(early);
    expect(h.rejections).toEqual(['WRONG_STATE']);
    expect(h.registry.liveCount()).toBe(1);
    expect(bSocket.closed).toBe(false);
    await assertNoOpenSockets(h);
    await closedByProxy(bSocket);
  });

  it.runIf(parks)('splice - shutting down with a parked session revives it: shutDown, both peers closed, nothing left', async () => {
    const { h, peers } = await dialingPeers();
    const { done } = h.registry.open(session, { messengers: h.messengers });
    const { a: aSocket, b: bSocket } = await peers;
    await waitFor(() => h.registry.parkedCount() === 1);
    aSocket.write('before shutdown');
    expect(await readUntil(bSocket, 'before shutdown')).toBe('before shutdown');

    await h.registry.shutdown();
    expect(await done).toEqual({ outcome: 'shutDown', detail: 'proxy shutting down' });
    expect(h.registry.parkedCount()).toBe(0);
    expect(h.finished).toEqual([{ outcome: 'shutDown', bytesAToB: 0, bytesBToA: 0 }]);
    await Promise.all([closedByProxy(aSocket), closedByProxy(bSocket)]);
    await assertNoOpenSockets(h);
  });

  it('splice - B never dialing ends bNeverDialed at the configured timeout', async () => {
    const h = await harness({ notifyB: async () => ({ accepted: true }), timeouts: { bDialMs: 150, aDialMs: 5_000 } });
    const started = Date.now();
    const { tokens, done } = h.registry.open(session, { messengers: h.messengers });
    expect((await done).outcome).toBe('bNeverDialed');
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(h.registry.liveCount()).toBe(0);
    // The token slot was freed with the session.
    const late = await h.dial(encodePreamble(tokens.b));
    await closedByProxy(late);
    expect(h.rejections).toEqual(['UNKNOWN_TOKEN']);
    await assertNoOpenSockets(h);
  });

  it('splice - B refusing over the bus ends bRefused and frees the token', async () => {
    const h = await harness({ notifyB: async () => ({ accepted: false, reason: 'busy' }) });
    const { done } = h.registry.open(session, { messengers: h.messengers });
    expect(await done).toEqual({ outcome: 'bRefused', detail: 'busy' });
    expect(h.registry.liveCount()).toBe(0);
    await assertNoOpenSockets(h);
  });

  it('splice - A never dialing ends aNeverDialed and B is disconnected', async () => {
    let bSocket!: Socket;
    const h = await harness({
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token);
        return { accepted: true };
      },
      confirmToA: async () => {},
      timeouts: { bDialMs: 5_000, aDialMs: 150 },
    });
    const { done } = h.registry.open(session, { messengers: h.messengers });
    expect((await done).outcome).toBe('aNeverDialed');
    await closedByProxy(bSocket);
    await assertNoOpenSockets(h);
  });

  it('splice - B closing before A dials ends peerClosedEarly', async () => {
    let bSocket!: Socket;
    const h = await harness({
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token);
        return { accepted: true };
      },
      confirmToA: async () => {
        setImmediate(() => bSocket.end());
      },
    });
    const { done } = h.registry.open(session, { messengers: h.messengers });
    const output = await done;
    expect(output.outcome).toBe('peerClosedEarly');
    await closedByProxy(bSocket);
    await assertNoOpenSockets(h);
  });

  it('splice - shutdown in each state ends shutDown, with no live session and no open socket', async () => {
    for (const state of ['requested', 'forwarded', 'bConnected', 'confirmed', 'spliced'] as const) {
      const reached = deferred();
      const sockets: Socket[] = [];
      const h = await harness({
        notifyB: async (_s, token) => {
          if (state === 'requested') {
            reached.resolve();
            return new Promise<NotifyResult>(() => {});
          }
          if (state === 'forwarded') {
            setImmediate(() => reached.resolve());
            return { accepted: true };
          }
          sockets.push(await h.dial(token));
          return { accepted: true };
        },
        confirmToA: async (_s, token) => {
          if (state === 'bConnected') {
            reached.resolve();
            return new Promise<void>(() => {});
          }
          if (state === 'confirmed') {
            setImmediate(() => reached.resolve());
            return;
          }
          setImmediate(async () => {
            sockets.push(await h.dial(token));
            await waitFor(() => h.spliced.length === 1);
            reached.resolve();
          });
        },
      });
      const { done } = h.registry.open(session, { messengers: h.messengers });
      await reached.promise;
      expect(h.registry.liveCount(), state).toBe(1);
      await h.registry.shutdown();
      expect(await done, state).toEqual({ outcome: 'shutDown', detail: 'proxy shutting down' });
      await Promise.all(sockets.map(closedByProxy));
      await assertNoOpenSockets(h);
    }
  });

  it('splice - a garbage preamble that never completes is dropped at the deadline', async () => {
    const h = await harness({});
    const started = Date.now();
    const socket = await h.dial(Buffer.from('GET / HTTP/1.1\r\n'));
    await closedByProxy(socket);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(PREAMBLE_MS - 20);
    expect(elapsed).toBeLessThan(PREAMBLE_MS + 1_000);
    expect(h.rejections).toEqual(['PREAMBLE_TIMEOUT']);
    expect(h.endpoint.unroutedCount()).toBe(0);
    await assertNoOpenSockets(h);
  });

  it('splice - closing the endpoint drops connections still reading their preamble', async () => {
    const h = await harness({});
    const socket = await h.dial(Buffer.from('abc'));
    await waitFor(() => h.endpoint.unroutedCount() === 1);
    await h.endpoint.close();
    await closedByProxy(socket);
    expect(h.endpoint.unroutedCount()).toBe(0);
  });

  it('splice - a session with one dial deadline (a game relay) ends at it whoever dialed first, not aDialMs after B', async () => {
    const h = await harness({ notifyB: async () => ({ accepted: true }), confirmToA: async () => {}, timeouts: { bDialMs: 5_000, aDialMs: 5_000 } });
    const relay = { notifyB: async () => ({ accepted: true }) as const, confirmToA: async () => {} };
    const started = Date.now();
    const { tokens, done } = h.registry.open(session, { messengers: relay, dialWithinMs: 400, proofs: false });
    // The first peer dials 250 ms in: with bDialMs then aDialMs it would be held for 5 s more.
    await new Promise((r) => setTimeout(r, 250));
    const first = await h.dial(encodePreamble(tokens.a));
    expect((await done).outcome).toBe('aNeverDialed');
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(390);
    expect(took).toBeLessThan(1_500);
    await closedByProxy(first);
    // Nobody dialing at all ends at the same deadline.
    const secondAt = Date.now();
    const second = h.registry.open(session, { messengers: relay, dialWithinMs: 200, proofs: false });
    expect((await second.done).outcome).toBe('bNeverDialed');
    expect(Date.now() - secondAt).toBeLessThan(1_500);
    await assertNoOpenSockets(h);
  });

  it('splice - a proof for another session, leg, proxy or challenge, or by another key, is refused BAD_PROOF; the real B still gets in', async () => {
    let bPass!: LegPass;
    let bInfo!: SessionInfo;
    const forwarded = deferred();
    const h = await harness({});
    const messengers: SessionMessengers = {
      notifyB: async (s, pass) => {
        bPass = pass;
        bInfo = s;
        forwarded.resolve();
        return { accepted: true };
      },
      confirmToA: () => new Promise(() => {}),
    };
    const other = h.registry.open(session, { messengers: h.messengers });
    const { done } = h.registry.open(session, { messengers });
    await forwarded.promise;
    const sign = (over: Partial<{ key: (typeof KEY)['a']; proxy: string; sessionId: string; leg: Leg; challenge: Buffer }>) =>
      encodePreamble(
        bPass.token,
        signProof(over.key ?? KEY.b, {
          proxy: over.proxy ?? PROXY,
          sessionId: over.sessionId ?? bInfo.sessionId,
          leg: over.leg ?? 'b',
          token: bPass.token,
          challenge: over.challenge ?? bPass.challenge,
        }),
      );
    const forgeries = [
      sign({ sessionId: other.sessionId }),
      sign({ leg: 'a' }),
      sign({ proxy: 'public-proxy-hyper-1' }),
      sign({ challenge: randomBytes(32) }),
      sign({ key: KEY.a }),
      encodePreamble(bPass.token, randomBytes(72)),
      encodePreamble(bPass.token),
    ];
    for (const bytes of forgeries) await closedByProxy(await h.dial(bytes));
    expect(h.rejections).toEqual(forgeries.map(() => 'BAD_PROOF'));
    // The token was not spent: B's real preamble is held, and the session moves on to confirm A.
    const real = await h.dial(preambleOf(bInfo, 'b', bPass));
    await waitFor(() => h.registry.liveCount() === 2 && h.rejections.length === forgeries.length);
    expect(real.closed).toBe(false);
    // A's token with B's valid proof is still B's proof: refused.
    const aToken = encodePreamble(other.tokens.a, signProof(KEY.b, { proxy: PROXY, sessionId: other.sessionId, leg: 'a', token: other.tokens.a, challenge: other.challenge }));
    await closedByProxy(await h.dial(aToken));
    expect(h.rejections.at(-1)).toBe('BAD_PROOF');
    await h.registry.shutdown();
    expect((await done).outcome).toBe('shutDown');
    await assertNoOpenSockets(h);
  });

  const RELAY = { notifyB: async () => ({ accepted: true }) as const, confirmToA: async () => {} };
  const received = (socket: Socket) => {
    let n = 0;
    socket.on('data', (c: Buffer) => (n += c.length));
    return () => n;
  };

  it('splice - a relay session: either leg dials first, each leg has its own single-use token', async () => {
    const h = await harness({});
    for (const first of ['a', 'b'] as const) {
      const other = first === 'a' ? 'b' : 'a';
      const { tokens, done } = h.registry.open(session, { messengers: RELAY, dialWithinMs: 5_000, proofs: false });
      expect(tokens.a.equals(tokens.b)).toBe(false);
      const held = await h.dial(encodePreamble(tokens[first]));
      await waitFor(() => h.registry.liveCount() === 1 && h.endpoint.unroutedCount() === 0);
      // The held leg's token again, as if it were the other peer: spent, and the session waits on.
      const thief = await h.dial(encodePreamble(tokens[first]));
      await closedByProxy(thief);
      expect(h.rejections.at(-1)).toBe('TOKEN_USED');
      const joined = await h.dial(encodePreamble(tokens[other]), { extra: Buffer.from('hi') });
      expect(await readUntil(held, 'hi')).toBe('hi');
      expect(h.spliced).toHaveLength(first === 'a' ? 1 : 2);
      // Once spliced, neither token opens anything.
      for (const t of [tokens.a, tokens.b]) await closedByProxy(await h.dial(encodePreamble(t)));
      expect(h.rejections.slice(-2)).toEqual(['TOKEN_USED', 'TOKEN_USED']);
      held.end();
      joined.end();
      expect(await done).toEqual({ outcome: 'closed', detail: 'completed' });
    }
    await assertNoOpenSockets(h);
  });

  it('splice - a relay session ends at its byte limit with byteLimit, having relayed no more than the limit', async () => {
    const h = await harness({});
    const limit = 100_000;
    const { tokens, done } = h.registry.open(session, { messengers: RELAY, dialWithinMs: 5_000, proofs: false, limits: { maxBytesPerDirection: limit } });
    const b = await h.dial(encodePreamble(tokens.b));
    const a = await h.dial(encodePreamble(tokens.a));
    const bGot = received(b);
    await waitFor(() => h.spliced.length === 1);
    a.write(randomBytes(limit + 50_000));
    expect(await done).toEqual({ outcome: 'closed', detail: 'byteLimit' });
    await closedByProxy(b);
    expect(bGot()).toBeLessThanOrEqual(limit);
    expect(h.finished.at(-1)).toMatchObject({ outcome: 'closed', bytesAToB: limit });
    await assertNoOpenSockets(h);
  });

  it('splice - a relay session under its byte limit carries on; its duration limit ends it with durationLimit', async () => {
    const h = await harness({});
    const started = Date.now();
    const { tokens, done } = h.registry.open(session, { messengers: RELAY, dialWithinMs: 5_000, proofs: false, limits: { maxDurationMs: 400, maxBytesPerDirection: 1_000 } });
    const b = await h.dial(encodePreamble(tokens.b));
    const a = await h.dial(encodePreamble(tokens.a), { extra: Buffer.from('x'.repeat(1_000)) });
    expect((await readUntil(b, 'x'.repeat(1_000))).length).toBe(1_000);
    expect(await done).toEqual({ outcome: 'closed', detail: 'durationLimit' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    await Promise.all([closedByProxy(a), closedByProxy(b)]);
    await assertNoOpenSockets(h);
  });

  it('splice - an idle spliced session, brokered or relayed, is closed after spliceIdleMs with idle; traffic keeps it open', async () => {
    let bSocket!: Socket;
    let aSocket!: Socket;
    const aDialed = deferred();
    const h = await harness({
      spliceIdleMs: 300,
      notifyB: async (_s, token) => {
        bSocket = await h.dial(token);
        return { accepted: true };
      },
      confirmToA: async (_s, token) => {
        setImmediate(async () => {
          aSocket = await h.dial(token);
          aDialed.resolve();
        });
      },
    });
    const brokered = h.registry.open(session, { messengers: h.messengers });
    await aDialed.promise;
    const started = Date.now();
    // Traffic every 100 ms for 600 ms: twice the idle timeout without a silence as long as it.
    for (let i = 0; i < 6; i++) {
      aSocket.write('.');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(h.registry.liveCount()).toBe(1);
    expect(await brokered.done).toEqual({ outcome: 'closed', detail: 'idle' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    await Promise.all([closedByProxy(aSocket), closedByProxy(bSocket)]);

    const relayed = h.registry.open(session, { messengers: RELAY, dialWithinMs: 5_000, proofs: false });
    const g = await h.dial(encodePreamble(relayed.tokens.b));
    const host = await h.dial(encodePreamble(relayed.tokens.a));
    const silentFrom = Date.now();
    expect(await relayed.done).toEqual({ outcome: 'closed', detail: 'idle' });
    expect(Date.now() - silentFrom).toBeGreaterThanOrEqual(250);
    await Promise.all([closedByProxy(g), closedByProxy(host)]);
    await assertNoOpenSockets(h);
  });
});
