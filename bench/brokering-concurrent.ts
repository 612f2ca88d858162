import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stats, type Target } from './brokering-latency.js';
import type { ProfileWindows } from './cpuprofile-windows.js';

// bench/brokering.ts's concurrent mode (issue 10, part 2: brokerings per second at 50 concurrent
// requesters against the direct fresh connect + call rate at 50 concurrent). Each contender is a
// requester process of its own (bench/brokering-requesters.ts), forked afresh per round, the
// contenders taking turns with the first one rotating; while one runs the others are idle. The
// CPU of every process of the contender (the requesters, and the stack's proxy, hd-2 and
// nats-server, or the anchor server) is read around the timed window and divided by the requests
// completed in it.

export interface ConcurrentContender {
  label: string;
  /** A stack to broker through, or undefined for the direct anchor. */
  target?: { target: Target; root: string; pids: Record<string, number | undefined> };
  anchor?: { address: string; pids: Record<string, number | undefined> };
}

export interface ConcurrentRound {
  rate: number;
  completed: number;
  failed: number;
  errors: string[];
  latencies: number[];
  cpuMs: Record<string, number>;
}

export interface ConcurrentSummary {
  label: string;
  rounds: ConcurrentRound[];
  ratePerSecond: { median: number; min: number; max: number };
  latency: { p50: number; p90: number; p99: number; n: number };
  /** Median over rounds of each process's CPU ms per completed request. */
  cpuMsPerRequest: Record<string, number>;
  failed: number;
}

type CpuReader = (pid: number | undefined) => number;

/** Profiles the requesters of contender `label` (--cpu-prof into `dir`) and records its windows. */
export interface ConcurrentProfile {
  dir: string;
  label: string;
  window: ProfileWindows;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
}

function forkRequesters(c: ConcurrentContender, profile: ConcurrentProfile | undefined): ChildProcess {
  const script = resolve('dist/bench/brokering-requesters.js');
  if (c.target) {
    const { target, root } = c.target;
    const stack = target.stack as unknown as { roleFolders(role: string): string; opts: { natsUrl: string } };
    const execArgv = profile?.label === c.label ? ['--cpu-prof', `--cpu-prof-dir=${profile.dir}`] : [];
    return fork(script, [], {
      execArgv,
      cwd: resolve(root),
      env: { ...process.env, BENCH_MODE: 'brokered', BENCH_ROOT: resolve(root), EPS_SETTINGS: stack.roleFolders('hd-1'), NATS_URL: stack.opts.natsUrl },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  }
  return fork(script, [], { env: { ...process.env, BENCH_MODE: 'direct', BENCH_ADDRESS: c.anchor!.address }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

async function oneRound(c: ConcurrentContender, concurrency: number, durationMs: number, cpuOf: CpuReader, profile?: ConcurrentProfile): Promise<ConcurrentRound> {
  const child = forkRequesters(c, profile);
  const profiled = profile?.label === c.label;
  if (profiled) {
    // The requesters are A in this mode: name their profile for bench/cpuprofile-top.ts.
    const rolesFile = join(profile.dir, 'roles.json');
    const roles = JSON.parse(readFileSync(rolesFile, 'utf8')) as Record<string, string>;
    writeFileSync(rolesFile, JSON.stringify({ ...roles, [String(child.pid)]: 'requesters (A)' }));
  }
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  try {
    await new Promise<void>((res, rej) => {
      child.once('exit', (code) => rej(new Error(`${c.label}: requesters exited (${code}) before they were ready`)));
      child.once('message', () => res());
    });
    const pids = { requesters: child.pid, ...(c.target?.pids ?? c.anchor!.pids) };
    const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuOf(pid)]));
    const done = new Promise<{ completed: number; failed: number; errors: string[]; latencies: number[]; wallMs: number }>((res) => child.once('message', res as (m: unknown) => void));
    const windowStart = profile?.window.open() ?? 0;
    child.send({ type: 'go', durationMs, concurrency });
    const result = await done;
    if (profiled) profile.window.close('concurrent', windowStart, result.completed);
    // The requester's own counter is read after its last request, before it exits.
    const cpuMs = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, Math.round(((cpuOf(pid) - before[k]!) / Math.max(1, result.completed)) * 100) / 100]));
    return { rate: Math.round((result.completed / result.wallMs) * 1000 * 10) / 10, completed: result.completed, failed: result.failed, errors: result.errors, latencies: result.latencies, cpuMs };
  } finally {
    // A profiled child writes its profile as it exits on its own, after its last message.
    if (profiled) await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    child.removeAllListeners('exit');
    child.kill('SIGKILL');
  }
}

export async function runConcurrent(
  contenders: ConcurrentContender[],
  opts: { rounds: number; concurrency: number; durationMs: number; cpuOf: CpuReader; profile?: ConcurrentProfile },
): Promise<ConcurrentSummary[]> {
  const rounds = new Map<string, ConcurrentRound[]>(contenders.map((c) => [c.label, []]));
  for (let i = 0; i < opts.rounds; i++) {
    for (let j = 0; j < contenders.length; j++) {
      const c = contenders[(i + j) % contenders.length]!;
      const r = await oneRound(c, opts.concurrency, opts.durationMs, opts.cpuOf, opts.profile);
      rounds.get(c.label)!.push(r);
      console.log(`  round ${i + 1} ${c.label.padEnd(40)} ${r.rate}/s (${r.completed} ok, ${r.failed} failed)${r.errors.length ? ` e.g. ${r.errors[0]}` : ''}`);
    }
  }
  return contenders.map((c) => {
    const rs = rounds.get(c.label)!;
    const rates = rs.map((r) => r.rate);
    const keys = Object.keys(rs[0]?.cpuMs ?? {});
    return {
      label: c.label,
      rounds: rs,
      ratePerSecond: { median: median(rates), min: Math.min(...rates), max: Math.max(...rates) },
      latency: stats(rs.flatMap((r) => r.latencies)),
      cpuMsPerRequest: Object.fromEntries(keys.map((k) => [k, median(rs.map((r) => r.cpuMs[k]!))])),
      failed: rs.reduce((n, r) => n + r.failed, 0),
    };
  });
}
