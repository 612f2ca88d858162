import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForPort, type DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { roleLog } from '../helpers/stack.js';
import {
  Trickle,
  call,
  callUntilOk,
  crash,
  describeOutcomes,
  proxyMetric,
  signalRole,
  startFaultStack,
  A_CALL_MS as CALL_MS,
  waitFor,
  type CallOutcome,
  startFaultNats,
} from '../helpers/faults.js';

// Fault 2: the proxy process dies with two brokered channels open (hd-1 → hd-2 and
// hd-1 → public-proxy-hyper-1), one of them with a call in flight. Both ends must see the
// connection close, every call must end with a precise error (never a hang, never -32603), and
// once a new proxy process runs, the next calls broker again through it.


/** What A may answer while its proxy is gone or coming back: each code names the failure. */
function expectPrecise(outcomes: CallOutcome[]): void {
  for (const o of outcomes.filter((x) => !x.ok)) {
    expect([-32003, -32004, -32005], describeOutcomes([o])).toContain(o.code);
    expect(o.message).toMatch(/public-proxy-eps-1|connection to|channel to/);
  }
  expect(Math.max(0, ...outcomes.map((o) => o.ms)), describeOutcomes(outcomes)).toBeLessThan(CALL_MS + 1500);
}

describe('faults: public proxy', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  const trickles: Trickle[] = [];

  beforeAll(async () => {
    nats = await startFaultNats();
    stack = await startFaultStack(nats.url);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(trickles.map((t) => t.stop()));
    try {
      signalRole(stack, 'hd-2', 'SIGCONT');
    } catch {
      // not running
    }
    await stack?.stop();
    await nats?.stop();
  });

  it('proxy - SIGKILL mid-splice: A and B see the close, calls fail precisely while it is down, the restarted proxy re-brokers', async () => {
    await callUntilOk(stack, 'hd-2._ping');
    await callUntilOk(stack, 'public-proxy-hyper-1._ping');
    expect(await proxyMetric(stack, 'eps_proxy_spliced_total')).toBe(2);
    const toHd2 = new Trickle(stack, 'hd-2._ping');
    const toHyper = new Trickle(stack, 'public-proxy-hyper-1._ping');
    trickles.push(toHd2, toHyper);
    await Promise.all([toHd2.okAfter(3), toHyper.okAfter(3)]);

    // Pin a call in flight: hd-2 is frozen, so hd-1's next ping reaches the splice and waits there.
    signalRole(stack, 'hd-2', 'SIGSTOP');
    const relayed = await proxyMetric(stack, 'eps_proxy_relayed_bytes_total', '{direction="aToB"}');
    await waitFor('a ping to the frozen hd-2 on the wire', async () => {
      const pending = toHd2.outcomes.length;
      await new Promise((r) => setTimeout(r, 100));
      return toHd2.outcomes.length === pending && (await proxyMetric(stack, 'eps_proxy_relayed_bytes_total', '{direction="aToB"}')) > relayed;
    });

    const killedAt = Date.now();
    await crash(stack, 'public-proxy-1');
    // The in-flight call ends with the lost connection, well before its own call timeout.
    const inFlight = await waitFor('the in-flight call to end', () => toHd2.outcomes.find((o) => o.startedAt < killedAt && o.startedAt + o.ms >= killedAt));
    expect(inFlight.ok).toBe(false);
    expect(inFlight.code, describeOutcomes([inFlight])).toBe(-32003);
    expect(inFlight.message).toMatch(/hd-2\._ping: connection to hd-2 (closed|lost)/);
    expect(inFlight.startedAt + inFlight.ms - killedAt).toBeLessThan(1000);
    signalRole(stack, 'hd-2', 'SIGCONT');

    // While no proxy runs, a new brokering is refused at once: nobody serves connectionRequest.
    for (const t of [toHd2, toHyper]) {
      const down = await waitFor(`${t.method} to fail with the proxy down`, () => t.since(killedAt).find((o) => /nobody serves it/.test(o.message ?? '')));
      expect(down.code).toBe(-32004);
      expect(down.message).toMatch(/^Brokering through the proxy failed: .*public-proxy-eps-1\.connectionRequest: nobody serves it on the bus/);
      expect(down.ms).toBeLessThan(500);
    }
    // B saw its proxy connection close and ended its callback.
    await waitFor('both Bs to end their callbacks', () =>
      (['hd-2', 'public-proxy-hyper-1'] as const).every((b) => /"outcome":"closed","detail":"connection to the proxy closed"/.test(roleLog(stack, b))),
    );

    const restartedAt = Date.now();
    stack.start('public-proxy-1');
    await waitForPort(stack.opts.ports.metrics, 10_000);
    await Promise.all([toHd2.okAfter(3, 15_000), toHyper.okAfter(3, 15_000)]);
    // The new process brokered each channel once and reuses it.
    expect(await proxyMetric(stack, 'eps_proxy_spliced_total')).toBe(2);
    expect(await proxyMetric(stack, 'eps_proxy_live_sessions')).toBe(2);

    await Promise.all(trickles.map((t) => t.stop()));
    for (const t of trickles) {
      expectPrecise(t.outcomes);
      expect(t.between(0, killedAt).filter((o) => !o.ok), describeOutcomes(t.outcomes)).toEqual([]);
      const firstOkAfter = t.since(restartedAt).find((o) => o.ok);
      expect(firstOkAfter, describeOutcomes(t.since(restartedAt))).toBeDefined();
    }
    // Nothing left open towards the dead proxy: a direct call to hd-1 itself still answers.
    expect((await call(stack, 'hd-1._ping')).ok).toBe(true);
  }, 45_000);
});
