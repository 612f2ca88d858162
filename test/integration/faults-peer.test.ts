import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import {
  BusClientAsHd1,
  Trickle,
  callUntilOk,
  crash,
  describeOutcomes,
  dialWithToken,
  proxyMetric,
  startFaultStack,
  waitFor,
  startFaultNats,
} from '../helpers/faults.js';

// Fault 3: B (hd-2) dies. With a channel open, A's calls must fail precisely and the proxy must
// end the session; between B's dial and A's (B connected, A confirmed but not yet dialed), the
// session must end as peerClosedEarly and the token must be dead. Meanwhile hd-1's channel to
// public-proxy-hyper-1, spliced by the same proxy, must not notice anything.


const outcome = (name: string) => `{outcome="${name}"}`;

describe('faults: B dies', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  let healthy: Trickle | undefined;
  let busA: BusClientAsHd1 | undefined;

  beforeAll(async () => {
    nats = await startFaultNats();
    stack = await startFaultStack(nats.url, {
      // One case holds A's confirmation without dialing and kills B: P must still be waiting for A
      // when B's socket closes, so the session ends peerClosedEarly rather than aNeverDialed.
      'public-proxy-1': 'timeouts: { bDialMs: 2500, aDialMs: 5000, busRequestMs: 2000, preambleMs: 2000 }\n',
    });
    await callUntilOk(stack, 'public-proxy-hyper-1._ping');
    healthy = new Trickle(stack, 'public-proxy-hyper-1._ping');
    await healthy.okAfter(3);
  }, 60_000);

  afterAll(async () => {
    await healthy?.stop();
    await busA?.close();
    await stack?.stop();
    await nats?.stop();
  });

  it('peer - B killed with a channel open: A gets a precise error, the session closes, a restarted B is reachable again', async () => {
    await callUntilOk(stack, 'hd-2._ping');
    const toHd2 = new Trickle(stack, 'hd-2._ping');
    try {
      await toHd2.okAfter(3);
      const closedBefore = await proxyMetric(stack, 'eps_proxy_sessions_total', outcome('closed'));
      expect(await proxyMetric(stack, 'eps_proxy_live_sessions')).toBe(2);

      const killedAt = Date.now();
      await crash(stack, 'hd-2');
      // The proxy saw B's socket close and ended the spliced session; only hyper's remains.
      await waitFor('the hd-2 session to end', async () => (await proxyMetric(stack, 'eps_proxy_live_sessions')) === 1);
      expect(await proxyMetric(stack, 'eps_proxy_sessions_total', outcome('closed'))).toBe(closedBefore + 1);
      // With B gone from the bus, A is told so at once instead of waiting for a dial timeout.
      const down = await waitFor('a ping to fail with hd-2 down', () => toHd2.since(killedAt).find((o) => !o.ok && /not on the bus/.test(o.message ?? '')));
      expect(down.code).toBe(-32004);
      expect(down.message).toMatch(/hd-2 is not on the bus/);
      expect(down.ms).toBeLessThan(1000);

      const splicedBefore = await proxyMetric(stack, 'eps_proxy_spliced_total');
      const restartedAt = Date.now();
      stack.start('hd-2');
      await toHd2.okAfter(3, 15_000);
      expect(await proxyMetric(stack, 'eps_proxy_spliced_total')).toBe(splicedBefore + 1);

      const all = await toHd2.stop();
      expect(all.filter((o) => o.startedAt + o.ms < killedAt && !o.ok), describeOutcomes(all)).toEqual([]);
      for (const o of all.filter((x) => !x.ok)) {
        // -32003: a call caught on the closing channel; -32004: no B to broker with yet.
        expect([-32003, -32004], describeOutcomes([o])).toContain(o.code);
        // A B still loading its directory must not look like the directory forbidding the call.
        expect(o.message).not.toMatch(/Permission denied|Unknown operator|may not forward|not in the service directory/);
        expect(o.ms).toBeLessThan(3000);
      }
      expect(all.some((o) => o.ok && o.startedAt > restartedAt)).toBe(true);
    } finally {
      await toHd2.stop();
    }
  }, 30_000);

  it('peer - B killed after bConnected: the session ends as peerClosedEarly, the token is dead, a restarted B serves the next brokering', async () => {
    // The test plays A on the bus so it can hold the confirmation without dialing: the proxy
    // then holds B's socket in `confirmed`, the moment this fault is about.
    busA = await BusClientAsHd1.connect(nats.url, stack);
    const liveBefore = await proxyMetric(stack, 'eps_proxy_live_sessions');
    const earlyBefore = await proxyMetric(stack, 'eps_proxy_sessions_total', outcome('peerClosedEarly'));
    const unknownBefore = await proxyMetric(stack, 'eps_proxy_preamble_rejections_total', '{reason="UNKNOWN_TOKEN"}');
    const confirmation = await waitFor('a confirmation for hd-2', () =>
      busA!.bus.request('public-proxy-eps-1', 'connectionRequest', { to: 'hd-2' }).then((r) => r as { token: string; endpoint: string }),
    );
    expect(await proxyMetric(stack, 'eps_proxy_live_sessions')).toBe(liveBefore + 1);

    // hd-1's channel to hd-2 (re-brokered by the test above) dies with it: one session fewer.
    expect(liveBefore).toBe(2);
    await crash(stack, 'hd-2');
    await waitFor('the held session to end', async () => (await proxyMetric(stack, 'eps_proxy_live_sessions')) === liveBefore - 1);
    expect(await proxyMetric(stack, 'eps_proxy_sessions_total', outcome('peerClosedEarly'))).toBe(earlyBefore + 1);

    // A dialing with the confirmed token now finds nothing to splice with: the proxy hangs up.
    expect(await dialWithToken(confirmation.endpoint, confirmation.token)).toBe('closed');
    await waitFor('the token refusal to be counted', async () => (await proxyMetric(stack, 'eps_proxy_preamble_rejections_total', '{reason="UNKNOWN_TOKEN"}')) === unknownBefore + 1);

    stack.start('hd-2');
    const r = await callUntilOk(stack, 'hd-2._ping', 15_000);
    expect(r.result?.serverInfo?.name).toBe('hd-2');
    expect(await proxyMetric(stack, 'eps_proxy_live_sessions')).toBe(liveBefore);

    // The other pair never noticed either death.
    const all = await healthy!.stop();
    healthy = undefined;
    expect(all.filter((o) => !o.ok), describeOutcomes(all)).toEqual([]);
    expect(Math.max(...all.map((o) => o.ms))).toBeLessThan(2000);
  }, 30_000);
});
