import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { roleLog } from '../helpers/stack.js';
import {
  BusClientAsHd1,
  Trickle,
  call,
  callUntilOk,
  sleep,
  describeOutcomes,
  proxyMetric,
  sdSetup,
  signalRole,
  startFaultStack,
  A_BUS_MS,
  waitFor,
  HYPER_AS_PEER,
  startFaultNats,
} from '../helpers/faults.js';

// Fault 1: the bus dies while sessions are waiting for B's answer. A's brokered channel to hd-2
// is a spliced TCP connection that needs no bus, so its trickle must not even notice; sessions
// stuck in `requested` (their B, public-proxy-hyper-1, is SIGSTOPped) must fail precisely and
// within A's bus timeout; after the restart everything must reconnect on its own.


describe('faults: nats-server', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  let busA: BusClientAsHd1 | undefined;
  let trickle: Trickle | undefined;

  beforeAll(async () => {
    nats = await startFaultNats();
    stack = await startFaultStack(nats.url);
  }, 60_000);

  afterAll(async () => {
    await trickle?.stop();
    if (stack?.child('public-proxy-hyper-1')?.pid) {
      try {
        signalRole(stack, 'public-proxy-hyper-1', 'SIGCONT');
      } catch {
        // already gone
      }
    }
    await busA?.close();
    await stack?.stop();
    await nats?.stop();
  });

  it('nats - sessions in requested fail with a precise error when the bus dies; the open channel keeps working; all reconnect after the restart', async () => {
    // A channel to hd-2 that the trickle keeps open, and a second B that knows it is a peer.
    await callUntilOk(stack, 'hd-2._ping');
    busA = await BusClientAsHd1.connect(nats.url, stack);
    await waitFor('public-proxy-hyper-1 to learn its peer records', async () => {
      const r = (await busA!.bus.request('public-proxy-hyper-1', '_ping', {})) as { serverInfo: { channels: unknown[] } };
      return r.serverInfo.channels.length > 0;
    });
    trickle = new Trickle(stack, 'hd-2._ping');
    await trickle.okAfter(3);
    const liveBefore = await proxyMetric(stack, 'eps_proxy_live_sessions');
    expect(liveBefore).toBe(1);

    // B never answers the forward: each session sits in `requested`.
    signalRole(stack, 'public-proxy-hyper-1', 'SIGSTOP');
    const stuck = [1, 2, 3].map(() => call(stack, 'public-proxy-hyper-1._ping'));
    const direct = [1, 2].map(() =>
      busA!.bus.request('public-proxy-eps-1', 'connectionRequest', { to: 'public-proxy-hyper-1' }, 4000).then(
        () => ({ ok: true as const, message: '' }),
        (err: Error & { code?: number }) => ({ ok: false as const, code: err.code, message: err.message }),
      ),
    );
    // One session for hd-1's three calls (they share the channel being opened), one per direct request.
    await waitFor('three sessions in requested', async () => (await proxyMetric(stack, 'eps_proxy_live_sessions')) === liveBefore + 3);

    const failedSessions = async () =>
      (await proxyMetric(stack, 'eps_proxy_sessions_total', '{outcome="busFailed"}')) +
      (await proxyMetric(stack, 'eps_proxy_sessions_total', '{outcome="bNeverDialed"}'));
    const failedBefore = await failedSessions();
    const killedAt = Date.now();
    await nats.kill();
    const outcomes = await Promise.all(stuck);
    for (const o of outcomes) {
      expect(o.ok, JSON.stringify(o)).toBe(false);
      expect(o.code).toBe(-32004);
      expect(o.message).toMatch(/^Brokering through the proxy failed: .*public-proxy-eps-1\.connectionRequest: no answer on the bus within 3000 ms/);
      expect(o.ms).toBeLessThan(A_BUS_MS + 1500);
    }
    for (const d of await Promise.all(direct)) {
      expect(d.ok).toBe(false);
      expect(d.ok ? undefined : d.code).toBe(-32005);
    }
    // While the bus is down, a new brokering waits for it within A's timeout, then says why.
    const duringOutage = await call(stack, 'public-proxy-hyper-1._ping');
    expect(duringOutage.ok).toBe(false);
    expect(duringOutage.code).toBe(-32004);
    expect(duringOutage.message).toMatch(/public-proxy-eps-1\.connectionRequest: the bus is disconnected \(not back within 3000 ms\)/);
    expect(duringOutage.ms).toBeLessThan(A_BUS_MS + 1500);

    // The splice needs no bus: every trickle call during the outage succeeded.
    const restartAt = Date.now();
    const inOutage = trickle.between(killedAt, restartAt);
    expect(inOutage.length).toBeGreaterThan(3);
    expect(inOutage.filter((o) => !o.ok), describeOutcomes(inOutage)).toEqual([]);

    signalRole(stack, 'public-proxy-hyper-1', 'SIGCONT');
    await nats.restart();

    // The stuck sessions ended (the proxy's timers do not depend on the bus); only hd-2's splice lives.
    await waitFor('stuck sessions to end', async () => (await proxyMetric(stack, 'eps_proxy_live_sessions')) === 1, 10_000);
    expect(await failedSessions()).toBe(failedBefore + 3);

    // Every process reconnects by itself: a fresh brokering to the once-stuck B succeeds.
    // A call made while a process is still reconnecting waits for the bus instead of being
    // dropped (which would cost A's whole timeout); one whose peer has not resubscribed yet fails
    // at once ("nobody serves it"). Either way: no attempt times out.
    const splicedBefore = await proxyMetric(stack, 'eps_proxy_spliced_total');
    const attempts = [];
    for (let i = 0; i < 50; i++) {
      const o = await call(stack, 'public-proxy-hyper-1._ping', 5000);
      attempts.push(o);
      if (o.ok) break;
      await sleep(100);
    }
    const fresh = attempts[attempts.length - 1]!;
    expect(fresh.result?.serverInfo?.name, describeOutcomes(attempts)).toBe('public-proxy-hyper-1');
    expect(attempts.filter((o) => /no answer on the bus/.test(o.message ?? '')), describeOutcomes(attempts)).toEqual([]);
    expect(await proxyMetric(stack, 'eps_proxy_spliced_total')).toBe(splicedBefore + 1);

    // Each directory client resumes following the stream: a record appended after the restart
    // reaches A, B and the second B without any of them fetching from the sd again.
    await sdSetup(stack, `${HYPER_AS_PEER}
- { kind: group, name: after-bus-restart }
- { kind: member, group: after-bus-restart, operator: hd-1 }
- { kind: member, group: after-bus-restart, operator: hd-2 }
- { kind: member, group: after-bus-restart, operator: public-proxy-hyper-1 }
`);
    for (const target of ['hd-1', 'hd-2', 'public-proxy-hyper-1']) {
      await waitFor(`${target} to see the new record`, async () => (await call(stack, `${target}._ping`, 5000)).result?.serverInfo?.groups?.includes('after-bus-restart'), 10_000, 100);
    }

    await trickle.okAfter(3);
    const all = await trickle.stop();
    trickle = undefined;
    // Before, during and after: the brokered channel answered every single call.
    expect(all.filter((o) => !o.ok), describeOutcomes(all)).toEqual([]);
    expect(Math.max(...all.map((o) => o.ms))).toBeLessThan(3000);
    await waitFor('hd-1 to log its reconnection', () => /bus reconnected/.test(roleLog(stack, 'hd-1')));
  }, 45_000);
});

