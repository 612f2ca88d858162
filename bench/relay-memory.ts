import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RoleChild } from './role-child.js';
import type { FromChild, HeapSpaces, Pass, ToChild } from './relay-memory-roles.js';

// RSS per idle spliced session (issue 10, part 4): SESSIONS sessions through each relay, each in
// processes of its own (the relay; side A's dialers; side B, which echoes), inspector off as in
// production. Each session sends one message from A, echoed by B, then stays open and idle. The
// relay's RSS (VmRSS from /proc) is read before the first session and SETTLE_MS after the last;
// the difference divided by the sessions is the figure. Variants of the project's relay:
//   eps-idle   a 1-byte message each way (the session is spliced, nothing bulk went through it)
//   eps-bulk   one BENCH_MEMORY_BULK_KIB (default 256) KiB message each way, then idle
// Anchors: haproxy `mode tcp` and a Node `a.pipe(b)` relay, with the 1-byte and the bulk message.
//
//   node dist/bench/relay-memory.js     (BENCH_MEMORY_SESSIONS, BENCH_ONLY=eps-idle,haproxy-bulk,... override)
//
// Writes bench/results/relay-memory-<time>.json.

// 9,900 rather than 10,000: a session is two sockets in the relay, and this container's hard limit
// of 20,000 descriptors per process cannot be raised (prlimit is refused without CAP_SYS_RESOURCE).
const SESSIONS = Number(process.env.BENCH_MEMORY_SESSIONS ?? 9_900);
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
const CONTENDERS = ['eps-idle', 'eps-bulk', 'eps-js-idle', 'eps-js-bulk', 'haproxy-idle', 'haproxy-bulk', 'node-pipe-idle', 'node-pipe-bulk'];

/** A role process of this bench, speaking relay-memory-roles' messages. */
class Child extends RoleChild<ToChild, FromChild> {
  constructor(proc: ChildProcess) {
    super(proc, STEP_TIMEOUT_MS);
  }
}

// eps-* is the native relay (and fails if the addon is not built), eps-js-* the JS one.
const forkRole = (args: string[], env: NodeJS.ProcessEnv = process.env): Child =>
  new Child(fork(ROLES, args, { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: args[0]!.startsWith('relay-') ? ['--expose-gc', '--expose-internals'] : [] }));
const relayEnv = (contender: string): NodeJS.ProcessEnv => ({ ...process.env, EPS_SPLICE: contender.startsWith('eps-js') ? 'js' : 'native' });

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

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

export interface MemorySample {
  contender: string;
  sessions: number;
  messageBytes: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** RSS after QUIET_MS more of quiet, and the same per session. */
  rssQuietKiB: number;
  kibPerSessionQuiet: number;
  kibPerSession: number;
  /** The Node relays' own view once idle (heap, external, array buffers). */
  usage?: NodeJS.MemoryUsage;
  /** Their heap after a forced full collection: what the sessions retain. */
  heapAfterGc?: number;
  /** Their RSS right after that collection, and the same per session: without the garbage not yet collected. */
  rssAfterGcKiB?: number;
  kibPerSessionAfterGc?: number;
  /** Timers alive in the relay with every session idle, unref'd ones (socket timeouts) included. */
  timers?: number;
  /** Where the heap's committed memory is, before the forced collection. */
  spaces?: HeapSpaces;
  setupMs: number;
}

async function runOne(contender: string, haproxy: string): Promise<MemorySample> {
  const messageBytes = contender.endsWith('-bulk') ? BULK_BYTES : 1;
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
      haproxyProc = spawn(haproxy, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
      relayPid = haproxyProc.pid!;
      await waitForListener(port);
    } else {
      relay = contender.startsWith('eps') ? forkRole(['relay-eps'], relayEnv(contender)) : forkRole(['relay-pipe', String(bPort)]);
      children.push(relay);
      relayPid = relay.proc.pid!;
      ({ port } = await relay.next('listening'));
    }
    await new Promise((r) => setTimeout(r, 500));
    const rssBeforeKiB = rssKiB(relayPid);
    const started = Date.now();
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
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const rssAfterKiB = rssKiB(relayPid);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const rssQuietKiB = rssKiB(relayPid);
    let memory: Pick<MemorySample, 'usage' | 'heapAfterGc' | 'rssAfterGcKiB' | 'kibPerSessionAfterGc' | 'timers' | 'spaces'> | undefined;
    if (relay) {
      relay.send({ type: 'memory' });
      const { usage, heapAfterGc, rssAfterGc, timers, spaces } = await relay.next('memory');
      const rssAfterGcKiB = rssAfterGc / 1024;
      memory = { usage, heapAfterGc, rssAfterGcKiB, kibPerSessionAfterGc: (rssAfterGcKiB - rssBeforeKiB) / SESSIONS, timers, spaces };
    }
    return { contender, sessions: SESSIONS, messageBytes, rssBeforeKiB, rssAfterKiB, kibPerSession: (rssAfterKiB - rssBeforeKiB) / SESSIONS, rssQuietKiB, kibPerSessionQuiet: (rssQuietKiB - rssBeforeKiB) / SESSIONS, ...memory, setupMs };
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
  console.log(`relay memory bench: ${SESSIONS} idle sessions per contender, bulk message ${BULK_BYTES / 1024} KiB each way; ${haproxyVersion}`);
  const samples: MemorySample[] = [];
  for (const contender of running) {
    const s = await runOne(contender, haproxy);
    samples.push(s);
    const u = s.usage ? `  (heap ${(s.usage.heapUsed / 2 ** 20).toFixed(0)} MiB used of ${(s.usage.heapTotal / 2 ** 20).toFixed(0)}, external ${(s.usage.external / 2 ** 20).toFixed(0)} MiB, array buffers ${(s.usage.arrayBuffers / 2 ** 20).toFixed(0)} MiB; heap after a full GC ${(s.heapAfterGc! / 2 ** 20).toFixed(0)} MiB, RSS then ${s.kibPerSessionAfterGc!.toFixed(1)} KiB per session; ${s.timers} timers)` : '';
    console.log(`  ${contender.padEnd(15)} RSS ${(s.rssBeforeKiB / 1024).toFixed(0)} -> ${(s.rssAfterKiB / 1024).toFixed(0)} MiB: ${s.kibPerSession.toFixed(1)} KiB per idle session, ${s.kibPerSessionQuiet.toFixed(1)} after ${QUIET_MS / 1000} s more${u}`);
  }
  const per = Object.fromEntries(samples.map((s) => [s.contender, s.kibPerSession]));
  const ratios: Record<string, Record<string, number>> = {};
  for (const [relay, v] of ['eps', 'eps-js'].flatMap((r) => ['idle', 'bulk'].map((v) => [r, v] as const))) {
    const eps = per[`${relay}-${v}`];
    if (eps === undefined) continue;
    ratios[`${relay}-${v}`] = {
      ...(per[`haproxy-${v}`] ? { haproxy: eps / per[`haproxy-${v}`]! } : {}),
      ...(per[`node-pipe-${v}`] ? { nodePipe: eps / per[`node-pipe-${v}`]! } : {}),
    };
    console.log(`  ${relay}-${v}: ${Object.entries(ratios[`${relay}-${v}`]!).map(([k, r]) => `${r.toFixed(2)}x ${k}`).join(', ')}; target <= 10 KiB: ${eps <= 10 ? 'met' : 'missed'}`);
  }
  const at = new Date().toISOString().replace(/[:.]/g, '-');
  const dir = join(root, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const record = {
    bench: 'relay-memory',
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, haproxy: haproxyVersion },
    config: { sessions: SESSIONS, bulkBytes: BULK_BYTES, batch: BATCH, settleMs: SETTLE_MS, quietMs: QUIET_MS },
    samples,
    ratios,
  };
  writeFileSync(join(dir, `relay-memory-${at}.json`), `${JSON.stringify(record, null, 2)}\n`);
  console.log(`wrote bench/results/relay-memory-${at}.json`);
}

await main();
