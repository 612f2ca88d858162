import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestNatsServer } from '../helpers/nats-server.js';
import { GamesProcess } from './games-process.js';
import { resultOf, runPeer, startPeer } from './games-peer-cli.js';

let nats: TestNatsServer;
let games: GamesProcess;

beforeAll(async () => {
  nats = await TestNatsServer.start({ buckets: [`GAMES_P${process.pid}`] });
  games = await GamesProcess.start({ natsUrl: nats.url, bucket: `GAMES_P${process.pid}` });
});
afterAll(async () => {
  await games?.stop();
  await nats?.stop();
});

describe('games host / games guest (real CLIs on 127.0.0.1)', () => {
  it('games peers - host and guest meet through games run and punch a direct, authenticated path', async () => {
    const common = ['--server', `http://127.0.0.1:${games.httpPort}`, '--name', 'duel', '--stun', `127.0.0.1:${games.stunPort}`];
    const host = runPeer('host', [...common, '--max-guests', '1']);
    // The guest may come before the host has registered: it retries the 404.
    const guest = runPeer('guest', common);
    const [h, g] = await Promise.all([host, guest]);
    const hr = resultOf(h);
    const gr = resultOf(g);
    expect(hr).toMatchObject({ result: 'direct' });
    expect(gr).toMatchObject({ result: 'direct' });
    expect(hr.peer).toMatch(/^\d+\.\d+\.\d+\.\d+:\d+$/);
    expect(gr.peer).toMatch(/^\d+\.\d+\.\d+\.\d+:\d+$/);
    expect(hr.rttMs).toBeGreaterThanOrEqual(0);
    expect(hr.rttMs).toBeLessThan(1000);
    console.log(`loopback: host ${JSON.stringify(hr)} guest ${JSON.stringify(gr)}`);
    // The host deleted its game on the way out.
    expect((await games.request('GET', '/games/duel')).status).toBe(404);
  });

  it('games peers - a guest of a game nobody hosts fails on stderr with nothing on stdout', async () => {
    const g = await runPeer('guest', [
      '--server', `http://127.0.0.1:${games.httpPort}`, '--name', 'nobody', '--stun', `127.0.0.1:${games.stunPort}`, '--timeout', '1500',
    ]);
    expect(g.code).toBe(1);
    expect(g.stdout).toBe('');
    expect(g.stderr).toContain('games guest: failed:');
  });

  it('games peers - a host without --max-guests stays for every guest, one JSON line each, and leaves its game on Ctrl-C', async () => {
    const common = ['--server', `http://127.0.0.1:${games.httpPort}`, '--name', 'open table', '--stun', `127.0.0.1:${games.stunPort}`];
    const host = startPeer('host', common);
    const guests = await Promise.all([runPeer('guest', common), runPeer('guest', common)]);
    expect(guests.map((g) => resultOf(g).result)).toEqual(['direct', 'direct']);
    // Both guests are done; the host is still in the game until it is told to leave.
    for (let i = 0; host.stdout().trim().split('\n').filter(Boolean).length < 2; i++) {
      if (i > 50) throw new Error(`the host reported fewer than 2 guests: ${host.stdout()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await games.request('GET', '/games/open%20table')).status).toBe(200);
    host.child.kill('SIGINT');
    const h = await host.done;
    expect(h.code).toBe(0);
    const lines = h.stdout.trim().split('\n').map((l) => JSON.parse(l) as { result: string; peerId: string });
    expect(lines.map((l) => l.result)).toEqual(['direct', 'direct']);
    expect(new Set(lines.map((l) => l.peerId)).size).toBe(2);
    expect(h.stderr).toContain('interrupted: leaving the game');
    expect((await games.request('GET', '/games/open%20table')).status).toBe(404);
  });
});
