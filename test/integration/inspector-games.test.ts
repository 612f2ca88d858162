import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { get } from 'node:http';
import { TestNatsServer } from '../helpers/nats-server.js';
import { GamesProcess } from './games-process.js';

// The inspector inside a real `games run`: what the service writes shows up at /inspect, with the
// host's private candidate and every peer id redacted, and an open event stream does not keep the
// process from stopping.
describe('inspector in games run', () => {
  let nats: TestNatsServer;
  let games: GamesProcess;

  beforeAll(async () => {
    nats = await TestNatsServer.start({ buckets: ['INSPECT_GAMES'] });
    games = await GamesProcess.start({ natsUrl: nats.url, bucket: 'INSPECT_GAMES', inspector: true });
  });

  afterAll(async () => {
    await games?.stop('SIGKILL');
    await nats?.stop();
  });

  it('inspector games - a game registered, polled and joined is listed with its timeline, redacted', async () => {
    expect((await games.request('POST', '/games/register', { name: 'chess', peerId: 'host-peer-x' })).status).toBe(201);
    await games.request('POST', '/games/poll', { name: 'chess', peerId: 'host-peer-x', addresses: ['192.168.7.2:4000', '203.0.113.5:4000'] });
    await games.request('POST', '/games/start', { name: 'chess', peerId: 'guest-peer-y', addresses: ['198.51.100.9:5000'] });
    await games.request('POST', '/games/poll', { name: 'chess', peerId: 'host-peer-x', addresses: ['192.168.7.2:4000', '203.0.113.5:4000'] });

    const list = await games.request('GET', '/inspect/api/sessions');
    expect(list.status).toBe(200);
    expect(list.body!.sessions).toEqual([expect.objectContaining({ id: 'chess', machine: 'game', state: 'open.paired', parties: 'host + 1 guest', status: 'live' })]);
    const detail = await games.request('GET', '/inspect/api/sessions/chess');
    expect(detail.body!.timeline.map((e: { event: string; to: string }) => `${e.event} → ${e.to}`)).toEqual([
      'xstate.init → open.registered',
      'HOST_POLLED → open.hosting',
      'GUEST_STARTED → open.hosting',
      'HOST_POLLED → open.paired',
    ]);
    const text = JSON.stringify(detail.body);
    for (const secret of ['host-peer-x', 'guest-peer-y', '192.168.7.2']) expect(text).not.toContain(secret);
    expect(text).toContain('private:4000');
    expect(text).toContain('203.0.113.5:4000');
    const page = await fetch(`http://127.0.0.1:${games.httpPort}/inspect`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain(`games games-${games.httpPort}`);
  });

  it('inspector games - an open event stream does not keep games run from stopping', async () => {
    const opened = new Promise<void>((resolve, reject) => {
      get(`http://127.0.0.1:${games.httpPort}/inspect/api/events`, (res) => {
        res.once('data', () => resolve());
        res.on('error', () => {});
      }).on('error', reject);
    });
    await opened;
    const started = Date.now();
    expect(await games.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
