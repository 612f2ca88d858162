import { createSocket, type Socket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeStun, METHOD_BINDING } from '../../src/games/stun.js';
import { stunBinding } from '../../src/games/stun-client.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { GamesProcess } from './games-process.js';

// STUN is no amplifier: a flood at `games run`'s STUN port, counted in bytes on both sides. The
// answers go back to the (here real, elsewhere spoofed) source, so what it sends is bounded by
// the rate limit and by each answer's size; a request for another method draws nothing; a peer
// at another address still gets its answer during the flood.

const BUCKET = `GAMES_SF${process.pid}`;
const LIMITS = { perSecond: 20, burst: 50, totalPerSecond: 400, maxAddresses: 1000 };
let nats: TestNatsServer;
let games: GamesProcess;

beforeAll(async () => {
  nats = await TestNatsServer.start({ buckets: [BUCKET] });
  games = await GamesProcess.start({ natsUrl: nats.url, bucket: BUCKET, stun: { rateLimit: LIMITS } });
});
afterAll(async () => {
  await games?.stop();
  await nats?.stop();
});

async function boundSocket(address: string): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  return socket;
}

const request = (i: number, method = METHOD_BINDING) => {
  const transactionId = Buffer.alloc(12);
  transactionId.writeUInt32BE(i, 8);
  return encodeStun({ method, cls: 'request', transactionId, attributes: [] });
};

/**
 * Sends `count` datagrams as fast as the socket takes them, waits for `atLeast` answers (a loaded
 * `games run` may answer late: a fixed pause then counted too few), then listens `settleMs` more.
 * `listenedMs`: from the first datagram to the end of listening, the span every counted answer was
 * given in.
 */
async function flood(socket: Socket, count: number, make: (i: number) => Buffer, settleMs = 700, atLeast = 0) {
  let bytesIn = 0;
  let answers = 0;
  let bytesBack = 0;
  socket.on('message', (m) => {
    answers++;
    bytesBack += m.length;
  });
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const d = make(i);
    bytesIn += d.length;
    await new Promise<void>((resolve, reject) => socket.send(d, games.stunPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }
  const sendMs = performance.now() - t0;
  for (const deadline = performance.now() + 15_000; answers < atLeast && performance.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, settleMs));
  return { bytesIn, answers, bytesBack, sendMs, listenedMs: performance.now() - t0 };
}

describe('STUN under a flood (real games run)', () => {
  it('games stun flood - one source gets its burst and rate, at most 2x the bytes it sent per answer; another method gets nothing', async () => {
    const attacker = await boundSocket('127.0.0.1');
    try {
      const r = await flood(attacker, 3_000, (i) => request(i), 700, LIMITS.burst);
      const seconds = r.listenedMs / 1000;
      console.log(`stun flood: ${r.bytesIn} bytes in (3000 requests in ${Math.round(r.sendMs)} ms), ${r.answers} answers, ${r.bytesBack} bytes back`);
      expect(r.answers).toBeGreaterThanOrEqual(LIMITS.burst);
      expect(r.answers).toBeLessThanOrEqual(LIMITS.burst + Math.ceil(LIMITS.perSecond * seconds));
      // Each answer is 40 bytes for a 20-byte request: the flood drew far less than it sent.
      expect(r.bytesBack).toBe(r.answers * 40);
      expect(r.bytesBack).toBeLessThan(r.bytesIn / 5);
    } finally {
      attacker.close();
    }
    const other = await boundSocket('127.0.0.3');
    try {
      const r = await flood(other, 200, (i) => request(i, 0x003), 300);
      expect(r.answers).toBe(0);
    } finally {
      other.close();
    }
  });

  it('games stun flood - a peer at another address gets its mapped address while one source floods', async () => {
    const attacker = await boundSocket('127.0.0.1');
    const flooding = flood(attacker, 3_000, (i) => request(i), 0);
    const peer = await boundSocket('127.0.0.2');
    try {
      const r = await stunBinding({ host: '127.0.0.1', port: games.stunPort }, { socket: peer, rtoMs: 100, capMs: 3_000 });
      expect(r.mapped).toEqual({ family: 'IPv4', address: '127.0.0.2', port: peer.address().port });
    } finally {
      peer.close();
      await flooding;
      attacker.close();
    }
  });
});
