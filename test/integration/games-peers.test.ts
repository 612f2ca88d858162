import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestNatsServer } from '../helpers/nats-server.js';
import { GamesProcess } from './games-process.js';
import { resultOf, runPeer } from './games-peer-cli.js';

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
});
