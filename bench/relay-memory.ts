import { execFileSync, fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROXY_NODE_FLAGS } from '../src/proxy/node-flags.js';
import { barChart } from './bar-chart.js';
import { residentKiB, type ResidentKiB } from './proc-memory.js';
import { RoleChild } from './role-child.js';
import type { FromChild, HeapSpaces, Pass, ToChild } from './relay-memory-roles.js';

// RSS per idle spliced session (issue 10, part 4): SESSIONS sessions through each relay, each in
// processes of its own (the relay; side A's dialers; side B, which echoes), inspector off as in
// production. Each session sends one message from A, echoed by B, then stays open and idle. The
// relay's RSS (VmRSS from /proc) is read before the first session, SETTLE_MS after the last and
// QUIET_MS later; each difference divided by the sessions is a figure, split by kind of mapping
// (proc-memory.ts) and, for the Node relays, set beside their heap. Variants of the project's relay:
//   eps-idle   a 1-byte message each way (the session is spliced, nothing bulk went through it)
//   eps-bulk   one BENCH_MEMORY_BULK_KIB (default 256) KiB message each way, then idle
//   eps-untuned-*  the same without the proxy's Node flags (src/proxy/node-flags.ts): V8's defaults
//   eps-js-*   the JS relay (EPS_SPLICE=js)
// Anchors: haproxy `mode tcp` and a Node `a.pipe(b)` relay, with the 1-byte and the bulk message.
//
//   node dist/bench/relay-memory.js     (BENCH_MEMORY_SESSIONS, BENCH_ONLY=eps-idle,haproxy-bulk,... override)
//
// Writes bench/results/relay-memory-<time>.json.

// 10,000 sessions, as issue 10 states the target, when the relay may open two descriptors per
// session and a reserve (its own, and the native relay's spare pipes, two descriptors each); below
// that hard limit, as many as it allows (see sessionCount).
const WANTED_SESSIONS = Number(process.env.BENCH_MEMORY_SESSIONS ?? 10_000);
const RESERVED_FDS = 200;
const BULK_BYTES = Number(process.env.BENCH_MEMORY_BULK_KIB ?? 256) * 1024;
const BATCH = 250;
const SETTLE_MS = 3_000;
// RSS is read again after this much more quiet: a Node relay's heap grew while the sessions were
// set up (their handshakes' garbage), and V8 gives the empty part back only once it sees the
// process idle (its memory reducer). Idle sessions last minutes to hours: both figures are real.
const QUIET_MS = Number(process.env.BENCH_MEMORY_QUIET_MS ?? 30_000);
const STEP_TIMEOUT_MS = 120_000;
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const ROLES = join(here, 'relay-memory-roles.js');
const CONTENDERS = ['eps-idle', 'eps-bulk', 'eps-untuned-idle', 'eps-untuned-bulk', 'eps-js-idle', 'eps-js-bulk', 'haproxy-idle', 'haproxy-bulk', 'node-pipe-idle', 'node-pipe-bulk'];

/** A role process of this bench, speaking relay-memory-roles' messages. */
class Child extends RoleChild<ToChild, FromChild> {
  constructor(proc: ChildProcess) {
    super(proc, STEP_TIMEOUT_MS);
  }
}

/**
 * How many sessions fit, and the command prefix that lets the relays open that many descriptors.
 * Node raises its soft limit to the hard one at start, so the hard limit is what counts: a
 * process with CAP_SYS_RESOURCE raises it for the relays through prlimit(1); without it (this
 * development container), the bench runs as many sessions as the inherited hard limit allows and
 * says so.
 */
function sessionCount(): { sessions: number; prefix: string[]; why?: string } {
  const hard = Number(/Max open files\s+\S+\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'))![1]);
  const needed = 2 * WANTED_SESSIONS + RESERVED_FDS;
  if (hard >= needed) return { sessions: WANTED_SESSIONS, prefix: [] };
  const prefix = ['prlimit', `--nofile=${needed}:${needed}`];
  if (spawnSync(prefix[0]!, [...prefix.slice(1), 'true']).status === 0) return { sessions: WANTED_SESSIONS, prefix };
  const sessions = Math.floor((hard - RESERVED_FDS) / 2);
  return { sessions, prefix: [], why: `hard descriptor limit ${hard} and no CAP_SYS_RESOURCE to raise it (prlimit refused): ${sessions} sessions, not ${WANTED_SESSIONS}` };
}
const { sessions: SESSIONS, prefix: LIMIT_PREFIX, why: FEWER_SESSIONS } = sessionCount();
// The project's relays run with the Node flags the proxy is started with in production
// (BENCH_EPS_NODE_FLAGS overrides them, to try others); eps-untuned-* with Node's defaults.
const EPS_NODE_FLAGS = process.env.BENCH_EPS_NODE_FLAGS?.split(' ').filter(Boolean) ?? [...PROXY_NODE_FLAGS];

// eps-* is the native relay (and fails if the addon is not built), eps-js-* the JS one. A relay
// starts through LIMIT_PREFIX when it needs a higher descriptor limit (fork runs execPath with
// execArgv before the module; the IPC channel's descriptor survives the exec).
const forkRole = (args: string[], env: NodeJS.ProcessEnv = process.env, flags: string[] = []): Child => {
  const node = args[0]!.startsWith('relay-') ? ['--expose-gc', '--expose-internals', ...flags] : [];
  const [execPath, execArgv] = LIMIT_PREFIX.length > 0 ? [LIMIT_PREFIX[0]!, [...LIMIT_PREFIX.slice(1), process.execPath, ...node]] : [process.execPath, node];
  return new Child(fork(ROLES, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execPath, execArgv }));
};
const relayEnv = (contender: string): NodeJS.ProcessEnv => ({ ...process.env, EPS_SPLICE: contender.startsWith('eps-js') ? 'js' : 'native' });
const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;
/** CPU time (user + system, all threads) the process has used, in ms. */
const cpuMs = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};


async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitForListener(port: number): Promise<void> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const deadline = Date.now() + 10_000;
  while (!readFileSync('/proc/net/tcp', 'utf8').split('\n').some((l) => { const f = l.trim().split(/\s+/); return f[1] === local && f[3] === '0A'; })) {
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One reading of the relay's memory. */
export interface Reading {
  /** VmRSS by kind of mapping (proc-memory.ts). */
  resident: ResidentKiB;
  /** The Node relays' own view: heap committed and used, per V8 space. */
  usage?: NodeJS.MemoryUsage;
  spaces?: HeapSpaces;
}

export interface MemorySample {
  contender: string;
  sessions: number;
  messageBytes: number;
  /** Node flags the relay ran with, as the proxy's start sets them (none for the anchors). */
  nodeFlags: string[];
  /** Descriptors the relay held with every session idle. */
  fds: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** RSS after QUIET_MS more of quiet, and the same per session. */
  rssQuietKiB: number;
  kibPerSessionQuiet: number;
  kibPerSession: number;
  before: Reading;
  after: Reading;
  quiet: Reading;
  /** Their heap after a forced full collection: what the sessions retain. */
  heapAfterGc?: number;
  /** Their RSS right after that collection, and the same per session: without the garbage not yet collected. */
  rssAfterGcKiB?: number;
  kibPerSessionAfterGc?: number;
  /** Timers alive in the relay with every session idle, unref'd ones (socket timeouts) included. */
  timers?: number;
  setupMs: number;
  /** The relay's CPU time while the sessions were set up (handshakes, proofs, GC), per session. */
  cpuMsPerSession: number;
}

async function read(pid: number, relay: Child | undefined): Promise<Reading> {
  const resident = residentKiB(pid);
  if (!relay) return { resident };
  relay.send({ type: 'memory', gc: false });
  const { usage, spaces } = await relay.next('memory');
  return { resident, usage, spaces };
}

async function runOne(contender: string, haproxy: string): Promise<MemorySample> {
  const messageBytes = contender.endsWith('-bulk') ? BULK_BYTES : 1;
  const nodeFlags = contender.startsWith('eps') && !contender.startsWith('eps-untuned') ? EPS_NODE_FLAGS : [];
  const children: Child[] = [];
  let haproxyProc: ChildProcess | undefined;
  try {
    const b = forkRole(['side-b']);
    const a = forkRole(['side-a']);
    children.push(b, a);
    const { port: bPort } = await b.next('listening');
    await a.next('listening');
    let relay: Child | undefined;
    let relayPid: number;
    let port: number;
    if (contender.startsWith('haproxy')) {
      port = await freePort();
      const cfg = join(tmpdir(), `eps-bench-haproxy-memory-${process.pid}.cfg`);
      // maxconn counts sessions; haproxy wants two descriptors per session and a few more.
      writeFileSync(cfg, ['global', `  maxconn ${SESSIONS + 20}`, 'defaults', '  mode tcp', `  maxconn ${SESSIONS + 20}`, '  timeout connect 5s', '  timeout client 600s', '  timeout server 600s',
        'frontend relay', `  bind 127.0.0.1:${port}`, '  backlog 4096', '  default_backend receiver', 'backend receiver', `  server b 127.0.0.1:${bPort} maxconn 100000`, ''].join('\n'));
      const [cmd, ...pre] = [...LIMIT_PREFIX, haproxy];
      haproxyProc = spawn(cmd!, [...pre, '-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
      relayPid = haproxyProc.pid!;
      await waitForListener(port);
    } else {
      relay = contender.startsWith('eps') ? forkRole(['relay-eps'], relayEnv(contender), nodeFlags) : forkRole(['relay-pipe', String(bPort)]);
      children.push(relay);
      relayPid = relay.proc.pid!;
      ({ port } = await relay.next('listening'));
    }
    await new Promise((r) => setTimeout(r, 500));
    const before = await read(relayPid, relay);
    const started = Date.now();
    const cpuBefore = cpuMs(relayPid);
    for (let done = 0; done < SESSIONS; done += BATCH) {
      const count = Math.min(BATCH, SESSIONS - done);
      let passes: Pass[] | undefined;
      if (relay && contender.startsWith('eps')) {
        relay.send({ type: 'open', count });
        const bPasses = (await relay.next('passes')).passes;
        b.send({ type: 'dial', host: '127.0.0.1', port, count, passes: bPasses, payloadBytes: 0 });
        await b.next('dialed');
        passes = (await relay.next('passes')).passes;
      }
      a.send({ type: 'dial', host: '127.0.0.1', port, count, ...(passes ? { passes } : {}), payloadBytes: messageBytes });
      await a.next('dialed');
    }
    const setupMs = Date.now() - started;
    const cpuMsPerSession = (cpuMs(relayPid) - cpuBefore) / SESSIONS;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = await read(relayPid, relay);
    const fds = openFds(relayPid);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const quiet = await read(relayPid, relay);
    let collected: Pick<MemorySample, 'heapAfterGc' | 'rssAfterGcKiB' | 'kibPerSessionAfterGc' | 'timers'> | undefined;
    const [rssBeforeKiB, rssAfterKiB, rssQuietKiB] = [before, after, quiet].map((r) => r.resident.rss) as [number, number, number];
    if (relay) {
      relay.send({ type: 'memory', gc: true });
      const { heapAfterGc, rssAfterGc, timers } = await relay.next('memory');
      const rssAfterGcKiB = rssAfterGc! / 1024;
      collected = { heapAfterGc, rssAfterGcKiB, kibPerSessionAfterGc: (rssAfterGcKiB - rssBeforeKiB) / SESSIONS, timers };
    }
    return {
      contender, sessions: SESSIONS, messageBytes, nodeFlags, fds, rssBeforeKiB, rssAfterKiB, kibPerSession: (rssAfterKiB - rssBeforeKiB) / SESSIONS, rssQuietKiB,
      kibPerSessionQuiet: (rssQuietKiB - rssBeforeKiB) / SESSIONS, before, after, quiet, ...collected, setupMs, cpuMsPerSession,
    };
  } finally {
    for (const c of children) c.proc.kill('SIGKILL');
    haproxyProc?.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

async function main(): Promise<void> {
  const haproxy = execFileSync(join(root, 'scripts', 'ensure-haproxy.sh'), { stdio: ['ignore', 'pipe', 'inherit'] }).toString().trim();
  const haproxyVersion = execFileSync(haproxy, ['-v']).toString().split('\n')[0]!.trim();
  const only = process.env.BENCH_ONLY?.split(',').filter((c) => CONTENDERS.includes(c)) ?? [];
  const running = only.length > 0 ? only : CONTENDERS;
  const load = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`relay memory bench: ${SESSIONS} idle sessions per contender${FEWER_SESSIONS ? ` (${FEWER_SESSIONS})` : ''}, bulk message ${BULK_BYTES / 1024} KiB each way; ${haproxyVersion}; load ${load()}`);
  const samples: MemorySample[] = [];
  const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);
  const perSession = (kib: number): string => (kib / SESSIONS).toFixed(1);
  for (const contender of running) {
    const s = await runOne(contender, haproxy);
    samples.push(s);
    console.log(`  ${contender.padEnd(15)} RSS ${(s.rssBeforeKiB / 1024).toFixed(0)} -> ${(s.rssAfterKiB / 1024).toFixed(0)} MiB: ${s.kibPerSession.toFixed(1)} KiB per idle session, ${s.kibPerSessionQuiet.toFixed(1)} after ${QUIET_MS / 1000} s more; ${s.fds} descriptors; set up in ${(s.setupMs / 1000).toFixed(1)} s, relay CPU ${s.cpuMsPerSession.toFixed(2)} ms per session; load ${load()}`);
    for (const [when, r] of [['after', s.after], ['quiet', s.quiet]] as const) {
      const d = (k: keyof ResidentKiB): string => perSession(r.resident[k] - s.before.resident[k]);
      const heap = r.usage && s.before.usage ? `; heap ${mib(r.usage.heapUsed)} MiB used of ${mib(r.usage.heapTotal)} (${perSession((r.usage.heapTotal - s.before.usage.heapTotal) / 1024)} KiB per session committed), new space ${r.spaces!.new_space![0].toFixed(0)} MiB, old ${r.spaces!.old_space![0].toFixed(0)} MiB` : '';
      console.log(`    ${when.padEnd(5)} per session KiB: brk ${d('brk')}, thread arenas ${d('arenas')}, other anonymous ${d('anonymous')}, files ${d('files')}${heap}`);
    }
    if (s.heapAfterGc !== undefined) console.log(`    then a full GC: heap ${mib(s.heapAfterGc)} MiB, RSS ${s.kibPerSessionAfterGc!.toFixed(1)} KiB per session; ${s.timers} timers`);
  }
  const per = Object.fromEntries(samples.map((s) => [s.contender, [s.kibPerSession, s.kibPerSessionQuiet] as const]));
  const ratios: Record<string, Record<string, [after: number, quiet: number]>> = {};
  for (const [relay, v] of ['eps', 'eps-untuned', 'eps-js'].flatMap((r) => ['idle', 'bulk'].map((v) => [r, v] as const))) {
    const eps = per[`${relay}-${v}`];
    if (eps === undefined) continue;
    const against = (anchor: string): Record<string, [number, number]> => {
      const a = per[`${anchor}-${v}`];
      return a ? { [anchor]: [eps[0] / a[0], eps[1] / a[1]] } : {};
    };
    ratios[`${relay}-${v}`] = { ...against('haproxy'), ...against('node-pipe') };
    const anchors = Object.entries(ratios[`${relay}-${v}`]!).map(([k, [r, q]]) => `${r.toFixed(2)}x ${k} (${q.toFixed(2)}x after ${QUIET_MS / 1000} s); `).join('');
    console.log(`  ${relay}-${v}: ${anchors}target <= 10 KiB: ${eps[0] <= 10 ? 'met' : 'missed'} (${eps[1] <= 10 ? 'met' : 'missed'} after ${QUIET_MS / 1000} s)`);
  }
  const at = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const record = {
    bench: 'relay-memory',
    at: new Date().toISOString(),
    machine: { load: load(), cpus: cpus().length, model: cpus()[0]?.model, node: process.version, haproxy: haproxyVersion },
    config: { sessions: SESSIONS, ...(FEWER_SESSIONS ? { fewerSessions: FEWER_SESSIONS } : {}), epsNodeFlags: EPS_NODE_FLAGS, bulkBytes: BULK_BYTES, batch: BATCH, settleMs: SETTLE_MS, quietMs: QUIET_MS },
    samples,
    ratios,
  };
  writeFileSync(join(dir, `relay-memory-${at}.json`), `${JSON.stringify(record, null, 2)}\n`);
  const panel = (title: string, value: (s: MemorySample) => number) => ({
    title,
    bars: samples.map((s) => ({ label: s.contender, value: value(s), ours: s.contender.startsWith('eps') })),
    target: { value: 10, label: 'target: 10 KiB' },
  });
  const chart = barChart(`relay memory bench ${record.at}: RSS per session at ${SESSIONS} sessions; EPS in red`, [
    panel('KiB per session, right after set-up', (s) => s.kibPerSession),
    panel(`KiB per session, ${QUIET_MS / 1000} s later`, (s) => s.kibPerSessionQuiet),
  ]);
  writeFileSync(join(dir, `relay-memory-${at}.svg`), chart);
  console.log(`wrote bench/results/relay-memory-${at}.json and .svg`);
}

await main();
