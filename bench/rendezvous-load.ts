import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../src/core/package-root.js';
import { waitForPort } from '../src/devstack/stack.js';
import { writeNatsConfig } from '../src/natsconf/generate.js';

// What a host poll costs under load: one real `games run` process (the CLI from dist/, as a user
// starts it) on a real nats-server with JetStream, hammered by autocannon. Every POST /games/poll
// is a KV read-modify-write of the game's record; the baseline, in the same run and on the same
// server, is GET /openapi.json, which goes through the same fastify, rate limiter and sockets but
// never touches NATS. The ratio is what the KV round trips (and contention between them) cost.
// GET /games/:name (one KV get, no write) sits between the two. Note the baseline is not free:
// it serializes the whole OpenAPI document, so the ratios understate the KV's share a little.
//
// Two poll scenarios: "spread" has one game per connection (each connection starts on a different
// game and walks the list, so two hosts rarely write the same record at once, as in real life
// where each game has one host polling about once a second); "hot" has a few games shared by all
// connections, so writes to the same record conflict and the service's retry loop shows.

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const SPREAD_GAMES = CONNECTIONS;
const HOT_GAMES = Number(process.env.BENCH_HOT_GAMES ?? 5);
const GUESTS_PER_GAME = 2;
const NATS_BIN = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => existsSync(p)) ?? 'nats-server';
const CERTS = join(packageRoot, 'settings/dev/certs');

// autocannon ships no types; this is the slice of its programmatic API used here.
interface CannonRequest {
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
async function freePort(): Promise<number> {
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

async function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
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

async function cleanup(): Promise<void> {
  // games first (it drains its NATS connection), then nats-server.
  for (const child of [...children].reverse()) await stopChild(child, 'SIGTERM');
  children.length = 0;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => void cleanup().finally(() => process.exit(130)));
}

async function startNats(): Promise<string> {
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  dirs.push(store);
  // The bus as deployed: TLS, client certificates, the generated permissions.
  const config = join(store, 'nats.conf');
  writeNatsConfig(config, { settings: join(packageRoot, 'settings/dev'), host: '127.0.0.1', port, storeDir: join(store, 'js'), extraBuckets: ['BENCH_GAMES'] });
  const child = spawn(NATS_BIN, ['-c', config], { stdio: 'ignore' });
  children.push(child);
  await waitForPort(port, 10_000);
  return `nats://127.0.0.1:${port}`;
}

async function startGames(natsUrl: string): Promise<{ base: string; log: () => string }> {
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
      `nats: { url: ${natsUrl} }`,
      `tls: { ca: ${CERTS}/root.crt, cert: ${CERTS}/games-1.crt, key: ${CERTS}/games-1.key }`,
      // Hosts that stop polling between scenarios must not expire mid-bench.
      'games: { bucket: BENCH_GAMES, hostPollTimeoutMs: 600000, sweepIntervalMs: 5000 }',
    ].join('\n'),
  );
  let output = '';
  const child = spawn(process.execPath, ['dist/src/cli/games.js', 'run'], {
    env: { ...process.env, GAMES_SETTINGS: folder, NATS_URL: natsUrl, LOG_FORMAT: 'json', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  // Drained (a full pipe would stall the server), keeping only the tail for error messages.
  const keep = (d: Buffer) => (output = (output + d.toString()).slice(-8_192));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  try {
    await waitForPort(httpPort, 10_000);
  } catch (err) {
    throw new Error(`games run did not listen: ${(err as Error).message}\n${output}`);
  }
  return { base: `http://127.0.0.1:${httpPort}`, log: () => output };
}

async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`POST ${path} ${JSON.stringify(body)} -> ${res.status} ${text}`);
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** Registers `count` games, each with its host's candidates and a few guests started; returns the host poll bodies. */
async function setupGames(base: string, prefix: string, count: number): Promise<CannonRequest[]> {
  const polls: CannonRequest[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${i}`;
    const host = `host-${prefix}-${i}`;
    const hostBody = { name, peerId: host, addresses: [`10.0.${i % 250}.1:${40_000 + i}`, `203.0.113.${i % 250}:${50_000 + i}`] };
    await post(base, '/games/register', { name, peerId: host });
    await post(base, '/games/poll', hostBody);
    for (let g = 0; g < GUESTS_PER_GAME; g++) {
      await post(base, '/games/start', { name, peerId: `guest-${g}-${prefix}-${i}`, addresses: [`198.51.100.${g + 1}:${30_000 + i}`] });
    }
    const check = await post(base, '/games/poll', hostBody);
    if (check.body?.status !== 1 || check.body?.guests?.length !== GUESTS_PER_GAME) throw new Error(`game ${name} not ready: ${JSON.stringify(check.body)}`);
    polls.push({ method: 'POST', path: '/games/poll', headers: { 'content-type': 'application/json' }, body: JSON.stringify(hostBody) });
  }
  return polls;
}

interface Row {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  total: number;
  errors: number;
  non2xx: number;
  codes: string;
}

async function run(name: string, base: string, requests: CannonRequest[]): Promise<Row> {
  let next = 0;
  const r = await autocannon({
    url: base,
    connections: CONNECTIONS,
    duration: DURATION_S,
    requests,
    // Round-robin with a different starting game per connection, so connection i is host of
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
    `${name.padEnd(22)} ${row.rps.toFixed(0).padStart(6)} req/s  p50 ${row.p50.toFixed(1).padStart(6)} ms  p99 ${row.p99.toFixed(1).padStart(6)} ms  ` +
      `${row.total} requests, ${row.errors} errors, ${row.non2xx} non-2xx  [${codes}]`,
  );
  return row;
}

try {
  const natsUrl = await startNats();
  const games = await startGames(natsUrl);
  const spread = await setupGames(games.base, 'spread', SPREAD_GAMES);
  const hot = await setupGames(games.base, 'hot', HOT_GAMES);
  console.log(
    `rendezvous load: 1 games process, nats-server JetStream, ${CONNECTIONS} connections x ${DURATION_S} s per row, ` +
      `${GUESTS_PER_GAME} guests per game`,
  );
  const baseline = await run('GET /openapi.json', games.base, [{ method: 'GET', path: '/openapi.json' }]);
  // A KV read without the write: splits what a poll costs into the get and the update.
  const reads = spread.map((r) => ({ method: 'GET', path: `/games/${encodeURIComponent(JSON.parse(r.body ?? '{}').name)}` }));
  const read = await run(`GET /games/:name`, games.base, reads);
  const polls = await run(`poll ${SPREAD_GAMES} games`, games.base, spread);
  const contended = await run(`poll ${HOT_GAMES} games (hot)`, games.base, hot);
  for (const row of [read, polls, contended]) {
    console.log(
      `${row.name}: ${row.rps.toFixed(0)} req/s = ${(row.rps / baseline.rps).toFixed(2)}x baseline throughput; ` +
        `p99 ${(row.p99 / Math.max(baseline.p99, 1)).toFixed(1)}x baseline p99; ` +
        `${row.non2xx} non-2xx (${((100 * row.non2xx) / Math.max(row.total, 1)).toFixed(2)}%)`,
    );
  }
  if (polls.errors > 0 || polls.non2xx > 0 || read.non2xx > 0 || baseline.errors > 0 || baseline.non2xx > 0) {
    console.log(`games process log tail:\n${games.log()}`);
    process.exitCode = 1;
  }
} finally {
  await cleanup();
}
