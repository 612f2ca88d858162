import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WarmDials } from '../../src/eps/warm-dials.js';

// A's early dial to the proxy's last endpoint (src/eps/warm-dials.ts), against a real local
// listener standing in for the splice endpoint: it records what each connection sent and whether
// it is still open.

interface Accepted {
  socket: Socket;
  received: Buffer[];
  closed: boolean;
}

let server: Server;
let endpoint: string;
let accepted: Accepted[];

beforeEach(async () => {
  accepted = [];
  server = createServer((socket) => {
    const a: Accepted = { socket, received: [], closed: false };
    accepted.push(a);
    socket.on('data', (d) => a.received.push(d));
    socket.on('error', () => {});
    socket.on('close', () => (a.closed = true));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterEach(async () => {
  for (const a of accepted) a.socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const until = async (check: () => boolean, ms = 2_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('warm dials', () => {
  it('warm dials - nothing is dialed before a confirmation named the proxy endpoint', () => {
    const warm = new WarmDials();
    expect(warm.start('public-proxy-eps-1')).toBeUndefined();
  });

  it('warm dials - the learned endpoint is dialed at once, silently, and taken connected for the same endpoint', async () => {
    const warm = new WarmDials();
    warm.learn('p', endpoint);
    const dial = warm.start('p')!;
    await until(() => accepted.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    const socket = dial.take(endpoint);
    expect(socket).toBeDefined();
    // The proxy saw a connection and not one byte: the preamble is the taker's to write.
    expect(accepted[0]!.received).toHaveLength(0);
    socket!.write('preamble');
    await until(() => Buffer.concat(accepted[0]!.received).toString() === 'preamble');
    dial.discard(); // a no-op once taken: the channel owns the socket
    await new Promise((r) => setTimeout(r, 20));
    expect(accepted[0]!.closed).toBe(false);
    socket!.destroy();
  });

  it('warm dials - a confirmation naming another endpoint closes the warm socket and takes nothing', async () => {
    const warm = new WarmDials();
    warm.learn('p', endpoint);
    const dial = warm.start('p')!;
    await until(() => accepted.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(dial.take('127.0.0.1:1')).toBeUndefined();
    await until(() => accepted[0]!.closed);
  });

  it('warm dials - a socket older than maxAgeMs is closed rather than presented on', async () => {
    let now = 1_000;
    const warm = new WarmDials({ maxAgeMs: 500, maxPerProxy: 4 }, () => now);
    warm.learn('p', endpoint);
    const dial = warm.start('p')!;
    await until(() => accepted.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    now += 501;
    expect(dial.take(endpoint)).toBeUndefined();
    await until(() => accepted[0]!.closed);
  });

  it('warm dials - a socket the proxy already closed is not taken', async () => {
    const warm = new WarmDials();
    warm.learn('p', endpoint);
    const dial = warm.start('p')!;
    await until(() => accepted.length === 1);
    accepted[0]!.socket.destroy(); // the proxy's preamble timeout, say
    await new Promise((r) => setTimeout(r, 30));
    expect(dial.take(endpoint)).toBeUndefined();
  });

  it('warm dials - a dial not yet through is never waited for, and is closed when it completes', async () => {
    const warm = new WarmDials();
    warm.learn('p', endpoint);
    const dial = warm.start('p')!;
    expect(dial.take(endpoint)).toBeUndefined(); // same tick: not connected yet
    await until(() => accepted.length === 1);
    await until(() => accepted[0]!.closed);
  });

  it('warm dials - an endpoint that refuses costs the channel nothing', async () => {
    const refusing = createServer();
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const dead = `127.0.0.1:${(refusing.address() as { port: number }).port}`;
    await new Promise<void>((resolve) => refusing.close(() => resolve()));
    const warm = new WarmDials();
    warm.learn('p', dead);
    const dial = warm.start('p')!;
    await new Promise((r) => setTimeout(r, 30));
    expect(dial.take(dead)).toBeUndefined();
  });

  it('warm dials - at most maxPerProxy wait at once, so they never take the places confirmed dials need', async () => {
    const warm = new WarmDials({ maxAgeMs: 1_000, maxPerProxy: 2 });
    warm.learn('p', endpoint);
    warm.learn('q', endpoint);
    const first = warm.start('p')!;
    const second = warm.start('p')!;
    expect(warm.start('p')).toBeUndefined();
    expect(warm.start('q')).toBeDefined(); // counted per proxy
    first.discard();
    first.discard(); // idempotent: frees one place, not two
    const third = warm.start('p');
    expect(third).toBeDefined();
    expect(warm.start('p')).toBeUndefined();
    await until(() => accepted.length === 4);
    await new Promise((r) => setTimeout(r, 20));
    expect(second.take(endpoint)).toBeDefined();
    expect(warm.start('p')).toBeDefined(); // taken frees its place too
  });
});

describe('warm dials - attack: a request that stays in flight', () => {
  // A brokering whose request stays in flight (B slow or never dialing: up to bDialMs, 10 s, at P
  // and busRequestMs, 15 s, at A) keeps its warm socket "waiting" the whole time, although it is
  // useless after maxAgeMs. The socket sits silent on P's splice port until P's preamble timeout
  // rejects it (a PREAMBLE_TIMEOUT warning and metric at P, charged to A's address), and the slot
  // stays taken: maxPerProxy such requests switch warm dials off for every other peer behind
  // that proxy until they end.
  it('warm dials - an untaken warm socket is closed and its place freed once older than maxAgeMs', async () => {
    const warm = new WarmDials({ maxAgeMs: 100, maxPerProxy: 1 });
    warm.learn('p', endpoint);
    const slow = warm.start('p')!; // the request of a slow brokering: neither taken nor discarded yet
    expect(slow).toBeDefined();
    await until(() => accepted.length === 1);
    // A closed it itself, well before any proxy preamble timeout (3 s by default)... (waited for,
    // not a fixed 400 ms: the close reaches the accepting side a loop turn after A's timer).
    await until(() => accepted[0]!.closed, 2_000);
    // ...and another channel to the same proxy gets a warm dial again.
    const next = warm.start('p');
    expect(next).toBeDefined();
    next?.discard();
    expect(slow.take(endpoint)).toBeUndefined();
  });

  it('warm dials - a slow brokering leaves no silent socket for the real splice endpoint to time out', async () => {
    const { SpliceEndpoint } = await import('../../src/proxy/splice-endpoint.js');
    const { pino } = await import('pino');
    const rejected: string[] = [];
    const splice = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log: pino({ level: 'silent' }), preambleTimeoutMs: 600, route: () => 'UNKNOWN_TOKEN' });
    splice.on('rejected', (r) => rejected.push(r));
    const { port } = await splice.listen();
    try {
      // A's age limit well inside P's preamble deadline, as the defaults are (1 s against 3 s).
      const warm = new WarmDials({ maxAgeMs: 300, maxPerProxy: 4 });
      warm.learn('p', `127.0.0.1:${port}`);
      warm.start('p'); // the request is in flight past the proxy's preamble deadline
      await new Promise((r) => setTimeout(r, 900));
      // Before the fix: P saw a silent connection from A and rejected it as PREAMBLE_TIMEOUT.
      expect(rejected).not.toContain('PREAMBLE_TIMEOUT');
    } finally {
      await splice.close();
    }
  });
});

describe('warm dials - attack: an endpoint that does not answer', () => {
  // Anyone may connect to P's splice port: one who fills its accept queue (or a P whose event
  // loop stalls) leaves every new connect to it hanging in SYN-SENT. Each brokering's warm dial
  // is discarded at take (not through yet), which frees its place at once, but the connect itself
  // went on for the kernel's SYN retries (~2 min on Linux): the "at most maxPerProxy" bound did
  // not hold for sockets, one descriptor per brokering piled up on A.
  it('warm dials - a warm dial that cannot connect is given up within maxAgeMs, so discarded dials do not pile up', async () => {
    const { spawn } = await import('node:child_process');
    // A listener that never accepts: backlog 1, event loop blocked after listening.
    const child = spawn(process.execPath, [
      '-e',
      `const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>{require('fs').writeSync(1,String(s.address().port)+'\\n');Atomics.wait(new Int32Array(new SharedArrayBuffer(4)),0,0,20000);process.exit(0)})`,
    ]);
    try {
      const port = await new Promise<number>((resolve) => child.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
      const stuck = `127.0.0.1:${port}`;
      const connecting = () => process.getActiveResourcesInfo().filter((r) => r === 'ConnectWrap').length;
      const before = connecting();
      const warm = new WarmDials({ maxAgeMs: 300, maxPerProxy: 4 });
      warm.learn('p', stuck);
      for (let i = 0; i < 12; i++) {
        const dial = warm.start('p')!;
        expect(dial).toBeDefined(); // each discarded at once: its place is free again
        expect(dial.take(stuck)).toBeUndefined();
      }
      await new Promise((r) => setTimeout(r, 100));
      expect(connecting() - before).toBeGreaterThanOrEqual(8); // the backlog took a few; the rest hang
      await new Promise((r) => setTimeout(r, 600));
      expect(connecting() - before).toBe(0);
    } finally {
      child.kill();
    }
  });
});

describe('warm dials - attack: a refused warm dial', () => {
  it('warm dials - a warm dial that failed frees its place at once, not when its request ends', async () => {
    const refusing = createServer();
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const dead = `127.0.0.1:${(refusing.address() as { port: number }).port}`;
    await new Promise<void>((resolve) => refusing.close(() => resolve()));
    const warm = new WarmDials({ maxAgeMs: 1_000, maxPerProxy: 1 });
    warm.learn('p', dead);
    const inFlight = warm.start('p')!; // its request still waits (up to busRequestMs)
    await new Promise((r) => setTimeout(r, 50));
    expect(warm.start('p')).toBeDefined();
    expect(inFlight.take(dead)).toBeUndefined();
  });
});
