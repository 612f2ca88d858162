import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { brokenInvariants, runChaos } from '../../src/devstack/chaos-run.js';
import { formatTable, KILL_TARGETS } from '../../src/devstack/chaos-report.js';

// Chaos under load, the short version of `npm run chaos` (issue 12): the cluster profile's real
// processes (3 nats-servers, sd, two proxies, the EPS servers, two games instances) on free ports,
// brokerings, kept-channel calls and game duels running, and each of a nats-server node, a proxy,
// a games instance and sd killed with SIGKILL and started again, one at a time. No record lost,
// no session left open, every failure a clear one, and new work of every kind succeeds again soon
// after each kill.

/** From a kill to new work succeeding: seconds are what a failover should cost, not tens of them. */
const RECOVERY_BOUND_MS: Record<string, number> = {
  brokered: 10_000,
  kept: 10_000,
  // A duel is itself 2.5–4 s here (two peer processes starting on a busy 2-core machine), and
  // after a nats-server kill its store calls wait out their 5 s timeout while the buckets' leader
  // is elected again (8.6–9.9 s measured): the bound still catches a duel stuck to its deadline.
  duel: 20_000,
};

describe('chaos under load (cluster profile, real processes)', () => {
  it('chaos - one kill of each of a nats-server, a proxy, a games instance and sd under load: no record lost, no session left open, every failure clear, recovery within seconds', async () => {
    const result = await runChaos({ kills: KILL_TARGETS.length, intervalMs: 9000, downMs: 1500, warmupMs: 6000, progress: (line) => console.log(line) });
    console.log(`${formatTable(result.byTarget, result.kills, result.baseline)}\nwork: ${JSON.stringify(result.work)}`);

    // nats-server 2.9.10 once left a bucket without a leader for 25 s after a node's SIGKILL ("has NO
    // quorum, stalled" with two of three nodes up; README "Chaos under load"): say so if it recurs.
    const stalls = readdirSync(result.logDir)
      .filter((f) => /^eps-\d+\.log$/.test(f))
      .flatMap((f) => readFileSync(join(result.logDir, f), 'utf8').split('\n').filter((l) => l.includes('NO quorum')));
    if (stalls.length > 0) console.log(`nats-server said:\n${stalls.join('\n')}`);
    expect(result.kills.map((k) => k.target)).toEqual([...KILL_TARGETS]);
    // Each kind did real work before and after the kills, not only failures.
    for (const [kind, w] of Object.entries(result.work)) expect(w.ok, kind).toBeGreaterThan(2);
    expect(brokenInvariants(result)).toEqual([]);
    for (const k of result.kills) {
      for (const [kind, ms] of Object.entries(k.recoveryMs)) {
        expect(ms, `${kind} after killing ${k.victim}`).not.toBeNull();
        expect(ms!, `${kind} after killing ${k.victim}`).toBeLessThan(RECOVERY_BOUND_MS[kind]!);
      }
    }
    // The checks looked at something: two game records, a directory stream with records, both proxies.
    expect(result.invariants.gameRecords).toHaveLength(2);
    expect(result.invariants.directory.messagesBefore).toBeGreaterThan(0);
    expect(Object.keys(result.invariants.openSessions).sort()).toEqual(['public-proxy-1', 'public-proxy-2']);
  }, 180_000);
});
