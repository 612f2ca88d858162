import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readTlsMaterial } from '../src/core/tls-material.js';
import { callJsonRpc } from '../src/jsonrpc/client.js';
import { start, stats, untilAnswered } from './brokering-latency.js';

// Where the wall time of one brokered call goes, across processes. The stack (sd, proxy, hd-1,
// hd-2 on the generated TLS bus, started as the demo starts them) runs with EPS_TIMELINE_FILE
// (src/core/timeline.ts), so each process appends its marks; a keep-alive HTTPS client calls
// hd-2._ping through hd-1's gateway once per round, after every process has sat idle as long as
// in bench/brokering.ts (hd-1 closes its channel after 50 ms idle, so every round brokers anew).
// Per round, each mark is taken relative to the client sending its request; the table is the
// median of every mark seen in at least 80% of the rounds, in time order, with the gap from the
// row before. `hop` marks a gap whose two rows are in different processes: a message or a dial
// crossing over, the other process waking, and what it did before its mark. A gap within one
// process may still be a wait (A's TLS waits on B through the relay). The marks cost ~20 µs each
// (a synchronous append), so totals run a little above bench/brokering.ts's.
//
//   node dist/bench/brokering-timeline.js [rounds, default 100]
//     BENCH_CPU_PROF=<dir>       profiles too
//     BENCH_TIMELINE_KEEP=<file> every round's raw marks, the processes' roles and the offset of
//                                the wall clock from V8's profile clock, as JSON: to read single
//                                rounds, split rounds by a mark, or cut a profile to one gap
//     BENCH_INSPECTOR=off        the proxy without its live inspector (the demo runs it on)

const CERTS = 'settings/dev/certs';
const IDLE_MS = 150;

interface Mark {
  at: number;
  pid: number;
  mark: string;
}

function readMarks(file: string): Mark[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [at, pid, ...rest] = line.split(' ');
      return { at: Number(at), pid: Number(pid), mark: rest.join(' ') };
    });
}

const wallMicros = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);
const ms = (micros: number): number => Math.round(micros / 10) / 100;

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 100);
  const dir = join(tmpdir(), `eps-timeline-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'marks.txt');
  writeFileSync(file, '');
  // Read by each child at start-up (the stack passes this process's environment on).
  process.env['EPS_TIMELINE_FILE'] = file;
  // BENCH_CPU_PROF=<dir>: hd-1, hd-2 and the proxy also write V8 CPU profiles there (50 µs
  // samples) when the stack stops; weigh samples by their time deltas, not by count, since a
  // loaded machine spaces them unevenly.
  const prof = process.env['BENCH_CPU_PROF'] ? ['--cpu-prof', `--cpu-prof-dir=${process.env['BENCH_CPU_PROF']}`, '--cpu-prof-interval=50'] : [];
  // BENCH_INSPECTOR=off: the proxy without its live inspector (the demo's settings have it on).
  const overrides: Record<string, string> = process.env['BENCH_INSPECTOR'] === 'off' ? { 'public-proxy-1': 'inspector: { enabled: false }\n' } : {};
  const target = await start('.', overrides, { 'hd-1': prof, 'hd-2': prof, 'public-proxy-1': prof });
  const children = (target.stack as unknown as { children: Map<string, ChildProcess> }).children;
  const roleOf = new Map([...children].map(([role, child]) => [child.pid!, role]));
  const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const ping = () => callJsonRpc({ url: `https://127.0.0.1:${target.jsonrpcPort}/jsonrpc`, serverName: 'hd-1', tls, timeoutMs: 10_000, agent }, 'hd-2._ping', {});
  try {
    await untilAnswered('this build', ping);
    for (let i = 0; i < 20; i++) {
      await sleep(IDLE_MS);
      await ping();
    }
    writeFileSync(file, '');
    const windows: Array<{ from: number; to: number }> = [];
    for (let i = 0; i < rounds; i++) {
      await sleep(IDLE_MS);
      const from = wallMicros();
      await ping();
      windows.push({ from, to: wallMicros() });
    }
    // B's answer to the forward and the proxy's check of it come after A's call is answered.
    await sleep(IDLE_MS);
    const marks = readMarks(file);
    // BENCH_TIMELINE_KEEP=<file>: every round's marks in the order they happened, for reading one
    // brokering at a time (the table's medians of each mark need not add up to any one round).
    const keep = process.env['BENCH_TIMELINE_KEEP'];
    // monoOffset: wall clock minus CLOCK_MONOTONIC (µs), the clock of V8's .cpuprofile samples.
    if (keep) writeFileSync(keep, JSON.stringify({ roles: Object.fromEntries(roleOf), monoOffset: wallMicros() - Number(process.hrtime.bigint() / 1000n), windows, marks }));
    const offsets = new Map<string, number[]>();
    for (const w of windows) {
      const seen = new Map<string, number>();
      for (const m of marks) {
        if (m.at < w.from || m.at > w.to + 5_000) continue;
        const role = roleOf.get(m.pid) ?? `pid ${m.pid}`;
        const base = `${role}: ${m.mark}`;
        const n = (seen.get(base) ?? 0) + 1;
        seen.set(base, n);
        const key = n === 1 ? base : `${base} (#${n})`;
        offsets.set(key, [...(offsets.get(key) ?? []), m.at - w.from]);
      }
    }
    const rows = [...offsets]
      .filter(([, xs]) => xs.length >= rounds * 0.8)
      .map(([key, xs]) => ({ key, role: key.split(':')[0]!, at: stats(xs).p50 }))
      .sort((a, b) => a.at - b.at);
    const total = stats(windows.map((w) => w.to - w.from));
    console.log(`one brokered call (client -> hd-1 gateway -> ... -> answer), ${rounds} rounds, ${IDLE_MS} ms idle before each; median µs -> ms`);
    console.log('    at    gap  kind  mark');
    let prev: { role: string; at: number } = { role: 'client', at: 0 };
    const table = [];
    for (const r of rows) {
      const gap = r.at - prev.at;
      const kind = r.role === prev.role ? '' : 'hop';
      console.log(`${ms(r.at).toFixed(2).padStart(6)} ${ms(gap).toFixed(2).padStart(6)}  ${kind.padEnd(4)}  ${r.key}`);
      table.push({ mark: r.key, atMs: ms(r.at), gapMs: ms(gap), hop: kind === 'hop' });
      prev = r;
    }
    console.log(`client's total: p50 ${ms(total.p50)} ms, p90 ${ms(total.p90)} ms`);
    mkdirSync('bench/results', { recursive: true });
    const out = `bench/results/brokering-timeline-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(out, JSON.stringify({ rounds, idleMs: IDLE_MS, totalMs: { p50: ms(total.p50), p90: ms(total.p90) }, table }, null, 2));
    console.log(`wrote ${out}`);
  } finally {
    agent.destroy();
    await target.stack.stop().catch(() => {});
    target.nats.kill('SIGTERM');
    rmSync(target.storeDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
