import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { dialAndPresent } from '../../src/core/dial.js';
import { readPreamble } from '../../src/core/splice-wire.js';

// The one dialer of splice connections (B, A and game relay peers), with its deadline. A listener
// whose accept queue is full drops further handshakes, which is what a blackholed or overloaded
// endpoint looks like to a dialer; Node always accepts, so a listen(0) that never accepts is
// made by a tiny Python process.

const children: ChildProcess[] = [];
const sockets: Socket[] = [];
const servers: Server[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill();
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

async function fullListener(): Promise<number> {
  const script = "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)";
  const child = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const line = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next();
  const port = Number(line.value);
  // The one connection its queue holds; the next handshake is dropped.
  const filler = connect({ host: '127.0.0.1', port });
  sockets.push(filler);
  await once(filler, 'connect');
  return port;
}

describe('dial', () => {
  it('dial - an endpoint that never completes the handshake fails the dial at its deadline', async () => {
    const port = await fullListener();
    const started = Date.now();
    await expect(dialAndPresent(`127.0.0.1:${port}`, { token: Buffer.alloc(32, 1) }, { timeoutMs: 300 })).rejects.toThrow(
      `cannot connect to 127.0.0.1:${port}: no connection within 300 ms`,
    );
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it('dial - a reachable endpoint gets the preamble, under the same deadline', async () => {
    const server = createServer();
    servers.push(server);
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const token = Buffer.alloc(32, 7);
    const socket = await dialAndPresent(`127.0.0.1:${port}`, { token }, { timeoutMs: 1_000 });
    sockets.push(socket);
    const [peer] = await accepted;
    sockets.push(peer);
    const preamble = await readPreamble(peer, { timeoutMs: 1_000 });
    expect(preamble.token.equals(token)).toBe(true);
    expect(preamble.proof.length).toBe(0);
  });
});
