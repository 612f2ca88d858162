import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { brokenInvariants, runChaos } from '../src/devstack/chaos-run.js';
import { formatTable, KILL_TARGETS, type KillTarget } from '../src/devstack/chaos-report.js';

// `npm run chaos`: chaos under load, measured (issue 12). The cluster profile as `make demo-cluster`
// starts it, on free ports; brokerings, calls on a kept channel and game duels kept running while
// a nats-server node, a proxy, a games instance and sd are each killed (SIGKILL) and started again,
// one at a time, in turn. Prints, per kill target, how long until new work of each kind succeeded
// again (p50 / max) and every failed call by error class; checks that no game or directory record
// was lost, no session was left open and every process serves again. Writes
// bench/results/chaos-<time>.json. Exits 1 when an invariant broke or a failure was unclear.
//
//   CHAOS_DURATION_S  how long to keep killing (default 240): kills = duration ÷ interval
//   CHAOS_INTERVAL_S  seconds between two kills (default 12)
//   CHAOS_DOWN_MS     from a kill to starting the replacement (default 1500)
//   CHAOS_TARGETS     comma-separated subset of nats,proxy,games,sd (default all, in that order)

function numberFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return n;
}

function targetsFromEnv(): KillTarget[] {
  const raw = process.env['CHAOS_TARGETS'];
  if (!raw) return [...KILL_TARGETS];
  const list = raw.split(',').map((t) => t.trim());
  const bad = list.filter((t) => !(KILL_TARGETS as readonly string[]).includes(t));
  if (bad.length > 0) throw new Error(`CHAOS_TARGETS: unknown ${bad.join(', ')} (known: ${KILL_TARGETS.join(', ')})`);
  return list as KillTarget[];
}

async function main(): Promise<void> {
  const durationS = numberFromEnv('CHAOS_DURATION_S', 240);
  const intervalS = numberFromEnv('CHAOS_INTERVAL_S', 12);
  const downMs = numberFromEnv('CHAOS_DOWN_MS', 1500);
  const targets = targetsFromEnv();
  const kills = Math.max(1, Math.floor(durationS / intervalS));
  const conditions = `${cpus().length} cores, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the start`;
  console.log(`chaos: ${kills} kills (${targets.join(' → ')}), one every ${intervalS} s, each down ${downMs} ms before its restart; ${conditions}`);
  const result = await runChaos({ kills, intervalMs: intervalS * 1000, downMs, targets, progress: (line) => console.log(line) });
  console.log(`\nwork: ${Object.entries(result.work).map(([k, w]) => `${k} ${w.ok} ok / ${w.failed} failed`).join(', ')} in ${(result.durationMs / 1000).toFixed(0)} s`);
  console.log('recovery: from the SIGKILL to the end of the first call of that kind started after it that succeeded\n');
  console.log(formatTable(result.byTarget, result.kills, result.baseline));
  const inv = result.invariants;
  console.log(`\ngame records: ${inv.gameRecords.map((g) => `"${g.name}" in KV ${g.inKv}, GET ${g.statusByInstance.join('/')}`).join('; ')}`);
  console.log(`directory stream: ${inv.directory.messagesBefore} records before, ${inv.directory.messagesAfter} after, subjects lost: ${inv.directory.lostSubjects.length}`);
  console.log(`hd-1's kept channel lost with its proxy and brokered again: ${result.keptChannelLost} times`);
  console.log(`live sessions once the load stopped: ${Object.entries(inv.openSessions).map(([p, n]) => `${p} ${n}`).join(', ')}`);
  console.log(`processes not running: ${inv.notRunning.length ? inv.notRunning.join(', ') : 'none'}; replicas behind: ${inv.replicasBehind.length ? inv.replicasBehind.join(', ') : 'none'}`);
  mkdirSync('bench/results', { recursive: true });
  const file = `bench/results/chaos-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify({ conditions, ...result }, null, 2));
  console.log(`\nwrote ${file}`);
  const broken = brokenInvariants(result);
  console.log(broken.length === 0 ? 'chaos ok: every invariant held' : `CHAOS FAILED:\n  ${broken.join('\n  ')}`);
  process.exitCode = broken.length === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
