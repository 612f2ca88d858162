import { createServer } from 'node:net';

// Ports for child processes are picked here and bound later by the child, so another socket can
// take one in between. listen(0) would hand out a port from the kernel's ephemeral range, which
// every outgoing connection also draws from (and holds in TIME_WAIT for a minute): a test making
// thousands of connections in a parallel worker then steals a stack's port before the stack
// binds it. Ports below that range are only ever taken by an explicit bind.
const LOW = 20_000;
const HIGH = 32_767; // Linux's ephemeral range starts at 32768; macOS's and Windows' at 49152.

// Test files run in parallel workers (vitest sets VITEST_POOL_ID, 1..n, in each and in what it
// starts), and a port one worker found free could be another worker's pick a moment later, before
// either binds it: a role then fails to start, or a test reaches another test's server. Each
// worker picks from its own slice of the range instead; outside the tests, the whole range.
const SLICES = 4;

/** Where freePort() picks: this worker's slice of the range below the ephemeral ports. */
export function pickRange(): [low: number, high: number] {
  const worker = Number(process.env['VITEST_POOL_ID']);
  if (!Number.isInteger(worker) || worker < 1) return [LOW, HIGH];
  const size = Math.floor((HIGH - LOW) / SLICES);
  const low = LOW + ((worker - 1) % SLICES) * size;
  return [low, low + size];
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, '127.0.0.1', () => {
      const { port: bound } = srv.address() as { port: number };
      srv.close(() => resolve(bound));
    });
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1, outside the ephemeral range when possible. */
export async function freePort(): Promise<number> {
  const [low, high] = pickRange();
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await tryListen(low + Math.floor(Math.random() * (high - low)));
    if (port !== undefined) return port;
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error('no free TCP port on 127.0.0.1');
  return port;
}

/** `count` free ports, no two the same (each freePort() is only free until bound: two calls may agree). */
export async function distinctFreePorts(count: number, taken: Iterable<number> = []): Promise<number[]> {
  const seen = new Set(taken);
  const ports: number[] = [];
  while (ports.length < count) {
    const port = await freePort();
    if (seen.has(port)) continue;
    seen.add(port);
    ports.push(port);
  }
  return ports;
}
