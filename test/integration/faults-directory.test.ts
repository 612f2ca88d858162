import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForPort, type DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { roleLog } from '../helpers/stack.js';
import {
  HYPER_AS_PEER,
  Trickle,
  call,
  callUntilOk,
  crash,
  describeOutcomes,
  proxyMetric,
  sdSetup,
  sdTip,
  startFaultStack,
  waitFor,
  startFaultNats,
} from '../helpers/faults.js';

// Fault 4: the sd dies. Servers hold the signed chain in memory, so calls on open channels and
// brokerings of new ones must go on as if nothing happened; a server (re)started meanwhile
// reads the chain from the JetStream stream instead. The restarted sd replays the same chain,
// and sd-setup finds nothing to add.


describe('faults: service directory', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  let trickle: Trickle | undefined;

  beforeAll(async () => {
    nats = await startFaultNats();
    stack = await startFaultStack(nats.url);
  }, 60_000);

  afterAll(async () => {
    await trickle?.stop();
    await stack?.stop();
    await nats?.stop();
  });

  it('directory - with the sd killed, cached entries keep calls and new brokerings working; a restarted sd keeps sd-setup idempotent', async () => {
    await callUntilOk(stack, 'hd-2._ping');
    trickle = new Trickle(stack, 'hd-2._ping');
    await trickle.okAfter(3);
    const tipBefore = await sdTip(stack);

    const killedAt = Date.now();
    await crash(stack, 'sd-1');
    // Refused on a new connection; "socket hang up" when the call went out on a kept-alive socket
    // to the killed sd that the agent had not yet seen close. Either way: the sd is gone.
    await expect(sdTip(stack)).rejects.toThrow(/ECONNREFUSED|socket hang up|ECONNRESET/);

    // A brokering nobody asked for before the crash: every party finds the other in its cache.
    const splicedBefore = await proxyMetric(stack, 'eps_proxy_spliced_total');
    const fresh = await call(stack, 'public-proxy-hyper-1._ping');
    expect(fresh.ok, describeOutcomes([fresh])).toBe(true);
    expect(fresh.result?.serverInfo?.name).toBe('public-proxy-hyper-1');
    expect(await proxyMetric(stack, 'eps_proxy_spliced_total')).toBe(splicedBefore + 1);

    // A B restarted while the sd is down loads the chain from the stream and is brokered to again.
    await crash(stack, 'hd-2');
    stack.start('hd-2');
    const back = await callUntilOk(stack, 'hd-2._ping', 15_000);
    expect(back.result?.serverInfo?.name).toBe('hd-2');
    await waitFor('hd-2 to log that the sd is unreachable', () => /cannot load the directory from the sd yet/.test(roleLog(stack, 'hd-2')));

    stack.start('sd-1');
    await waitForPort(stack.opts.ports.sd, 10_000);
    const restartedAt = Date.now();
    expect(await sdTip(stack)).toEqual(tipBefore);
    for (let i = 0; i < 2; i++) {
      const out = await sdSetup(stack, HYPER_AS_PEER);
      expect(out).toMatch(/directory already holds every record; nothing to do/);
      expect(await sdTip(stack)).toEqual(tipBefore);
    }

    await trickle.okAfter(3);
    const all = await trickle.stop();
    trickle = undefined;
    // Only hd-2's own restart may interrupt the trickle; the sd being gone never does.
    const hd2Down = all.filter((o) => !o.ok);
    for (const o of hd2Down) {
      expect([-32003, -32004], describeOutcomes([o])).toContain(o.code);
      expect(o.message).not.toMatch(/Permission denied|Unknown operator|may not forward|not in the service directory/);
    }
    expect(all.filter((o) => o.startedAt >= killedAt && o.startedAt < restartedAt && o.ok).length).toBeGreaterThan(0);
    expect(all.filter((o) => o.startedAt >= restartedAt && !o.ok), describeOutcomes(all)).toEqual([]);
  }, 30_000);
});
