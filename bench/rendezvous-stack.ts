import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/core/package-root.js';
import { waitForPort } from '../src/devstack/stack.js';
import { writeNatsConfig } from '../src/natsconf/generate.js';
import { writeClusterConfigs } from '../src/natsconf/cluster.js';
import { connectBus } from '../src/core/nats.js';
import { readTlsMaterial } from '../src/core/tls-material.js';
import { waitForJetStream } from '../src/devstack/jetstream-ready.js';
import { pino } from 'pino';

// What the rendezvous benches share: a real nats-server with the generated TLS config and
// permissions, real `games run` processes (the CLI from dist/), autocannon rows, the result file.

export const BENCH_BUCKET = 'BENCH_GAMES';
const NATS_BIN = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => existsSync(p)) ?? 'nats-server';
export const CERTS = join(packageRoot, 'settings/dev/certs');

// autocannon ships no types; this is the slice of its programmatic API used here.
export interface CannonRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}
interface CannonClient {
  setRequests(requests: CannonRequest[]): void;
}
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number; max: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: {
  url: string;
  connections: number;
  duration: number;
  requests?: CannonRequest[];
  setupClient?: (client: CannonClient) => void;
}) => Promise<CannonResult>;

/** A port below Linux's ephemeral range, free a moment ago (bound later by a child). */
export async function freePort(): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(undefined));
      srv.listen(port, '127.0.0.1', () => {
        const { port: bound } = srv.address() as { port: number };
        srv.close(() => resolve(bound));
      });
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await tryListen(20_000 + Math.floor(Math.random() * 12_000));
    if (port !== undefined) return port;
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];

export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill(signal);
  });
}

export async function cleanup(): Promise<void> {
  // games first (it drains its NATS connection), then nats-server.
  for (const child of [...children].reverse()) await stopChild(child, 'SIGTERM');
  children.length = 0;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => void cleanup().finally(() => process.exit(130)));
}

export async function startNats(): Promise<string> {
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  dirs.push(store);
  // The bus as deployed: TLS, client certificates, the generated permissions.
  const config = join(store, 'nats.conf');
  writeNatsConfig(config, { settings: join(packageRoot, 'settings/dev'), host: '127.0.0.1', port, storeDir: join(store, 'js'), extraBuckets: [BENCH_BUCKET] });
  const child = spawn(NATS_BIN, ['-c', config], { stdio: 'ignore' });
  children.push(child);
  await waitForPort(port, 10_000);
  return `nats://127.0.0.1:${port}`;
}

/**
 * A nats-server cluster of `size` nodes with the configuration `nats-config --cluster` generates,
 * ready for JetStream; returns the nodes' URLs, the first node's first (games connects there).
 */
export async function startNatsCluster(size: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-cluster-'));
  dirs.push(dir);
  const ports = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), route: await freePort() });
  const { nodes } = writeClusterConfigs(
    { size, hosts: ['127.0.0.1'], clientPort: 0, routePort: 0, ports, storeRoot: join(dir, 'js'), outDir: dir },
    { settings: join(packageRoot, 'settings/dev'), extraBuckets: [BENCH_BUCKET] },
  );
  for (const n of nodes) children.push(spawn(NATS_BIN, ['-c', n.file], { stdio: 'ignore' }));
  await Promise.all(nodes.map((n) => waitForPort(n.clientPort, 10_000)));
  const url = nodes.map((n) => `nats://127.0.0.1:${n.clientPort}`).join(',');
  const admin = await connectBus(
    { url, name: 'bench-admin', tls: readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/nats-admin-games.crt`, key: `${CERTS}/nats-admin-games.key` }) },
    pino({ level: 'silent' }),
  );
  await waitForJetStream(admin);
  await admin.close();
  return url;
}

export interface BenchGames {
  base: string;
  pid: number;
  log: () => string;
  stop: () => Promise<void>;
}

/** One `games run` on the bench bucket; `games` is merged into its games settings. */
export async function startGames(natsUrl: string, games: Record<string, unknown> = {}): Promise<BenchGames> {
  const httpPort = await freePort();
  const stunPort = await freePort();
  const folder = mkdtempSync(join(tmpdir(), 'bench-games-role-'));
  dirs.push(folder);
  writeFileSync(
    join(folder, 'games.yml'),
    [
      `name: games-bench-${httpPort}`,
      // The default limit (300 a minute per address) would turn the bench into a 429 counter.
      `http: { host: 127.0.0.1, port: ${httpPort}, rateLimit: { max: 1000000000, windowMs: 60000 } }`,
      `stun: { host: 127.0.0.1, port: ${stunPort} }`,
      // The first URL first: on a cluster, games stays on the node it was given.
      `nats: { url: "${natsUrl}", randomize: false }`,
      `tls: { ca: ${CERTS}/root.crt, cert: ${CERTS}/games-1.crt, key: ${CERTS}/games-1.key }`,
      // Hosts that stop polling between rows must not expire mid-bench; registrations come from one address.
      `games: ${JSON.stringify({ bucket: BENCH_BUCKET, hostPollTimeoutMs: 600_000, sweepIntervalMs: 5000, maxGames: 1_000_000, registerLimit: { max: 1_000_000_000, windowMs: 60_000 }, ...games })}`,
    ].join('\n'),
  );
  let output = '';
  // BENCH_CPU_PROF=<dir>: the games process writes a .cpuprofile there on exit (read it with
  // dist/bench/cpuprofile-top.js <dir>; roles.json names the process).
  const prof = process.env.BENCH_CPU_PROF;
  const child = spawn(process.execPath, [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), 'dist/src/cli/games.js', 'run'], {
    env: { ...process.env, GAMES_SETTINGS: folder, NATS_URL: natsUrl, LOG_FORMAT: 'json', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  if (prof) {
    mkdirSync(prof, { recursive: true });
    writeFileSync(join(prof, 'roles.json'), JSON.stringify({ [String(child.pid)]: 'games' }));
  }
  // Drained (a full pipe would stall the server), keeping only the tail for error messages.
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8_192));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  try {
    await waitForPort(httpPort, 10_000);
  } catch (err) {
    throw new Error(`games run did not listen: ${(err as Error).message}\n${output}`);
  }
  return {
    base: `http://127.0.0.1:${httpPort}`,
    pid: child.pid!,
    log: () => output,
    stop: async () => {
      await stopChild(child);
      children.splice(children.indexOf(child), 1);
    },
  };
}

/** Resident set size of a process, from /proc (Linux). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`POST ${path} ${JSON.stringify(body)} -> ${res.status} ${text}`);
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  total: number;
  errors: number;
  non2xx: number;
  codes: string;
}

/** One autocannon row; each connection starts at a different request of the list and walks it. */
export async function run(name: string, base: string, requests: CannonRequest[], connections: number, durationS: number): Promise<Row> {
  let next = 0;
  const r = await autocannon({
    url: base,
    connections,
    duration: durationS,
    requests,
    // Round-robin with a different starting request per connection, so connection i is host of
    // game i first instead of all of them piling onto game 0 in lock step.
    setupClient: (client) => {
      const offset = next++ % requests.length;
      client.setRequests([...requests.slice(offset), ...requests.slice(0, offset)]);
    },
  });
  const codes = Object.entries(r.statusCodeStats)
    .map(([code, s]) => `${code}:${s.count}`)
    .join(' ');
  const row = { name, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, total: r.requests.total, errors: r.errors + r.timeouts, non2xx: r.non2xx, codes };
  console.log(
    `${name.padEnd(26)} ${row.rps.toFixed(0).padStart(6)} req/s  p50 ${row.p50.toFixed(1).padStart(6)} ms  p99 ${row.p99.toFixed(1).padStart(6)} ms  ` +
      `${row.total} requests, ${row.errors} errors, ${row.non2xx} non-2xx  [${codes}]`,
  );
  return row;
}

/** Writes bench/results/<name>-<time>.json, and the run's chart as .svg beside it when given. */
export function writeResult(name: string, record: unknown, svg?: string): string {
  mkdirSync(join(packageRoot, 'bench', 'results'), { recursive: true });
  const file = join('bench', 'results', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(join(packageRoot, file), JSON.stringify(record, null, 1));
  if (svg !== undefined) writeFileSync(join(packageRoot, file.replace(/\.json$/, '.svg')), svg);
  return file;
}

/** Guests each bench game gets started (the host poll then returns them). */
export const GUESTS_PER_GAME = 2;
const json = { 'content-type': 'application/json' };

/** Registers `count` games, each with its host's candidates and a few guests started; returns the host poll and guest start bodies. */
export async function setupGames(base: string, prefix: string, count: number): Promise<{ polls: CannonRequest[]; starts: CannonRequest[] }> {
  const polls: CannonRequest[] = [];
  const starts: CannonRequest[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${i}`;
    const host = `host-${prefix}-${i}`;
    const hostBody = { name, peerId: host, addresses: [`10.0.${i % 250}.1:${40_000 + i}`, `203.0.113.${i % 250}:${50_000 + i}`] };
    await post(base, '/games/register', { name, peerId: host });
    await post(base, '/games/poll', hostBody);
    for (let g = 0; g < GUESTS_PER_GAME; g++) {
      const guestBody = { name, peerId: `guest-${g}-${prefix}-${i}`, addresses: [`198.51.100.${g + 1}:${30_000 + i}`] };
      await post(base, '/games/start', guestBody);
      starts.push({ method: 'POST', path: '/games/start', headers: json, body: JSON.stringify(guestBody) });
    }
    const check = await post(base, '/games/poll', hostBody);
    if (check.body?.status !== 1 || check.body?.guests?.length !== GUESTS_PER_GAME) throw new Error(`game ${name} not ready: ${JSON.stringify(check.body)}`);
    polls.push({ method: 'POST', path: '/games/poll', headers: json, body: JSON.stringify(hostBody) });
  }
  return { polls, starts };
}
