import { once } from 'node:events';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { DEFAULT_SPLICE_IDLE_TIMEOUT_MS } from '../src/core/constants.js';
import { encodePreamble, signProof, type Leg } from '../src/core/splice-wire.js';
import { createProxyMetrics, registryMetricHooks } from '../src/proxy/metrics.js';
import { SessionRegistry } from '../src/proxy/session-registry.js';
import { SpliceEndpoint } from '../src/proxy/splice-endpoint.js';
import { BENCH_OPERATORS, BENCH_PROXY, benchKeyOf, listedBenchOperators } from './relay-operators.js';

// The processes of the relay memory bench (bench/relay-memory.ts forks one per role):
//   relay-eps   SessionRegistry + SpliceEndpoint as the proxy builds them (metrics hooks, default
//               idle timeout, proofs on); opens sessions in batches and hands out the passes
//   relay-pipe  a plain Node relay: a.pipe(b) and b.pipe(a)
//   side-b      echoes whatever arrives: a listener (pipe, haproxy) or dials the EPS relay with B's passes
//   side-a      dials each session, sends one message and waits for its echo, then leaves it idle


export interface Pass {
  sessionId: string;
  token: string;
  challenge: string;
}
/** Per V8 heap space, MiB committed and MiB in use (before the forced collection). */
export type HeapSpaces = Record<string, [committed: number, used: number]>;
export type ToChild =
  | { type: 'open'; count: number }
  | { type: 'dial'; host: string; port: number; count: number; passes?: Pass[]; payloadBytes: number }
  | { type: 'memory'; gc: boolean };
export type FromChild =
  | { type: 'listening'; port: number }
  | { type: 'passes'; leg: Leg; passes: Pass[] }
  | { type: 'dialed'; count: number }
  | { type: 'memory'; usage: NodeJS.MemoryUsage; heapAfterGc?: number; rssAfterGc?: number; timers: number; spaces: HeapSpaces }
  | { type: 'failed'; detail: string };

const send = (m: FromChild): void => void process.send!(m);

/**
 * Timers alive in this process, unref'd ones included (a socket's idle timeout is one), read from
 * Node's own timer lists: the relays run with --expose-internals for this alone. With every
 * session idle none may be per session: the native relay scans its table for idle and duration
 * limits, and a parked session keeps no actor and so no xstate timer.
 */
function liveTimers(): number {
  type TimerList = { _idlePrev: unknown };
  const { timerListMap } = createRequire(import.meta.url)('internal/timers') as { timerListMap: Record<string, TimerList> };
  let count = 0;
  for (const list of Object.values(timerListMap)) {
    for (let t = list._idlePrev; t !== list; t = (t as TimerList)._idlePrev) count++;
  }
  return count;
}
const fail = (detail: string): never => {
  send({ type: 'failed', detail });
  process.exit(1);
};
// The relays run with --expose-gc: after the RSS was read for the last time, their heap after a
// full collection says what sessions retain, apart from garbage not yet collected. Without `gc`
// (the earlier readings) the probe only reads: a collection would change what is measured next.
const answerMemory = (m: ToChild): void => {
  if (m.type !== 'memory') return;
  const usage = process.memoryUsage();
  const spaces: HeapSpaces = Object.fromEntries(getHeapSpaceStatistics().map((h) => [h.space_name, [h.space_size / 2 ** 20, h.space_used_size / 2 ** 20]]));
  const timers = liveTimers();
  if (!m.gc) {
    send({ type: 'memory', usage, timers, spaces });
    return;
  }
  (globalThis as { gc?: () => void }).gc?.();
  const { heapUsed: heapAfterGc, rss: rssAfterGc } = process.memoryUsage();
  // BENCH_MEMORY_HEAPSNAPSHOT=<dir>: what the idle sessions hold, for bench/heap-top.ts.
  const dir = process.env.BENCH_MEMORY_HEAPSNAPSHOT;
  if (dir) writeHeapSnapshot(join(dir, `relay-${process.env.EPS_SPLICE ?? 'pipe'}-${process.pid}.heapsnapshot`));
  send({ type: 'memory', usage, heapAfterGc, rssAfterGc, timers, spaces });
};

async function relayEps(): Promise<void> {
  const log = pino({ level: 'silent' });
  const registry = new SessionRegistry({
    log,
    operator: BENCH_PROXY,
    certificateOf: listedBenchOperators(),
    spliceIdleMs: DEFAULT_SPLICE_IDLE_TIMEOUT_MS,
    ...registryMetricHooks(createProxyMetrics()),
  });
  // The dialers all come from 127.0.0.1 in batches: the per-address cap on connections that have
  // not sent their preamble yet is a defence against one abusive source, not what is measured here.
  const endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, maxPendingPerAddress: 4096, maxPending: 4096, route: (p, s, r) => registry.route(p, s, r) });
  const { port } = await endpoint.listen();
  const passOf = (sessionId: string, token: Buffer, challenge: Buffer): Pass => ({ sessionId, token: token.toString('base64'), challenge: challenge.toString('base64') });
  let want = 0;
  let bs: Pass[] = [];
  let as: Pass[] = [];
  process.on('message', (m: ToChild) => {
    answerMemory(m);
    if (m.type !== 'open') return;
    want = m.count;
    bs = [];
    as = [];
    for (let i = 0; i < m.count; i++) {
      registry.open(
        { a: BENCH_OPERATORS.a, b: BENCH_OPERATORS.b, endpoint: `127.0.0.1:${port}` },
        {
          messengers: {
            notifyB: async (s, pass) => {
              bs.push(passOf(s.sessionId, pass.token, pass.challenge));
              if (bs.length === want) send({ type: 'passes', leg: 'b', passes: bs });
              return { accepted: true };
            },
            confirmToA: async (s, pass) => {
              as.push(passOf(s.sessionId, pass.token, pass.challenge));
              if (as.length === want) send({ type: 'passes', leg: 'a', passes: as });
            },
          },
        },
      );
    }
  });
  send({ type: 'listening', port });
}

async function relayPipe(targetPort: number): Promise<void> {
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (a) => {
    const b = connect({ host: '127.0.0.1', port: targetPort, noDelay: true, allowHalfOpen: true });
    a.pipe(b);
    b.pipe(a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await once(server, 'listening');
  process.on('message', answerMemory);
  send({ type: 'listening', port: (server.address() as AddressInfo).port });
}

const held: Socket[] = [];

async function dial(host: string, port: number, leg: Leg, pass: Pass | undefined): Promise<Socket> {
  const socket = connect({ host, port, noDelay: true });
  held.push(socket);
  socket.on('error', (err) => fail(`${leg}: ${err.message}`));
  await once(socket, 'connect');
  if (pass) {
    const token = Buffer.from(pass.token, 'base64');
    const proof = signProof(benchKeyOf(leg), { proxy: BENCH_PROXY, sessionId: pass.sessionId, leg, token, challenge: Buffer.from(pass.challenge, 'base64') });
    socket.write(encodePreamble(token, proof));
  }
  return socket;
}

const echo = (socket: Socket): void => {
  socket.setNoDelay(true);
  socket.on('data', (chunk: Buffer) => socket.write(chunk));
};

async function sideB(): Promise<void> {
  const server = createServer({ noDelay: true }, (socket) => {
    held.push(socket);
    echo(socket);
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await once(server, 'listening');
  process.on('message', async (m: ToChild) => {
    if (m.type !== 'dial') return;
    // The EPS relay: B dials out with its passes and echoes what A sends.
    const sockets = await Promise.all(m.passes!.map((p) => dial(m.host, m.port, 'b', p)));
    for (const s of sockets) echo(s);
    send({ type: 'dialed', count: sockets.length });
  });
  send({ type: 'listening', port: (server.address() as AddressInfo).port });
}

function sideA(): void {
  process.on('message', async (m: ToChild) => {
    if (m.type !== 'dial') return;
    const payload = Buffer.alloc(m.payloadBytes, 7);
    await Promise.all(
      Array.from({ length: m.count }, async (_, i) => {
        const socket = await dial(m.host, m.port, 'a', m.passes?.[i]);
        let got = 0;
        const echoed = new Promise<void>((resolve) =>
          socket.on('data', (c: Buffer) => {
            got += c.length;
            if (got >= payload.length) resolve();
          }),
        );
        socket.write(payload);
        await echoed;
      }),
    );
    send({ type: 'dialed', count: m.count });
  });
  send({ type: 'listening', port: 0 });
}

const [role, ...args] = process.argv.slice(2);
const main = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main) process.on('SIGTERM', () => process.exit(0));
if (main) switch (role) {
  case 'relay-eps':
    await relayEps();
    break;
  case 'relay-pipe':
    await relayPipe(Number(args[0]));
    break;
  case 'side-b':
    await sideB();
    break;
  case 'side-a':
    sideA();
    break;
  default:
    fail(`unknown role ${role}`);
}
