import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { inboxPrefixOf } from '../src/core/nats.js';
import { packageRoot } from '../src/core/package-root.js';
import { waitForPort } from '../src/devstack/stack.js';
import { writeNatsConfig } from '../src/natsconf/generate.js';

// What TLS with client certificates costs on the bus: the same request/reply (an envelope-sized
// payload from hd-1 to hd-2's _ping subject) on an open nats-server and on one running the
// generated configuration. Each round runs in a fresh worker process against its own server,
// plain and TLS alternating round by round, so both see the same machine load.
//
//   node dist/bench/nats-tls.js [rounds]

const ROUNDS = Number(process.argv[2] ?? 4);
const SERIAL = 2_000;
const BURST_MS = 2_000;
const IN_FLIGHT = 64;
const CONNECTS = 20;
const PAYLOAD = 'x'.repeat(700);
const SUBJECT = 'eps.op.hd-2._ping';
const NATS_BIN = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => existsSync(p)) ?? 'nats-server';
const CERTS = join(packageRoot, 'settings/dev/certs');

type Mode = 'plain' | 'tls';
interface RoundResult {
  mode: Mode;
  p50: number;
  p99: number;
  rps: number;
  connectMs: number;
}

function options(mode: Mode, url: string, principal: string): ConnectionOptions {
  if (mode === 'plain') return { servers: url };
  return {
    servers: url,
    tls: { certFile: join(CERTS, `${principal}.crt`), keyFile: join(CERTS, `${principal}.key`), caFile: join(CERTS, 'root.crt') },
    inboxPrefix: inboxPrefixOf(principal),
  };
}

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** One round in this process: a responder as hd-2, a requester as hd-1. */
async function worker(mode: Mode, url: string): Promise<RoundResult> {
  const responder = await connect(options(mode, url, 'hd-2'));
  responder.subscribe(SUBJECT, { callback: (_err, m) => void m.respond(PAYLOAD) });
  await responder.flush();
  const requester = await connect(options(mode, url, 'hd-1'));
  for (let i = 0; i < 200; i++) await requester.request(SUBJECT, PAYLOAD, { timeout: 5_000 });
  const lat: number[] = [];
  for (let i = 0; i < SERIAL; i++) {
    const t = performance.now();
    await requester.request(SUBJECT, PAYLOAD, { timeout: 5_000 });
    lat.push(performance.now() - t);
  }
  lat.sort((a, b) => a - b);
  let done = 0;
  const until = performance.now() + BURST_MS;
  const lane = async () => {
    while (performance.now() < until) {
      await requester.request(SUBJECT, PAYLOAD, { timeout: 5_000 });
      done++;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const rps = done / ((performance.now() - t0) / 1000);
  const connects: number[] = [];
  for (let i = 0; i < CONNECTS; i++) {
    const t = performance.now();
    const nc: NatsConnection = await connect(options(mode, url, 'hd-1'));
    await nc.flush();
    connects.push(performance.now() - t);
    await nc.close();
  }
  connects.sort((a, b) => a - b);
  await requester.close();
  await responder.close();
  return { mode, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), rps, connectMs: quantile(connects, 0.5) };
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function server(mode: Mode): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `bench-nats-${mode}-`));
  let args: string[];
  if (mode === 'plain') args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir];
  else {
    const config = join(dir, 'nats.conf');
    writeNatsConfig(config, { settings: join(packageRoot, 'settings/dev'), host: '127.0.0.1', port, storeDir: join(dir, 'store') });
    args = ['-c', config];
  }
  const child: ChildProcess = spawn(NATS_BIN, args, { stdio: 'ignore' });
  await waitForPort(port, 10_000);
  return {
    url: `nats://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function runWorker(mode: Mode, url: string): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'worker', mode, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as RoundResult) : reject(new Error(`worker ${mode} exited with ${code}`))));
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

if (process.argv[2] === 'worker') {
  const result = await worker(process.argv[3] as Mode, process.argv[4]!);
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
} else {
  console.log(`nats request/reply, ${PAYLOAD.length} B each way: ${SERIAL} serial requests (p50/p99), ${IN_FLIGHT} in flight for ${BURST_MS} ms (req/s), connect+flush (median of ${CONNECTS}); ${ROUNDS} rounds per mode, alternating`);
  const results: RoundResult[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of round % 2 === 0 ? (['plain', 'tls'] as const) : (['tls', 'plain'] as const)) {
      const s = await server(mode);
      try {
        const r = await runWorker(mode, s.url);
        results.push(r);
        console.log(`round ${round + 1} ${mode.padEnd(5)} p50 ${r.p50.toFixed(3)} ms  p99 ${r.p99.toFixed(3)} ms  ${r.rps.toFixed(0)} req/s  connect ${r.connectMs.toFixed(2)} ms`);
      } finally {
        await s.stop();
      }
    }
  }
  for (const mode of ['plain', 'tls'] as const) {
    const rs = results.filter((r) => r.mode === mode);
    console.log(
      `median ${mode.padEnd(5)} p50 ${median(rs.map((r) => r.p50)).toFixed(3)} ms  p99 ${median(rs.map((r) => r.p99)).toFixed(3)} ms  ` +
        `${median(rs.map((r) => r.rps)).toFixed(0)} req/s  connect ${median(rs.map((r) => r.connectMs)).toFixed(2)} ms`,
    );
  }
}
