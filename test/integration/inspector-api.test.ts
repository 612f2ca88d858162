import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer, get, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brokeringMachine } from '../../machines/brokering.js';
import { gameSessionMachine } from '../../machines/game-session.js';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore } from '../../src/games/game-store.js';
import { MemoryLobby } from '../../src/games/lobby.js';
import { buildGamesApi } from '../../src/games/http-api.js';
import { RequestLimiter } from '../../src/games/request-limit.js';
import { serveInspector } from '../../src/games/server.js';
import { gamesFeed } from '../../src/inspector/feeds.js';
import { InspectorHttp } from '../../src/inspector/http.js';
import { SessionLog } from '../../src/inspector/session-log.js';

// The inspector's HTTP surface on a real loopback port (JSON, SVG, the event stream) and, through
// fastify's inject, the games app's /inspect routes with a non-loopback client.

function fetchText(url: string, method = 'GET'): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Reads server-sent events until `until` says stop. */
function readEvents(url: string, until: (events: { event: string; data: any }[]) => boolean, timeoutMs = 5000): Promise<{ event: string; data: any }[]> {
  return new Promise((resolve, reject) => {
    const events: { event: string; data: any }[] = [];
    const timer = setTimeout(() => (req.destroy(), reject(new Error(`events so far: ${JSON.stringify(events)}`))), timeoutMs);
    const req = get(url, (res) => {
      expect(res.headers['content-type']).toContain('text/event-stream');
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
        if (until(events)) {
          clearTimeout(timer);
          req.destroy();
          resolve(events);
        }
      });
    });
    req.on('error', () => {});
  });
}

describe('inspector http', () => {
  let server: Server;
  let base: string;
  let log: SessionLog;
  let http: InspectorHttp;

  beforeAll(async () => {
    log = new SessionLog({ maxFinished: 10, maxTimeline: 20, flushMs: 10 });
    http = new InspectorHttp({ log, machines: [brokeringMachine, gameSessionMachine], title: 'proxy test <1>' });
    server = createServer((req, res) => {
      if (!http.handle(req, res)) res.writeHead(404).end('not mine\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    log.open('s-1', { machine: 'brokering', parties: 'hd-1 → hd-2', state: 'requested.notifying', event: 'xstate.init', context: { sessionId: 's-1', endpoint: '10.1.1.1:9999', token: 'x' } });
  });

  afterAll(async () => {
    http.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('inspector http - the page and its assets are served locally with a same-origin-only policy', async () => {
    const page = await fetchText(`${base}/inspect`);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('proxy test &lt;1&gt;');
    expect(page.headers['content-security-policy']).toContain("default-src 'self'");
    // No CDN, no font service: every URL the page names is on this server.
    expect(page.body).not.toMatch(/https?:\/\//);
    for (const asset of ['app.js', 'style.css']) {
      const r = await fetchText(`${base}/inspect/${asset}`);
      expect(r.status, asset).toBe(200);
      expect(r.body).not.toMatch(/https?:\/\/(?!www\.w3\.org)/);
    }
    expect((await fetchText(`${base}/inspect/index.html`)).status).toBe(404);
    expect((await fetchText(`${base}/inspect/../package.json`)).status).toBe(404);
    expect((await fetchText(`${base}/metrics`)).body).toBe('not mine\n');
  });

  it('inspector http - sessions and one session as JSON, redacted', async () => {
    const list = JSON.parse((await fetchText(`${base}/inspect/api/sessions`)).body);
    expect(list.sessions).toEqual([expect.objectContaining({ id: 's-1', parties: 'hd-1 → hd-2', state: 'requested.notifying', status: 'live' })]);
    const one = await fetchText(`${base}/inspect/api/sessions/s-1`);
    expect(one.status).toBe(200);
    const detail = JSON.parse(one.body);
    expect(detail.context).toEqual({ sessionId: 's-1', endpoint: 'private:9999', token: '[redacted]' });
    expect(detail.timeline).toHaveLength(1);
    expect((await fetchText(`${base}/inspect/api/sessions/nope`)).status).toBe(404);
    expect((await fetchText(`${base}/inspect/api/sessions/%E0%A4%A`)).status).toBe(400);
    expect((await fetchText(`${base}/inspect/api/sessions/s%2D1`)).status).toBe(200);
  });

  it("inspector http - a machine's diagram is the generated SVG with every state addressable by path", async () => {
    const r = await fetchText(`${base}/inspect/api/machines/brokering.svg`);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('image/svg+xml');
    expect(r.body).toContain('data-path="holding.spliced"');
    expect((await fetchText(`${base}/inspect/api/machines/game.svg`)).body).toContain('data-path="open.hosting"');
    expect((await fetchText(`${base}/inspect/api/machines/nothing.svg`)).status).toBe(404);
  });

  it('inspector http - read-only: other methods are refused', async () => {
    for (const method of ['POST', 'PUT', 'DELETE']) {
      const r = await fetchText(`${base}/inspect/api/sessions`, method);
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe('GET, HEAD');
    }
  });

  it('inspector http - the event stream says hello with the list, then pushes each change', async () => {
    const events = readEvents(`${base}/inspect/api/events`, (ev) => ev.some((e) => e.event === 'changes'));
    await vi.waitFor(() => expect(log.watched).toBe(true), { timeout: 5000, interval: 20 });
    log.step('s-1', { event: 'notifyB.done', state: 'requested.forwarded' });
    const got = await events;
    expect(got[0]).toMatchObject({ event: 'hello', data: { sessions: [expect.objectContaining({ id: 's-1' })] } });
    const changes = got.find((e) => e.event === 'changes')!.data.changes;
    expect(changes).toEqual([
      {
        summary: expect.objectContaining({ id: 's-1', state: 'requested.forwarded' }),
        entries: [expect.objectContaining({ seq: 2, event: 'notifyB.done', from: 'requested.notifying', to: 'requested.forwarded' })],
      },
    ]);
    // The client went away: nobody watches, nothing is gathered any more.
    await vi.waitFor(() => expect(log.watched).toBe(false), { timeout: 5000, interval: 20 });
  });

  it('inspector http - every open page gets the same pushes', async () => {
    const until = (ev: { event: string }[]) => ev.some((e) => e.event === 'changes');
    const pages = [readEvents(`${base}/inspect/api/events`, until), readEvents(`${base}/inspect/api/events`, until)];
    // Both pages have had their hello: both are subscribed.
    await vi.waitFor(() => expect(log.watchers).toBe(2), { timeout: 5000, interval: 20 });
    log.step('s-1', { event: 'B_DIALED', state: 'holding.bConnected' });
    const [one, two] = await Promise.all(pages);
    const pushed = (ev: { event: string; data: any }[]) => ev.find((e) => e.event === 'changes')!.data.changes;
    expect(pushed(one!)).toEqual(pushed(two!));
    expect(pushed(one!)[0].entries.map((e: { event: string }) => e.event)).toEqual(['B_DIALED']);
  });
});

describe('inspector on the games app', () => {
  it('inspector games - /inspect answers loopback clients only, unless allowRemote', async () => {
    for (const allowRemote of [false, true]) {
      const log = new SessionLog({ maxFinished: 10, maxTimeline: 20 });
      const service = new GameService({ store: new MemoryGameStore(), lobby: new MemoryLobby(), now: () => 1_000_000, hostPollTimeoutMs: 30_000, maxGuests: 2, onTransition: gamesFeed(log) });
      const app = await buildGamesApi({ service, bodyLimit: 4096, requests: new RequestLimiter({ max: 1000, windowMs: 60_000, maxAddresses: 1000 }, Date.now()) });
      const http = new InspectorHttp({ log, machines: [gameSessionMachine], title: 'games test', allowRemote });
      serveInspector(app, http);
      await app.inject({ method: 'POST', url: '/games/register', payload: { name: 'chess', peerId: 'host-1' } });
      const local = await app.inject({ method: 'GET', url: '/inspect/api/sessions', remoteAddress: '127.0.0.1' });
      expect(local.statusCode).toBe(200);
      expect(local.json().sessions).toEqual([expect.objectContaining({ id: 'chess', machine: 'game', state: 'open.registered' })]);
      const remote = await app.inject({ method: 'GET', url: '/inspect', remoteAddress: '203.0.113.9' });
      expect(remote.statusCode).toBe(allowRemote ? 200 : 403);
      // The inspector's routes stay out of the public API document.
      expect(JSON.stringify((await app.inject({ method: 'GET', url: '/openapi.json' })).json())).not.toContain('/inspect');
      http.close();
      await app.close();
    }
  });
});
