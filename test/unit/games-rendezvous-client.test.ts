import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerError } from '../../src/games/peer/common.js';
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS, backoffMs, RendezvousClient, retryAfterMs } from '../../src/games/peer/rendezvous.js';

const servers: Server[] = [];
afterEach(() => servers.splice(0).forEach((s) => s.close()));

/** A server that answers with `answers` in turn (the last one for ever after), counting calls. */
async function scripted(answers: { status: number; body?: string; headers?: Record<string, string> }[]) {
  let calls = 0;
  const server = createServer((req, res) => {
    const a = answers[Math.min(calls++, answers.length - 1)]!;
    req.resume();
    res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers }).end(a.body ?? '{}');
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls };
}

function client(url: string) {
  const warnings: string[] = [];
  return { c: new RendezvousClient(url, { step: () => {}, warn: (m) => warnings.push(m) }), warnings };
}

describe('rendezvous client (retries with backoff and jitter)', () => {
  it('games rendezvous client - backoff doubles from the base up to the cap, jittered within its upper half', () => {
    expect(backoffMs(1, () => 0)).toBe(BACKOFF_BASE_MS / 2);
    expect(backoffMs(1, () => 1)).toBe(BACKOFF_BASE_MS);
    expect(backoffMs(3, () => 1)).toBe(BACKOFF_BASE_MS * 4);
    expect(backoffMs(30, () => 1)).toBe(BACKOFF_CAP_MS);
    expect(backoffMs(30, () => 0)).toBe(BACKOFF_CAP_MS / 2);
  });

  it('games rendezvous client - Retry-After in seconds or as a date; garbage and absence are ignored', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 7_000)).toBe(3000);
    expect(retryAfterMs('soon')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
    expect(retryAfterMs('-1')).toBeUndefined();
  });

  it('games rendezvous client - 503 and 429 are waited out (Retry-After honoured), each failure said with its URL; the answer after is returned', async () => {
    const s = await scripted([
      { status: 503, body: '{"detail":"the game store did not answer"}', headers: { 'retry-after': '0' } },
      { status: 429, body: '{"title":"Too many requests"}', headers: { 'retry-after': '0' } },
      { status: 502, body: '<html>bad gateway</html>', headers: { 'content-type': 'text/html', 'retry-after': '0' } },
      { status: 200, body: '{"status":1}' },
    ]);
    const { c, warnings } = client(s.url);
    const r = await c.call<{ status: number }>('/games/poll', {}, { deadline: Date.now() + 5000, waitingFor: 'to poll for guests' });
    expect(r).toEqual({ status: 200, body: { status: 1 } });
    expect(s.calls()).toBe(4);
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toBe(`POST ${s.url}/games/poll failed (HTTP 503: the game store did not answer); waiting for the rendezvous to poll for guests, next try in 0.0 s (gives up in 5 s)`);
    expect(warnings[1]).toContain('(HTTP 429: Too many requests)');
    expect(warnings[2]).toContain('(HTTP 502 with a body that is not JSON)');
  });

  it('games rendezvous client - an answer waiting cannot change (404, 409, 400) comes back at once', async () => {
    const s = await scripted([{ status: 404, body: '{"detail":"no game"}' }]);
    const { c, warnings } = client(s.url);
    expect((await c.call('/games/start', {}, { deadline: Date.now() + 5000, waitingFor: 'x' })).status).toBe(404);
    expect(s.calls()).toBe(1);
    expect(warnings).toEqual([]);
  });

  it('games rendezvous client - a server that is not there is retried until the deadline, then fails naming the URL and the reason', async () => {
    const s = await scripted([{ status: 200 }]);
    servers.splice(0).forEach((x) => x.close());
    const { c, warnings } = client(s.url);
    const started = Date.now();
    const err = await c.call('/games/start', {}, { deadline: Date.now() + 700, waitingFor: "to answer the host's candidates" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerError);
    expect((err as Error).message).toBe(`POST ${s.url}/games/start failed (ECONNREFUSED); gave up waiting for the rendezvous to answer the host's candidates: the deadline passed`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(650);
    expect(warnings.length).toBeGreaterThanOrEqual(2);
    expect(warnings.every((w) => w.startsWith(`POST ${s.url}/games/start failed (ECONNREFUSED)`))).toBe(true);
  });

  it('games rendezvous client - an abort ends the wait at once', async () => {
    const s = await scripted([{ status: 503, headers: { 'retry-after': '30' } }]);
    const { c } = client(s.url);
    const ctl = new AbortController();
    const started = Date.now();
    setTimeout(() => ctl.abort(), 100);
    await expect(c.call('/games/poll', {}, { deadline: Date.now() + 60_000, waitingFor: 'x', signal: ctl.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
