import { createServer } from 'node:net';

// Ports for child processes are picked here and bound later by the child, so another socket can
// take one in between. listen(0) would hand out a port from the kernel's ephemeral range, which
// every outgoing connection also draws from (and holds in TIME_WAIT for a minute): a test making
// thousands of connections in a parallel worker then steals a stack's port before the stack
// binds it. Ports below that range are only ever taken by an explicit bind.
const LOW = 20_000;
const HIGH = 32_767; // Linux's ephemeral range starts at 32768; macOS's and Windows' at 49152.

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
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await tryListen(LOW + Math.floor(Math.random() * (HIGH - LOW)));
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
