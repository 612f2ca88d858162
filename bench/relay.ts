import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RELAY_COPY_BYTES_ENV, RELAY_MODE_ENV, RELAY_SEND_BYTES_ENV } from '../src/proxy/native-splice.js';
import { RoleChild } from './role-child.js';
import { PING_BYTES, type FromChild, type Pass, type ToChild } from './relay-roles.js';
import { relayChart, type Summary } from './relay-chart.js';

// The relay against what an operator would run instead, each in processes of its own: a sender
// (A), a relay and a receiver (B) are three processes, forked afresh for every contender in every
// round; contenders alternate round by round (the starting one rotates). Per contender and round:
// PING_COUNT round trips of 64 bytes (after a warm-up), then one stream of STREAM_MIB MiB, timed
// by the sender until the receiver's one-byte answer. The relay process's CPU (every thread's, from
// /proc/<pid>/task/*/schedstat) is read around the round trips and around the stream.
//
//   node dist/bench/relay.js [rounds, default 5]        (BENCH_STREAM_MIB, BENCH_PINGS override)
//
// Writes bench/results/relay-<time>.json and .svg.

const ROUNDS = Number(process.argv[2] ?? process.env.BENCH_ROUNDS ?? 5);
const STREAM_MIB = Number(process.env.BENCH_STREAM_MIB ?? 1024);
const PING_COUNT = Number(process.env.BENCH_PINGS ?? 2_000);
const PING_WARMUP = 200;
const STEP_TIMEOUT_MS = 60_000;
const MiB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const ROLES = join(here, 'relay-roles.js');

/** What `npm run bench` runs. */
export const CONTENDERS = ['eps', 'eps-js', 'haproxy', 'haproxy-splice', 'node-pipe', 'direct'];
/**
 * Chosen with BENCH_ONLY: eps-bare (the relay without its metrics hook and idle timeout: what
 * those cost), eps-before (the relay of another checkout, BENCH_EPS_BEFORE=<its root, built>, for
 * before/after in one run), onread-<KiB> (a bare Node relay reading into reused buffers),
 * eps-splice and eps-copy (the native relay's modes, whatever splice.relayMode's default), and
 * eps-copy-<R> / eps-copy-<R>s<S> (copy mode, R KiB per recv sent whole / in sends of S KiB; any
 * sizes).
 */
export const EXTRA_CONTENDERS = ['eps-bare', 'eps-before', 'eps-splice', 'eps-copy', 'eps-copy-16', 'eps-copy-256', 'eps-copy-256s16', 'onread-16', 'onread-64', 'onread-128', 'onread-256'];
const COPY_SIZES = /^eps-copy-(\d+)(?:s(\d+))?$/;
export type Contender = string;
const ANCHOR: Contender = 'haproxy';

export interface Sample {
  round: number;
  contender: Contender;
  mibps: number;
  /** The relay process's CPU per GiB relayed; absent for direct. */
  cpuMsPerGiB?: number;
  /**
   * The sender's and receiver's CPU per GiB: a relay can move cost onto its endpoints (a spliced
   * loopback stream keeps the sender's pages referenced until the receiver reads them), so the
   * relay's own CPU alone would flatter it.
   */
  endpointsCpuMsPerGiB: number;
  /** The relay process's CPU per 64 B round trip (two relayed messages), warm-up and connection included. */
  cpuUsPerRoundTrip?: number;
  p50Us: number;
  p99Us: number;
}

/** A role process of this bench: its steps and answers are relay-roles' messages. */
class Child extends RoleChild<ToChild, FromChild> {
  constructor(proc: ChildProcess) {
    super(proc, STEP_TIMEOUT_MS);
  }
}

// BENCH_RELAY_FLAGS (e.g. --cpu-prof) go to the Node relays only.
const relayFlags = process.env.BENCH_RELAY_FLAGS?.split(' ').filter(Boolean) ?? [];
// `eps` is the native relay (and fails if the addon is not built) in its default mode, `eps-js` the JS one.
const relayEnv = (contender: Contender): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, EPS_SPLICE: contender === 'eps-js' ? 'js' : 'native' };
  delete env[RELAY_MODE_ENV];
  delete env[RELAY_COPY_BYTES_ENV];
  delete env[RELAY_SEND_BYTES_ENV];
  if (contender === 'eps-splice') env[RELAY_MODE_ENV] = 'splice';
  if (contender.startsWith('eps-copy')) env[RELAY_MODE_ENV] = 'copy';
  const sizes = COPY_SIZES.exec(contender);
  if (sizes) {
    env[RELAY_COPY_BYTES_ENV] = String(Number(sizes[1]) * 1024);
    env[RELAY_SEND_BYTES_ENV] = String(Number(sizes[2] ?? sizes[1]) * 1024);
  }
  return env;
};
const forkRole = (args: string[], env: NodeJS.ProcessEnv = process.env): Child =>
  new Child(fork(ROLES, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: args[0]!.startsWith('relay-') ? relayFlags : [] }));

/** CPU time of every thread of a process, in ns, from the scheduler's own accounting. */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that ended between the listing and the read.
    }
  }
  return ns;
}

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

/** Waits for a listener on 127.0.0.1:port without connecting (a probe would reach the receiver). */
async function waitForListener(port: number): Promise<void> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const listening = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .some((line) => {
        const f = line.trim().split(/\s+/);
        return f[1] === local && f[3] === '0A';
      });
    if (listening) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function haproxyConfig(listen: number, target: number, splice: boolean): string {
  return [
    'global',
    '  maxconn 1000',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 120s',
    '  timeout server 120s',
    ...(splice ? ['  option splice-request', '  option splice-response'] : []),
    'frontend relay',
    `  bind 127.0.0.1:${listen}`,
    '  default_backend receiver',
    'backend receiver',
    `  server b 127.0.0.1:${target}`,
    '',
  ].join('\n');
}

function ensureHaproxy(): string {
  return execFileSync(join(root, 'scripts', 'ensure-haproxy.sh'), { stdio: ['ignore', 'pipe', 'inherit'] }).toString().trim();
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function runOne(contender: Contender, round: number, haproxy: string): Promise<Sample> {
  const streamBytes = STREAM_MIB * MiB;
  const children: Child[] = [];
  let relayPid: number | undefined;
  let haproxyProc: ChildProcess | undefined;
  let pingsFrom: number | undefined;
  const dialSender = (port: number, pass?: Pass): void => {
    if (relayPid !== undefined) pingsFrom = cpuNs(relayPid);
    sender.send({ type: 'dial', host: '127.0.0.1', port, ...(pass ? { pass } : {}) });
  };
  let sender!: Child;
  try {
    const receiver = forkRole(['receiver', String((PING_WARMUP + PING_COUNT) * PING_BYTES), String(streamBytes)]);
    children.push(receiver);
    const { port: receiverPort } = await receiver.next('listening');
    sender = forkRole(['sender', String(PING_COUNT), String(PING_WARMUP), String(streamBytes)]);
    children.push(sender);

    if (contender === 'direct') {
      dialSender(receiverPort);
    } else if (contender === 'node-pipe') {
      const relay = forkRole(['relay-pipe', String(receiverPort)]);
      children.push(relay);
      relayPid = relay.proc.pid;
      const { port } = await relay.next('listening');
      dialSender(port);
    } else if (contender.startsWith('onread-')) {
      const relay = forkRole(['relay-onread', String(receiverPort), String(Number(contender.slice(7)) * 1024)]);
      children.push(relay);
      relayPid = relay.proc.pid;
      const { port } = await relay.next('listening');
      dialSender(port);
    } else if (contender.startsWith('eps')) {
      const before = process.env.BENCH_EPS_BEFORE;
      if (contender === 'eps-before' && !before) throw new Error('eps-before needs BENCH_EPS_BEFORE=<root of a built checkout>');
      const relay =
        contender === 'eps-before'
          ? new Child(fork(join(before!, 'dist', 'bench', 'relay-roles.js'), ['relay-eps'], { cwd: before!, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: relayFlags }))
          : forkRole(['relay-eps', contender === 'eps-bare' ? 'bare' : 'production'], relayEnv(contender));
      children.push(relay);
      relayPid = relay.proc.pid;
      const { port } = await relay.next('listening');
      relay.send({ type: 'open' });
      const b = await relay.next('pass');
      receiver.send({ type: 'dial', host: '127.0.0.1', port, pass: b.pass });
      const a = await relay.next('pass');
      dialSender(port, a.pass);
    } else {
      const port = await freePort();
      const cfg = join(tmpdir(), `eps-bench-haproxy-${process.pid}.cfg`);
      writeFileSync(cfg, haproxyConfig(port, receiverPort, contender === 'haproxy-splice'));
      haproxyProc = spawn(haproxy, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
      relayPid = haproxyProc.pid;
      await waitForListener(port);
      dialSender(port);
    }

    const { rttsUs } = await sender.next('pinged');
    const pingCpuNs = relayPid === undefined ? undefined : cpuNs(relayPid) - pingsFrom!;
    const sorted = rttsUs.sort((a, b) => a - b);
    const endpointsNs = (): number => cpuNs(sender.proc.pid!) + cpuNs(receiver.proc.pid!);
    const endpointsBefore = endpointsNs();
    const before = relayPid === undefined ? 0 : cpuNs(relayPid);
    sender.send({ type: 'go' });
    const streamed = await sender.next('streamed');
    const cpuMs = relayPid === undefined ? undefined : (cpuNs(relayPid) - before) / 1e6;
    const endpointsMs = (endpointsNs() - endpointsBefore) / 1e6;
    const gib = streamed.bytes / (1024 * MiB);
    return {
      round,
      contender,
      mibps: streamed.bytes / MiB / (streamed.ms / 1000),
      ...(cpuMs === undefined ? {} : { cpuMsPerGiB: cpuMs / gib }),
      endpointsCpuMsPerGiB: endpointsMs / gib,
      ...(pingCpuNs === undefined ? {} : { cpuUsPerRoundTrip: pingCpuNs / 1e3 / (PING_COUNT + PING_WARMUP) }),
      p50Us: percentile(sorted, 50),
      p99Us: percentile(sorted, 99),
    };
  } finally {
    for (const c of children) c.kill();
    haproxyProc?.kill('SIGKILL');
  }
}


function summarise(samples: Sample[]): Summary[] {
  return [...new Set(samples.map((s) => s.contender))].map((contender) => {
    const mine = samples.filter((s) => s.contender === contender);
    const cpu = mine.flatMap((s) => (s.cpuMsPerGiB === undefined ? [] : [s.cpuMsPerGiB]));
    const cpuRt = mine.flatMap((s) => (s.cpuUsPerRoundTrip === undefined ? [] : [s.cpuUsPerRoundTrip]));
    const mibps = mine.map((s) => s.mibps);
    const p50 = mine.map((s) => s.p50Us);
    return {
      contender,
      mibps: median(mibps),
      ...(cpu.length ? { cpuMsPerGiB: median(cpu), cpuUsPerRoundTrip: median(cpuRt) } : {}),
      endpointsCpuMsPerGiB: median(mine.map((s) => s.endpointsCpuMsPerGiB)),
      p50Us: median(p50),
      p99Us: median(mine.map((s) => s.p99Us)),
      range: {
        mibps: [Math.min(...mibps), Math.max(...mibps)],
        p50Us: [Math.min(...p50), Math.max(...p50)],
        ...(cpu.length ? { cpuMsPerGiB: [Math.min(...cpu), Math.max(...cpu)] as [number, number] } : {}),
      },
    };
  });
}

/**
 * Per-round ratios: eps's sample against the other's in the same round, medians over rounds.
 * Samples of one round run seconds apart, so on a shared machine they see closer loads than the
 * medians over the whole run do; the two kinds of ratio disagreeing says the load moved.
 */
type PairedRatio = { throughput: number; p50: number; cpuPerGiB?: number; endpointsCpuPerGiB: number; rounds: number };

function pairedRatios(samples: Sample[], base: Contender = 'eps'): Record<string, PairedRatio> {
  const out: Record<string, PairedRatio> = {};
  const others = [...new Set(samples.map((s) => s.contender))].filter((c) => c !== base);
  for (const other of others) {
    const pairs = samples.flatMap((e) => {
      const o = e.contender === base ? samples.find((s) => s.contender === other && s.round === e.round) : undefined;
      return o ? [[e, o] as const] : [];
    });
    if (!pairs.length) continue;
    const cpu = pairs.flatMap(([e, o]) => (e.cpuMsPerGiB && o.cpuMsPerGiB ? [e.cpuMsPerGiB / o.cpuMsPerGiB] : []));
    out[other] = {
      throughput: median(pairs.map(([e, o]) => e.mibps / o.mibps)),
      p50: median(pairs.map(([e, o]) => e.p50Us / o.p50Us)),
      ...(cpu.length ? { cpuPerGiB: median(cpu) } : {}),
      endpointsCpuPerGiB: median(pairs.map(([e, o]) => e.endpointsCpuMsPerGiB / o.endpointsCpuMsPerGiB)),
      rounds: pairs.length,
    };
  }
  return out;
}

/** Every contender against the anchor, round by round (the anchor's per-round ratios inverted). */
function againstAnchor(samples: Sample[]): Record<string, PairedRatio> {
  const out: Record<string, PairedRatio> = {};
  for (const contender of new Set(samples.map((s) => s.contender))) {
    if (contender === ANCHOR) continue;
    const r = pairedRatios(samples, contender)[ANCHOR];
    if (r) out[contender] = r;
  }
  return out;
}

function ratios(summary: Summary[]): Record<string, Record<string, number>> {
  const eps = summary.find((s) => s.contender === 'eps');
  const out: Record<string, Record<string, number>> = {};
  if (!eps) return out;
  for (const anchor of summary) {
    if (anchor.contender === 'eps') continue;
    out[anchor.contender] = {
      throughput: eps.mibps / anchor.mibps,
      ...(anchor.cpuMsPerGiB && eps.cpuMsPerGiB ? { cpuPerGiB: eps.cpuMsPerGiB / anchor.cpuMsPerGiB } : {}),
      ...(anchor.cpuUsPerRoundTrip && eps.cpuUsPerRoundTrip ? { cpuPerRoundTrip: eps.cpuUsPerRoundTrip / anchor.cpuUsPerRoundTrip } : {}),
      p50: eps.p50Us / anchor.p50Us,
      p99: eps.p99Us / anchor.p99Us,
    };
  }
  return out;
}

async function main(): Promise<void> {
  const haproxy = ensureHaproxy();
  const haproxyVersion = execFileSync(haproxy, ['-v']).toString().split('\n')[0]!.trim();
  const samples: Sample[] = [];
  console.log(`relay bench: ${ROUNDS} rounds, ${STREAM_MIB} MiB stream, ${PING_COUNT} x ${PING_BYTES} B round trips; ${haproxyVersion}`);
  // BENCH_ONLY=eps,node-pipe narrows a run while working on one contender; the README's figures use all.
  const only = process.env.BENCH_ONLY?.split(',') ?? [...CONTENDERS];
  // eps-copy-<R>[s<S>] takes any sizes, beyond those listed.
  const running = [...CONTENDERS, ...EXTRA_CONTENDERS, ...only.filter((c) => COPY_SIZES.test(c))].filter((c, i, all) => only.includes(c) && all.indexOf(c) === i);
  for (let round = 0; round < ROUNDS; round++) {
    const order = running.map((_, i) => running[(i + round) % running.length]!);
    for (const contender of order) {
      const s = await runOne(contender, round, haproxy);
      samples.push(s);
      console.log(
        `  round ${round} ${contender.padEnd(15)} ${s.mibps.toFixed(0).padStart(5)} MiB/s` +
          `${s.cpuMsPerGiB === undefined ? '' : `, relay CPU ${s.cpuMsPerGiB.toFixed(0)} ms/GiB, ${s.cpuUsPerRoundTrip!.toFixed(1)} us/round trip`}` +
          `, endpoints ${s.endpointsCpuMsPerGiB.toFixed(0)} ms/GiB` +
          `; round trip p50 ${s.p50Us.toFixed(0)} us, p99 ${s.p99Us.toFixed(0)} us`,
      );
    }
  }
  const summary = summarise(samples);
  const r = ratios(summary);
  console.log('\nmedians over rounds (range of MiB/s):');
  for (const s of summary) {
    console.log(
      `  ${s.contender.padEnd(15)} ${s.mibps.toFixed(0).padStart(5)} MiB/s (${s.range.mibps[0].toFixed(0)}-${s.range.mibps[1].toFixed(0)})` +
        `  CPU ${s.cpuMsPerGiB === undefined ? '   -' : `${s.cpuMsPerGiB.toFixed(0).padStart(4)} (${s.range.cpuMsPerGiB![0].toFixed(0)}-${s.range.cpuMsPerGiB![1].toFixed(0)})`} ms/GiB` +
        `  endpoints ${s.endpointsCpuMsPerGiB!.toFixed(0).padStart(4)} ms/GiB` +
        ` ${s.cpuUsPerRoundTrip === undefined ? '   -' : s.cpuUsPerRoundTrip.toFixed(1).padStart(5)} us/round trip` +
        `  p50 ${s.p50Us.toFixed(0).padStart(4)} us (${s.range.p50Us[0].toFixed(0)}-${s.range.p50Us[1].toFixed(0)})  p99 ${s.p99Us.toFixed(0).padStart(5)} us`,
    );
  }
  console.log(`\neps against each (eps / other; throughput above 1 is better, CPU and latency below 1 are):`);
  for (const [anchor, x] of Object.entries(r)) {
    console.log(
      `  vs ${anchor.padEnd(15)} throughput ${x.throughput!.toFixed(2)}x` +
        `${x.cpuPerGiB === undefined ? '' : `  CPU/GiB ${x.cpuPerGiB.toFixed(2)}x  CPU/round trip ${x.cpuPerRoundTrip!.toFixed(2)}x`}  p50 ${x.p50!.toFixed(2)}x  p99 ${x.p99!.toFixed(2)}x`,
    );
  }
  const paired = pairedRatios(samples);
  console.log(`\neps against each, median of per-round ratios:`);
  for (const [other, x] of Object.entries(paired)) {
    console.log(
      `  vs ${other.padEnd(15)} throughput ${x.throughput.toFixed(2)}x${x.cpuPerGiB === undefined ? '' : `  CPU/GiB ${x.cpuPerGiB.toFixed(2)}x`}  p50 ${x.p50.toFixed(2)}x`,
    );
  }
  const anchored = againstAnchor(samples);
  console.log(`\neach against ${ANCHOR}, median of per-round ratios (relay CPU/GiB, endpoints' CPU/GiB):`);
  for (const [c, x] of Object.entries(anchored)) {
    console.log(
      `  ${c.padEnd(15)} throughput ${x.throughput.toFixed(2)}x${x.cpuPerGiB === undefined ? '' : `  CPU/GiB ${x.cpuPerGiB.toFixed(2)}x`}  endpoints ${x.endpointsCpuPerGiB.toFixed(2)}x  p50 ${x.p50.toFixed(2)}x  (${x.rounds} rounds)`,
    );
  }
  const a = r[ANCHOR];
  if (a) console.log(
    `\ntargets (issue 10): throughput >= 1.10x ${ANCHOR}: ${a.throughput!.toFixed(2)}x; CPU/GiB <= 1.00x: ${a.cpuPerGiB!.toFixed(2)}x; p50 <= 1.10x: ${a.p50!.toFixed(2)}x`,
  );

  const at = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const record = {
    bench: 'relay',
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, haproxy: haproxyVersion },
    config: { rounds: ROUNDS, streamMiB: STREAM_MIB, pings: PING_COUNT, pingWarmup: PING_WARMUP, pingBytes: PING_BYTES, anchor: ANCHOR },
    samples,
    summary,
    ratios: r,
    pairedRatios: paired,
    againstAnchor: anchored,
  };
  writeFileSync(join(dir, `relay-${at}.json`), `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(join(dir, `relay-${at}.svg`), relayChart(summary, record.at));
  console.log(`\nwrote bench/results/relay-${at}.json and .svg`);
}

await main();
