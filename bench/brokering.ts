import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { readTlsMaterial, fingerprintOf } from '../src/core/tls-material.js';
import { connectPeerClientDirect, type PeerClient } from '../src/grpc/peer-client.js';
import { callJsonRpc } from '../src/jsonrpc/client.js';
import { start, stats, type Target } from './brokering-latency.js';

// Brokering against its anchor, in the same run (issue 10, parts 2 and 3). The EPS stack (sd,
// proxy, hd-1, hd-2 from dist/, as the demo starts them, on free ports, on the generated secured
// bus) and a bare gRPC peer server (bench/peer-server-child.ts, hd-2's certificate) each run in
// processes of their own. Per round, the series alternate which goes first:
//   brokered     hd-2._ping through hd-1's gateway once hd-1 has closed the idle channel (50 ms),
//                so the call brokers a new one; a keep-alive HTTPS client on the gateway
//   kept         the same call at once, on the channel just brokered
//   local        hd-1._ping: hd-1 answering itself, its share of `kept`
//   directFresh  mTLS gRPC connect + one unary call + close, to the bare server
//   directKept   one unary call on a gRPC connection held open for the whole run
// Ratios: brokered ÷ directFresh, and (kept − local) ÷ directKept, at p50 and p99.
//
//   node dist/bench/brokering.js [rounds]

const CERTS = 'settings/dev/certs';
const IDLE_MS = 50;

type Series = 'brokered' | 'kept' | 'local' | 'directFresh' | 'directKept';

function startAnchor(): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [join('dist/bench/peer-server-child.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', rej);
    child.stdout!.once('data', (d: Buffer) => res({ child, port: Number(String(d).trim()) }));
  });
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 200);
  const hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
  const hd2Fingerprint = fingerprintOf(readFileSync(`${CERTS}/hd-2.crt`));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let stack: Target | undefined;
  let anchor: { child: ChildProcess; port: number } | undefined;
  let kept: PeerClient | undefined;
  const samples: Record<Series, number[]> = { brokered: [], kept: [], local: [], directFresh: [], directKept: [] };
  try {
    // BENCH_CPU_PROF=<dir>: the stack's processes run with --cpu-prof into <dir>, and the pid of
    // each role is written beside the profiles (bench/cpuprofile-top.ts summarises them).
    const profDir = process.env['BENCH_CPU_PROF'];
    if (profDir) mkdirSync(profDir, { recursive: true });
    const prof = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
    stack = await start('.', {}, { 'public-proxy-1': prof, 'hd-1': prof, 'hd-2': prof });
    if (profDir) {
      const children = (stack.stack as unknown as { children: Map<string, ChildProcess> }).children;
      writeFileSync(join(profDir, 'roles.json'), JSON.stringify(Object.fromEntries([...children].map(([role, c]) => [c.pid, role]))));
    }
    anchor = await startAnchor();
    const target = stack;
    const gw = (method: string) =>
      callJsonRpc({ url: `https://127.0.0.1:${target.jsonrpcPort}/jsonrpc`, serverName: 'hd-1', tls: hd1, timeoutMs: 10_000, agent }, method, {});
    const expectedPeer = { name: 'hd-2', fingerprint: hd2Fingerprint };
    const address = `127.0.0.1:${anchor.port}`;
    const fresh = async () => {
      const c = await connectPeerClientDirect({ tls: hd1, expectedPeer, address });
      try {
        await c.call('_ping', {});
      } finally {
        c.close();
      }
    };
    // Warm up: the stack may need a few seconds before hd-2 is in the directory.
    const until = Date.now() + 30_000;
    for (;;) {
      try {
        await gw('hd-2._ping');
        break;
      } catch (err) {
        if (Date.now() > until) throw err;
        await sleep(200);
      }
    }
    kept = await connectPeerClientDirect({ tls: hd1, expectedPeer, address });
    for (let i = 0; i < 20; i++) {
      await fresh();
      await kept.call('_ping', {});
      await gw('hd-1._ping');
    }
    const timed = async (s: Series, f: () => Promise<unknown>) => {
      const t0 = performance.now();
      await f();
      samples[s].push(performance.now() - t0);
    };
    const k = kept;
    // CPU of each role (user + system, from /proc/<pid>/stat) over the timed rounds.
    const roleChildren = (target.stack as unknown as { children: Map<string, ChildProcess> }).children;
    const cpuOf = (pid: number | undefined): number => {
      try {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks (USER_HZ 100) -> ms
      } catch {
        return NaN;
      }
    };
    const cpuPids: Record<string, number | undefined> = { anchor: anchor.child.pid };
    for (const [role, c] of roleChildren) cpuPids[role] = c.pid;
    const cpuBefore = Object.fromEntries(Object.entries(cpuPids).map(([r, pid]) => [r, cpuOf(pid)]));
    for (let i = 0; i < rounds; i++) {
      await sleep(IDLE_MS * 3);
      const eps = async () => {
        await timed('brokered', () => gw('hd-2._ping'));
        await timed('kept', () => gw('hd-2._ping'));
        await timed('local', () => gw('hd-1._ping'));
      };
      const direct = async () => {
        await timed('directFresh', fresh);
        await timed('directKept', () => k.call('_ping', {}));
      };
      // BENCH_BROKER_ONLY=1: brokerings alone (for profiles of what one brokering costs).
      if (process.env['BENCH_BROKER_ONLY']) await timed('brokered', () => gw('hd-2._ping'));
      else if (i % 2 === 0) {
        await eps();
        await direct();
      } else {
        await direct();
        await eps();
      }
    }
    const cpuPerRound = Object.fromEntries(
      Object.entries(cpuPids).map(([r, pid]) => [r, Math.round(((cpuOf(pid) - cpuBefore[r]!) / rounds) * 100) / 100]),
    );
    const s = Object.fromEntries(Object.entries(samples).map(([k2, v]) => [k2, stats(v)])) as Record<Series, ReturnType<typeof stats>>;
    const r2 = (x: number) => Math.round(x * 100) / 100;
    const ratios = process.env['BENCH_BROKER_ONLY'] ? {} : {
      freshP50: r2(s.brokered.p50 / s.directFresh.p50),
      freshP99: r2(s.brokered.p99 / s.directFresh.p99),
      keptP50: r2((s.kept.p50 - s.local.p50) / s.directKept.p50),
      keptP99: r2((s.kept.p99 - s.local.p50) / s.directKept.p99),
    };
    console.log(`brokering vs direct gRPC, ${rounds} rounds, series alternating (ms)`);
    for (const [name, st] of Object.entries(s)) console.log(`${name.padEnd(12)} p50 ${st.p50}  p90 ${st.p90}  p99 ${st.p99}  n ${st.n}`);
    console.log(`brokered ÷ direct fresh: p50 ${ratios.freshP50}×  p99 ${ratios.freshP99}×   (target ≤ 1.5×)`);
    console.log(`(kept − local p50) ÷ direct kept: p50 ${ratios.keptP50}×  p99 ${ratios.keptP99}×   (target ≤ 1.2×)`);
    console.log(`CPU ms per round (${process.env['BENCH_BROKER_ONLY'] ? 'one brokering' : 'brokered + kept + local on the stack, fresh + kept on the anchor'}): ${JSON.stringify(cpuPerRound)}`);
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/brokering-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify({ rounds, label: process.env['BENCH_LABEL'] ?? '', stats: s, ratios, cpuPerRound, samples }, null, 1));
    console.log(`wrote ${file}`);
  } finally {
    kept?.close();
    agent.destroy();
    anchor?.child.kill('SIGTERM');
    if (stack) {
      await stack.stack.stop().catch(() => {});
      stack.nats.kill('SIGTERM');
      rmSync(stack.storeDir, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
