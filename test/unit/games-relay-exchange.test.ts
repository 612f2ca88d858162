import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerError } from '../../src/games/peer/common.js';
import { punchKey } from '../../src/games/peer/punch.js';
import { exchangeOverRelay } from '../../src/games/peer/relay.js';

// The relay exchange on a real loopback TCP connection (what the proxy's splice hands each peer).

const servers: Server[] = [];
afterEach(() => servers.splice(0).forEach((s) => s.close()));

async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  await once(client, 'connect');
  return [client, (await accepted)[0]];
}

describe('relay exchange (authenticated messages over the spliced stream)', () => {
  it('games relay exchange - two peers of the pairing verify each other and measure the RTT, then close', async () => {
    const [h, g] = await socketPair();
    const key = punchKey('ab'.repeat(16), 'duel');
    const [hs, gs] = await Promise.all([
      exchangeOverRelay({ socket: h, key, role: 'host', rounds: 4, timeoutMs: 2000 }),
      exchangeOverRelay({ socket: g, key, role: 'guest', rounds: 4, timeoutMs: 2000 }),
    ]);
    // The first round (which waits for the other peer to attach) is not an RTT sample.
    expect(hs).toHaveLength(3);
    expect(gs).toHaveLength(3);
    for (const ms of [...hs, ...gs]) expect(ms).toBeGreaterThan(0);
    await Promise.all([h.closed ? undefined : once(h, 'close'), g.closed ? undefined : once(g, 'close')]);
  });

  it('games relay exchange - a peer holding another pairing key is never answered: both fail precisely', async () => {
    const [h, g] = await socketPair();
    const lines: string[] = [];
    const results = await Promise.allSettled([
      exchangeOverRelay({ socket: h, key: punchKey('ab'.repeat(16), 'duel'), role: 'host', timeoutMs: 500, log: (m) => lines.push(m) }),
      exchangeOverRelay({ socket: g, key: punchKey('cd'.repeat(16), 'duel'), role: 'guest', timeoutMs: 500 }),
    ]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as Error;
      expect(err).toBeInstanceOf(PeerError);
      // Whichever side gave up first closed the stream; the other sees that, or its own deadline.
      expect(err.message).toMatch(/did not finish within 500 ms \(0 of 5 answers\)|closed the connection before the other peer answered/);
    }
    expect(lines).toContain('unverified ping on the relay dropped');
  });

  it('games relay exchange - a peer that echoes our own messages back (a reflection) is not the other role', async () => {
    const [h, echo] = await socketPair();
    echo.pipe(echo);
    await expect(exchangeOverRelay({ socket: h, key: punchKey('ab'.repeat(16), 'duel'), role: 'host', timeoutMs: 300 })).rejects.toThrow(/0 of 5 answers/);
  });
});
