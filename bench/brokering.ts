import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { fingerprintOf, readTlsMaterial } from '../src/core/tls-material.js';
import { dialTcp } from '../src/core/dial.js';
import { connectPeerClient, connectPeerClientDirect, type PeerClient } from '../src/grpc/peer-client.js';
import { callJsonRpc } from '../src/jsonrpc/client.js';
import { brokeringChart } from './brokering-chart.js';
import { runConcurrent, type ConcurrentContender, type ConcurrentSummary } from './brokering-concurrent.js';
import { start, stats, turnOrder, untilAnswered, type Target } from './brokering-latency.js';
import { ProfileWindows } from './cpuprofile-windows.js';

// Brokering against its anchor, in the same run (issue 10, parts 2 and 3). The EPS stack (sd,
// proxy, hd-1, hd-2 from dist/, as the demo starts them, on free ports, on the generated secured
// bus) and a bare gRPC peer server (bench/peer-server-child.ts: the project's createPeerServer
// with hd-2's certificate) each run in processes of their own. Per round, after hd-1 has closed
// its idle channel (50 ms), the contenders take turns, the first one rotating:
//   brokered     hd-2._ping through hd-1's gateway, which must broker a new channel; the client
//                keeps its HTTPS connection to the gateway alive
//   kept         the same call at once, on the channel just brokered
//   local        hd-1._ping: hd-1 answering itself, its share of `kept`
//   directFresh  mTLS gRPC connect + one unary call + close, to the bare server
//   directKept   one unary call on a gRPC connection to it held open for the whole run
//   sameClient…  the same two with A's own client (src/grpc/spliced-client.ts) on a socket the
//                bench dials itself: what the brokered figures would be measured against if the
//                operator's alternative used A's leaner client rather than grpc-js's
// Ratios: brokered ÷ directFresh (p50, p99) and (kept − local p50) ÷ directKept.
// BENCH_BEFORE=<a built checkout> adds that build's stack as a second EPS contender (before/after
// in one run). BENCH_CPU_PROF=<dir> runs this build's proxy, hd-1 and hd-2 with --cpu-prof
// (and, in the concurrent mode, its requesters) and records the timed windows (windows.json);
// summarise with bench/cpuprofile-top.ts. BENCH_BROKER_ONLY=1 times brokerings alone.
// Then the concurrent mode (bench/brokering-concurrent.ts): BENCH_CONCURRENCY requesters (50) for
// BENCH_WINDOW_MS (5,000) per contender and round, BENCH_CONCURRENT_ROUNDS rounds (3; 0 skips
// it): brokerings per second through each stack against direct fresh connects + calls per second,
// with every process's CPU per request. `rounds` 0 skips the serial part.
//
//   node dist/bench/brokering.js [rounds]

const CERTS = 'settings/dev/certs';
const IDLE_MS = 50;
// Every dialer here is 127.0.0.1 (hd-2 for every session, and all the concurrent mode's A legs):
// the proxy's cap on connections per source address that have not sent their preamble yet
// (splice.maxPendingPerAddress, 16) is a defence against one abusive source, not what is measured,
// and at 50 concurrent brokerings it resets dials and the sessions wait out bDialTimeout.
const BENCH_OVERRIDES = { 'public-proxy-1': 'splice: { maxPendingPerAddress: 1024 }\n' };

interface Stats {
  p50: number;
  p90: number;
  p99: number;
  n: number;
}

interface EpsContender {
  label: string;
  target: Target;
  agent: Agent;
  samples: { brokered: number[]; kept: number[]; local: number[] };
}

function startAnchor(): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['dist/bench/peer-server-child.js'], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', rej);
    child.stdout!.once('data', (d: Buffer) => res({ child, port: Number(String(d).trim()) }));
  });
}

function childrenOf(t: Target): Map<string, ChildProcess> {
  return (t.stack as unknown as { children: Map<string, ChildProcess> }).children;
}

/** user + system CPU of a process, ms (clock ticks of 10 ms). */
function cpuOf(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** The timed windows of a BENCH_CPU_PROF run, so the summary leaves start-up and warm-up out. */
const profileWindow = new ProfileWindows();

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 200);
  const concurrentRounds = Number(process.env['BENCH_CONCURRENT_ROUNDS'] ?? 3);
  const concurrency = Number(process.env['BENCH_CONCURRENCY'] ?? 50);
  const windowMs = Number(process.env['BENCH_WINDOW_MS'] ?? 5_000);
  const brokerOnly = Boolean(process.env['BENCH_BROKER_ONLY']);
  const hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
  const expectedPeer = { name: 'hd-2', fingerprint: fingerprintOf(readFileSync(`${CERTS}/hd-2.crt`)) };
  const contenders: EpsContender[] = [];
  let anchor: { child: ChildProcess; port: number } | undefined;
  let kept: PeerClient | undefined;
  const direct = { directFresh: [] as number[], directKept: [] as number[], sameClientFresh: [] as number[], sameClientKept: [] as number[] };
  let keptSame: PeerClient | undefined;
  try {
    const profDir = process.env['BENCH_CPU_PROF'];
    if (profDir) mkdirSync(profDir, { recursive: true });
    const prof = profDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profDir)}`] : [];
    const roots: Array<[string, string]> = [['.', 'this build']];
    if (process.env['BENCH_BEFORE']) roots.push([process.env['BENCH_BEFORE'], `before (${process.env['BENCH_BEFORE']})`]);
    for (const [root, label] of roots) {
      const target = await start(root, BENCH_OVERRIDES, root === '.' ? { 'public-proxy-1': prof, 'hd-1': prof, 'hd-2': prof } : {});
      contenders.push({ label, target, agent: new Agent({ keepAlive: true, maxSockets: 1 }), samples: { brokered: [], kept: [], local: [] } });
    }
    if (profDir) {
      const pids = Object.fromEntries([...childrenOf(contenders[0]!.target)].map(([role, c]) => [c.pid, role]));
      writeFileSync(join(profDir, 'roles.json'), JSON.stringify(pids));
      profileWindow.dir = profDir;
    }
    anchor = await startAnchor();
    const address = `127.0.0.1:${anchor.port}`;
    const gw = (c: EpsContender, method: string) =>
      callJsonRpc({ url: `https://127.0.0.1:${c.target.jsonrpcPort}/jsonrpc`, serverName: 'hd-1', tls: hd1, timeoutMs: 10_000, agent: c.agent }, method, {});
    const fresh = async () => {
      const client = await connectPeerClientDirect({ tls: hd1, expectedPeer, address });
      try {
        await client.call('_ping', {});
      } finally {
        client.close();
      }
    };
    for (const c of contenders) await untilAnswered(c.label, () => gw(c, 'hd-2._ping'));
    const held = await connectPeerClientDirect({ tls: hd1, expectedPeer, address });
    kept = held;
    const sameClient = async () => connectPeerClient({ tls: hd1, expectedPeer, socket: await dialTcp(address), log: pino({ level: 'silent' }) });
    const freshSame = async () => {
      const client = await sameClient();
      try {
        await client.call('_ping', {});
      } finally {
        client.close();
      }
    };
    const heldSame = await sameClient();
    keptSame = heldSame;
    for (let i = 0; i < 20; i++) {
      await fresh();
      await held.call('_ping', {});
      await freshSame();
      await heldSame.call('_ping', {});
      for (const c of contenders) await gw(c, 'hd-1._ping');
    }
    const timed = async (into: number[], f: () => Promise<unknown>) => {
      const t0 = performance.now();
      await f();
      into.push(performance.now() - t0);
    };
    const turns: Array<() => Promise<void>> = contenders.map((c) => async () => {
      await timed(c.samples.brokered, () => gw(c, 'hd-2._ping'));
      if (brokerOnly) return;
      await timed(c.samples.kept, () => gw(c, 'hd-2._ping'));
      await timed(c.samples.local, () => gw(c, 'hd-1._ping'));
    });
    if (!brokerOnly) {
      turns.push(async () => {
        await timed(direct.directFresh, fresh);
        await timed(direct.directKept, () => held.call('_ping', {}));
        await timed(direct.sameClientFresh, freshSame);
        await timed(direct.sameClientKept, () => heldSame.call('_ping', {}));
      });
    }
    const pids: Record<string, number | undefined> = { anchor: anchor.child.pid };
    for (const c of contenders) for (const [role, child] of childrenOf(c.target)) pids[`${c.label}: ${role}`] = child.pid;
    const cpuBefore = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuOf(pid)]));
    const serialWindow = profileWindow.open();
    for (let i = 0; i < rounds; i++) {
      await sleep(IDLE_MS * 3);
      for (const j of turnOrder(i, turns.length)) await turns[j]!();
    }
    profileWindow.close('serial', serialWindow, rounds);
    const cpuPerRound = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, Math.round(((cpuOf(pid) - cpuBefore[k]!) / rounds) * 100) / 100]));

    let concurrent: ConcurrentSummary[] = [];
    if (concurrentRounds > 0) {
      console.log(`concurrent: ${concurrency} requesters, ${windowMs} ms per contender and round, ${concurrentRounds} rounds`);
      const contenderList: ConcurrentContender[] = contenders.map((c) => {
        const children = childrenOf(c.target);
        return {
          label: `brokered, ${c.label}`,
          target: {
            target: c.target,
            root: c.label === 'this build' ? '.' : process.env['BENCH_BEFORE']!,
            pids: { proxy: children.get('public-proxy-1')?.pid, 'hd-2': children.get('hd-2')?.pid, 'hd-1': children.get('hd-1')?.pid, nats: c.target.nats.pid },
          },
        };
      });
      contenderList.push({ label: 'direct fresh connect + call', anchor: { address, pids: { anchor: anchor.child.pid } } });
      concurrent = await runConcurrent(contenderList, {
        rounds: concurrentRounds,
        concurrency,
        durationMs: windowMs,
        cpuOf,
        ...(profDir ? { profile: { dir: resolve(profDir), label: contenderList[0]!.label, window: profileWindow } } : {}),
      });
      const directRate = concurrent.at(-1)!.ratePerSecond.median;
      for (const c of concurrent) {
        const cpu = Object.entries(c.cpuMsPerRequest).map(([k, v]) => `${k} ${v}`).join(', ');
        const total = Math.round(Object.values(c.cpuMsPerRequest).reduce((a, b) => a + b, 0) * 100) / 100;
        console.log(`${c.label}`);
        console.log(`  ${c.ratePerSecond.median}/s (${c.ratePerSecond.min}–${c.ratePerSecond.max}), ${Math.round((c.ratePerSecond.median / directRate) * 100) / 100}× direct (target ≥ 0.6×); latency p50 ${c.latency.p50} p99 ${c.latency.p99} ms; ${c.failed} failed`);
        console.log(`  CPU ms per request: ${cpu} (total ${total})`);
      }
    }

    const r2 = (x: number) => Math.round(x * 100) / 100;
    const d = {
      directFresh: stats(direct.directFresh),
      directKept: stats(direct.directKept),
      sameClientFresh: stats(direct.sameClientFresh),
      sameClientKept: stats(direct.sameClientKept),
    };
    console.log(`brokering vs direct gRPC, ${rounds} rounds, contenders alternating (ms)`);
    if (!brokerOnly) for (const [name, st] of Object.entries(d)) console.log(`  ${name.padEnd(12)} p50 ${st.p50}  p90 ${st.p90}  p99 ${st.p99}`);
    const results = contenders.map((c) => {
      const s = { brokered: stats(c.samples.brokered), kept: stats(c.samples.kept), local: stats(c.samples.local) } as Record<string, Stats>;
      const ratios = brokerOnly
        ? {}
        : {
            brokeredP50: r2(s['brokered']!.p50 / d.directFresh.p50),
            brokeredP99: r2(s['brokered']!.p99 / d.directFresh.p99),
            keptP50: r2((s['kept']!.p50 - s['local']!.p50) / d.directKept.p50),
            keptP99: r2((s['kept']!.p99 - s['local']!.p50) / d.directKept.p99),
            sameClientBrokeredP50: r2(s['brokered']!.p50 / d.sameClientFresh.p50),
            sameClientBrokeredP99: r2(s['brokered']!.p99 / d.sameClientFresh.p99),
            sameClientKeptP50: r2((s['kept']!.p50 - s['local']!.p50) / d.sameClientKept.p50),
            sameClientKeptP99: r2((s['kept']!.p99 - s['local']!.p50) / d.sameClientKept.p99),
          };
      console.log(`${c.label}`);
      for (const [name, st] of Object.entries(s)) if (st.n) console.log(`  ${name.padEnd(12)} p50 ${st.p50}  p90 ${st.p90}  p99 ${st.p99}`);
      if (!brokerOnly) {
        console.log(`  brokered ÷ direct fresh: p50 ${ratios.brokeredP50}×, p99 ${ratios.brokeredP99}× (target ≤ 1.5×)`);
        console.log(`  (kept − local p50) ÷ direct kept: p50 ${ratios.keptP50}×, p99 ${ratios.keptP99}× (target ≤ 1.2×)`);
        console.log(`  against A's own client direct: brokered p50 ${ratios.sameClientBrokeredP50}×, p99 ${ratios.sameClientBrokeredP99}×; kept − local p50 ${ratios.sameClientKeptP50}×, p99 ${ratios.sameClientKeptP99}×`);
      }
      return { label: c.label, stats: s, ratios, samples: c.samples };
    });
    console.log(`CPU ms per round (${brokerOnly ? 'one brokering per stack' : 'each stack: brokered + kept + local; anchor: fresh + kept'}):`);
    for (const [k, v] of Object.entries(cpuPerRound)) if (!k.includes('sd-1')) console.log(`  ${k.padEnd(40)} ${v}`);
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/brokering-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify({ rounds, brokerOnly, direct: d, contenders: results, cpuPerRound, directSamples: direct, concurrent }, null, 1));
    writeFileSync(file.replace(/\.json$/, '.svg'), brokeringChart({ at: new Date().toISOString(), direct: d, contenders: results, concurrent }));
    console.log(`wrote ${file} and .svg`);
  } finally {
    kept?.close();
    keptSame?.close();
    anchor?.child.kill('SIGTERM');
    for (const c of contenders) {
      c.agent.destroy();
      await c.target.stack.stop().catch(() => {});
      c.target.nats.kill('SIGTERM');
      rmSync(c.target.storeDir, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
