import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SD_RECORDS_SUBJECT } from '../../src/directory/client.js';
import { signRecord } from '../../src/directory/records.js';
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

  it('directory - a record appended behind the sd\'s back: every process names it, calls and brokerings go on, sd repair --yes brings submissions back', async () => {
    const tip = await sdTip(stack);
    const bad = tip.seq + 1;
    // A damaged disk, an old bug or a stolen sd key: a record on the stream the sd never checked. On
    // the secured bus only the sd and the admin may write there (test/hostile/bus-access.test.ts).
    const admin = { certPem: readFileSync('settings/dev/certs/sd-admin.crt'), keyPem: readFileSync('settings/dev/certs/sd-admin.key') };
    const forged = { ...signRecord({ kind: 'group', name: 'intruders' }, tip.hash, admin), createdAt: new Date(Date.now() - 1000).toISOString() };
    const attacker = await nats.admin();
    attacker.publish(SD_RECORDS_SUBJECT, JSON.stringify(forged));
    await attacker.flush();
    await attacker.close();

    const named = new RegExp(`damaged at record ${bad} \\(BAD_SIGNATURE: `);
    for (const role of ['sd-1', 'hd-1', 'hd-2', 'public-proxy-1'] as const) {
      await waitFor(`${role} to name record ${bad}`, () => named.test(roleLog(stack, role)));
    }
    // The good prefix keeps serving: a call on an open channel and a brokering of a new one.
    const ping = await call(stack, 'hd-2._ping');
    expect(ping.ok, describeOutcomes([ping])).toBe(true);
    expect(await sdTip(stack)).toEqual(tip);
    await expect(sdSetup(stack, `${HYPER_AS_PEER}\n- { kind: group, name: later }\n`)).rejects.toThrow(
      new RegExp(`sd-setup: the sd refuses new records: the directory stream EPS_SD_RECORDS is damaged at record ${bad} `),
    );

    const repair = await new Promise<{ code: number; out: string }>((done) =>
      execFile(process.execPath, ['dist/src/cli/sd.js', 'repair', '--yes'], { env: { ...process.env, SD_SETTINGS: stack.roleFolders('sd-1'), NATS_URL: nats.url } }, (err, out, errOut) =>
        done({ code: err ? Number(err.code) : 0, out: out + errOut }),
      ),
    );
    expect(repair.out).toContain(`repaired: EPS_SD_RECORDS holds records 1..${tip.seq}`);
    expect(repair.code).toBe(0);
    expect(await sdSetup(stack, `${HYPER_AS_PEER}\n- { kind: group, name: later }\n`)).toMatch(/directory records submitted/);
    expect((await sdTip(stack)).seq).toBe(bad);
    for (const role of ['hd-1', 'hd-2', 'public-proxy-1'] as const) {
      await waitFor(`${role} to follow the repaired stream`, () => /the directory stream was repaired; following it again/.test(roleLog(stack, role)), 15_000);
    }
    const after = await call(stack, 'public-proxy-hyper-1._ping');
    expect(after.ok, describeOutcomes([after])).toBe(true);
  }, 45_000);
});
