import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { readTlsMaterial } from '../src/core/tls-material.js';
import { callJsonRpc } from '../src/jsonrpc/client.js';

// What a brokering costs end to end, measured from outside on real stacks (sd, proxy, hd-1 and
// hd-2 started from a build's dist/, a real nats-server each, with that build's generated bus
// configuration when it has one): hd-1 is set to close a brokered
// channel after 50 ms idle, so every `hd-2._ping` through hd-1's gateway brokers a new session
// (bus request, forward, B's dial, confirmation, A's dial, splice, end-to-end mTLS, the call).
// A second series reuses an open channel (no brokering) as the baseline. With several builds
// (`--root <dir>`, e.g. main's checkout and this one), their stacks run side by side and the calls
// alternate between them, so load from anything else on the machine falls on all of them alike.
//
//   node dist/bench/brokering-latency.js --root /work/main --root . --rounds 200

export interface DevStackLike {
  startAll(order?: string[]): Promise<void>;
  sdSetup(): Promise<void>;
  stop(): Promise<void>;
}

export interface Target {
  label: string;
  nats: ChildProcess;
  storeDir: string;
  stack: DevStackLike;
  jsonrpcPort: number;
  brokered: number[];
  reused: number[];
}

const CERTS = 'settings/dev/certs';
const IDLE_MS = 50;

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

export async function start(root: string, extraOverrides: Record<string, string> = {}, nodeArgs: Record<string, string[]> = {}): Promise<Target> {
  const abs = resolve(root);
  const mod = (await import(pathToFileURL(join(abs, 'dist/src/devstack/stack.js')).href)) as {
    DevStack: new (o: unknown) => DevStackLike;
    waitForPort: (port: number, ms: number) => Promise<void>;
  };
  const natsPort = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  const bin = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => existsSync(p)) ?? 'nats-server';
  // A build with a generated bus configuration (TLS, client certificates, least privilege) gets its
  // own; an older one runs on an open nats-server, as it did.
  const generator = join(abs, 'dist/src/natsconf/generate.js');
  let args = ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', storeDir];
  if (existsSync(generator)) {
    const { writeNatsConfig } = (await import(pathToFileURL(generator).href)) as {
      writeNatsConfig: (file: string, o: { settings: string; host: string; port: number; storeDir: string }) => unknown;
    };
    const config = join(storeDir, 'nats.conf');
    writeNatsConfig(config, { settings: join(abs, 'settings/dev'), host: '127.0.0.1', port: natsPort, storeDir: join(storeDir, 'js') });
    args = ['-c', config];
  }
  const nats = spawn(bin, args, { stdio: 'ignore' });
  await mod.waitForPort(natsPort, 10_000);
  const ports = { sd: await freePort(), jsonrpc: await freePort(), splice: await freePort(), metrics: await freePort(), games: await freePort(), stun: await freePort() };
  const stack = new mod.DevStack({
    natsUrl: `nats://127.0.0.1:${natsPort}`,
    ports,
    nodeArgs,
    overrides: { 'hd-1': `timeouts: { channelIdleMs: ${IDLE_MS} }\n`, ...extraOverrides },
  });
  await stack.startAll(['sd-1', 'public-proxy-1', 'hd-1', 'hd-2']);
  await mod.waitForPort(ports.jsonrpc, 20_000);
  await stack.sdSetup();
  return { label: root, nats, storeDir, stack, jsonrpcPort: ports.jsonrpc, brokered: [], reused: [] };
}

const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });

async function ping(t: Target): Promise<number> {
  const started = performance.now();
  await callJsonRpc({ url: `https://127.0.0.1:${t.jsonrpcPort}/jsonrpc`, serverName: 'hd-1', tls, timeoutMs: 10_000 }, 'hd-2._ping', {});
  return performance.now() - started;
}

/**
 * Calls `call` until it answers (a stack needs a few seconds before hd-2 is in hd-1's directory),
 * for at most 30 s; then its last error, named with `label`.
 */
export async function untilAnswered(label: string, call: () => Promise<unknown>): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    try {
      await call();
      return;
    } catch (err) {
      if (Date.now() > until) throw new Error(`${label}: no answer from hd-2 within 30 s: ${String(err)}`, { cause: err });
      await sleep(200);
    }
  }
}

const warmUp = (t: Target): Promise<void> => untilAnswered(t.label, () => ping(t));

export function stats(samples: number[]): { p50: number; p90: number; p99: number; n: number } {
  const s = [...samples].sort((x, y) => x - y);
  const at = (p: number) => Math.round((s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))] ?? 0) * 100) / 100;
  return { p50: at(50), p90: at(90), p99: at(99), n: s.length };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const roots = argv.flatMap((a, i) => (a === '--root' ? [argv[i + 1]!] : []));
  const roundsAt = argv.indexOf('--rounds');
  const rounds = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 200;
  const targets: Target[] = [];
  try {
    for (const root of roots.length ? roots : ['.']) targets.push(await start(root));
    for (const t of targets) await warmUp(t);
    for (let i = 0; i < rounds; i++) {
      // Alternate which build goes first, so neither always follows the other's burst.
      const order = i % 2 === 0 ? targets : [...targets].reverse();
      await sleep(IDLE_MS * 3);
      for (const t of order) t.brokered.push(await ping(t));
      // The channel is open now: the same call without a brokering.
      for (const t of order) t.reused.push(await ping(t));
    }
    console.log(`hd-1 -> hd-2._ping through the gateway, ${rounds} rounds, builds alternating`);
    for (const t of targets) {
      const b = stats(t.brokered);
      const r = stats(t.reused);
      console.log(
        `${t.label.padEnd(20)} brokered p50 ${b.p50} ms p90 ${b.p90} ms p99 ${b.p99} ms | open channel p50 ${r.p50} ms p99 ${r.p99} ms | brokering ≈ ${Math.round((b.p50 - r.p50) * 100) / 100} ms at p50`,
      );
    }
  } finally {
    for (const t of targets) {
      await t.stack.stop().catch(() => {});
      t.nats.kill('SIGTERM');
      rmSync(t.storeDir, { recursive: true, force: true });
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

/**
 * The order in which `n` contenders take their turns in round `round`: every permutation in turn.
 * A rotation is not enough past two contenders: with [this, before, direct] rotating, `before`
 * followed `this` build's calls in two rounds of three and `this` followed direct's, and which
 * contender ran just before moved a brokered call's p50 by ~1.25 ms on the 2-core development
 * machine (two runs with the two builds' places swapped). With every order, each contender
 * follows each other one, and goes first, equally often.
 */
export function turnOrder(round: number, n: number): number[] {
  const pool = Array.from({ length: n }, (_, i) => i);
  const order: number[] = [];
  let k = round;
  for (let left = n; left > 0; left--) {
    const pick = k % left;
    k = Math.floor(k / left);
    order.push(pool.splice(pick, 1)[0]!);
  }
  return order;
}
