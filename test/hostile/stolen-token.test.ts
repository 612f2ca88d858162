import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePreamble, parseHostPort, signProof, type Leg } from '../../src/core/splice-wire.js';
import type { DevStack } from '../../src/devstack/stack.js';
import { call, proxyMetric, startFaultStack, waitFor } from '../helpers/faults.js';
import { untilSplicesEnded } from '../helpers/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';

// Issue 9's first attack, replayed on the real stack (CLIs from dist/, a real nats-server): an
// attacker reads every splice token off the bus and races the real peers to the splice endpoint
// with them. A stranger can no longer read the bus (test/hostile/bus-access.test.ts), so the thief here
// reads it as the bus admin, standing for any way a token still leaks (a compromised principal
// with broad rights, a log, a debugging session). Each leg's token is worthless without a proof
// by that leg's operator key: the thief is refused BAD_PROOF and counted, the token is not spent,
// and the real peers still splice.

const CERTS = 'settings/dev/certs';
const PROXY = 'public-proxy-eps-1';
const key = (name: string) => createPrivateKey(readFileSync(`${CERTS}/${name}.key`));
/**
 * Channels idle this long close, so each call below brokers a new session. Long enough that a
 * thief's dial, however slow the machine, still finds its session alive (a token of a finished
 * session is refused as unknown or used before any proof is looked at).
 */
const CHANNEL_IDLE_MS = 1_000;

interface Stolen {
  leg: Leg;
  token: Buffer;
  challenge: Buffer;
  sessionId: string;
  endpoint: string;
}

/** Each way the thief tries a stolen leg; none has the leg operator's key. */
function attempts(s: Stolen): { name: string; bytes: Buffer }[] {
  // With one operator's key (the other leg's, or an unrelated operator's), everything else right.
  const forged = (signer: string) => signProof(key(signer), { proxy: PROXY, sessionId: s.sessionId, leg: s.leg, token: s.token, challenge: s.challenge });
  const otherLeg = s.leg === 'a' ? 'hd-2' : 'hd-1';
  return [
    { name: 'token alone', bytes: encodePreamble(s.token) },
    { name: `proof by ${otherLeg}`, bytes: encodePreamble(s.token, forged(otherLeg)) },
    { name: 'proof by public-proxy-hyper-1', bytes: encodePreamble(s.token, forged('public-proxy-hyper-1')) },
  ];
}

/** Dials with `bytes` and resolves with how the proxy ended it. */
function dialOnce(endpoint: string, bytes: Buffer, waitMs = 5_000): Promise<'closed' | 'open'> {
  const { host, port } = parseHostPort(endpoint);
  return new Promise((resolve) => {
    const s: Socket = connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('open');
    }, waitMs);
    s.on('error', () => undefined);
    s.once('connect', () => s.write(bytes));
    s.once('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

describe('hostile: stolen splice tokens on the real stack', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  let sniffer: NatsConnection;
  const stolen: Stolen[] = [];
  const thefts: Promise<{ leg: Leg; name: string; result: 'closed' | 'open' }>[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    stack = await startFaultStack(nats.url, {
      'hd-1': `timeouts: { busRequestMs: 3000, dialMs: 3000, callMs: 3000, channelIdleMs: ${CHANNEL_IDLE_MS} }\n`,
    });
    sniffer = await nats.admin();
    // Every envelope on the bus, requests and replies: the forward to B carries B's token, the
    // proxy's reply to A carries A's.
    sniffer.subscribe('>', {
      callback: (_err, msg) => {
        let env: { kind?: string; method?: string; from?: string; params?: Record<string, unknown>; result?: Record<string, unknown> };
        try {
          env = msg.json();
        } catch {
          return;
        }
        const body = env.kind === 'request' && env.method === 'connectionForward' ? env.params : env.kind === 'response' && env.from === PROXY ? env.result : undefined;
        if (!body || typeof body.token !== 'string' || typeof body.challenge !== 'string') return;
        const s: Stolen = {
          leg: env.kind === 'request' ? 'b' : 'a',
          token: Buffer.from(body.token, 'base64'),
          challenge: Buffer.from(body.challenge, 'base64'),
          sessionId: String(body.sessionId),
          endpoint: String(body.endpoint),
        };
        stolen.push(s);
        // Race the real peer: dial at once, every way the thief can.
        for (const a of attempts(s)) thefts.push(dialOnce(s.endpoint, a.bytes).then((result) => ({ leg: s.leg, name: a.name, result })));
      },
    });
    await sniffer.flush();
  }, 60_000);

  afterAll(async () => {
    await sniffer?.close();
    await stack?.stop();
    await nats?.stop();
  });

  it('stolen token - a thief with either leg\'s token and no valid proof is refused (BAD_PROOF, or TOKEN_USED once the leg dialed) and counted, and every call still succeeds', async () => {
    // The servers learn the directory over the bus after sd-setup; the first call may find it empty.
    await waitFor('hd-2 to answer', async () => (await call(stack, 'hd-2._ping', 5_000)).ok, 20_000, 200);
    await untilSplicesEnded(stack.opts.ports.metrics);
    const refusedSoFar = async () =>
      (await proxyMetric(stack, 'eps_proxy_preamble_rejections_total', '{reason="BAD_PROOF"}')) +
      (await proxyMetric(stack, 'eps_proxy_preamble_rejections_total', '{reason="TOKEN_USED"}'));
    const refusedBefore = await refusedSoFar();
    const splicedBefore = await proxyMetric(stack, 'eps_proxy_spliced_total');
    const stolenBefore = stolen.length;
    const theftsBefore = thefts.length;

    const ROUNDS = 3;
    const outcomes = [];
    for (let i = 0; i < ROUNDS; i++) {
      outcomes.push(await call(stack, 'hd-2._ping', 10_000));
      // Let the channel close so the next call brokers a new session.
      await untilSplicesEnded(stack.opts.ports.metrics);
    }
    // The legitimate path: every call went through a fresh brokering, despite the thief.
    expect(outcomes.map((o) => (o.ok ? o.result?.serverInfo?.name : o.message))).toEqual(Array(ROUNDS).fill('hd-2'));
    expect((await proxyMetric(stack, 'eps_proxy_spliced_total')) - splicedBefore).toBe(ROUNDS);

    // The thief really had every token: B's from the forward and A's from the confirmation.
    const mine = stolen.slice(stolenBefore);
    expect(mine.map((s) => s.leg).sort()).toEqual([...Array(ROUNDS).fill('a'), ...Array(ROUNDS).fill('b')]);
    const results = await Promise.all(thefts.slice(theftsBefore));
    expect(results).toHaveLength(ROUNDS * 2 * 3);
    expect(results.filter((r) => r.result !== 'closed')).toEqual([]);
    // A theft that beats the real peer is refused for its proof (BAD_PROOF); one that comes after
    // it finds the leg's token spent (TOKEN_USED, its proof never checked). Nothing else.
    await waitFor('every theft to be counted', async () => (await refusedSoFar()) - refusedBefore === results.length, 5_000);
    expect(await proxyMetric(stack, 'eps_proxy_preamble_rejections_total', '{reason="UNKNOWN_TOKEN"}')).toBe(0);
  }, 60_000);
});
