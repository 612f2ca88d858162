import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { serveGameRelays } from '../../src/proxy/game-relays.js';
import { SessionRegistry } from '../../src/proxy/session-registry.js';
import { relaySubject } from '../../src/relay/protocol.js';
import { DevStack, waitForPort } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { freePorts, metrics } from '../helpers/stack.js';
import { GamesProcess } from './games-process.js';
import { resultOf, runPeer } from './games-peer-cli.js';

// The relay fallback on loopback, with the real processes: `proxy run public` (dev role, game
// relays on), `games run` configured to ask that proxy, and the peer CLIs told to relay at once
// (--relay always), since nothing on loopback stops a punch. games-nat.test.ts shows the same
// fallback happening on its own behind NATs that map each destination to a new port.

const PROXY_OPERATOR = 'public-proxy-eps-1';
const silent = pino({ level: 'silent' });
let nats: TestNatsServer;
let stack: DevStack;
let games: GamesProcess;
let splicePort: number;
let metricsPort: number;

beforeAll(async () => {
  nats = await TestNatsServer.start({ buckets: [`GAMES_R${process.pid}`] });
  const ports = await freePorts();
  splicePort = ports.splice;
  metricsPort = ports.metrics;
  // The directory is not needed for game relays: the proxy serves them before it has one.
  stack = new DevStack({ natsUrl: nats.url, ports });
  stack.start('public-proxy-1');
  await waitForPort(splicePort, 15_000);
  games = await GamesProcess.start({ natsUrl: nats.url, bucket: `GAMES_R${process.pid}`, relayProxy: PROXY_OPERATOR });
});
afterAll(async () => {
  await games?.stop();
  await stack?.stop();
  await nats?.stop();
});

const peer = (name: string, extra: string[] = []) => ['--server', `http://127.0.0.1:${games.httpPort}`, '--name', name, '--stun', `127.0.0.1:${games.stunPort}`, ...extra];

/** Registers a game, has one guest start and the host poll, so the pairing has swapped candidates. */
async function pairedGame(name: string) {
  const reg = await games.request('POST', '/games/register', { name, peerId: `host-${name}` });
  expect(reg.status).toBe(201);
  const guest = `guest-${name}`;
  await games.request('POST', '/games/poll', { name, peerId: `host-${name}`, addresses: ['198.51.100.1:4000'] });
  expect((await games.request('POST', '/games/start', { name, peerId: guest, addresses: ['198.51.100.2:5000'] })).body).toMatchObject({ status: 1 });
  expect((await games.request('POST', '/games/poll', { name, peerId: `host-${name}`, addresses: ['198.51.100.1:4000'] })).body).toMatchObject({ status: 1 });
  return { host: `host-${name}`, guest };
}

describe('game relay through the P2P proxy (real proxy run public, games run, peer CLIs)', () => {
  it('games relay - host and guest relayed through the proxy report relayed, authenticate each other and are spliced once', async () => {
    const before = await metrics(metricsPort);
    const [h, g] = await Promise.all([runPeer('host', peer('relayed duel', ['--relay', 'always'])), runPeer('guest', peer('relayed duel', ['--relay', 'always']))]);
    const hr = resultOf(h);
    const gr = resultOf(g);
    console.log(`relayed on loopback: host ${JSON.stringify(hr)} guest ${JSON.stringify(gr)}`);
    expect(hr).toMatchObject({ result: 'relayed', peer: `127.0.0.1:${splicePort}` });
    expect(gr).toMatchObject({ result: 'relayed', peer: `127.0.0.1:${splicePort}` });
    expect(hr.rttMs).toBeGreaterThan(0);
    expect(hr.rttMs).toBeLessThan(1000);
    // Both were handed the one session: the stderr traces name the same session id.
    const session = /relay granted at \S+ \(session ([0-9a-f-]{36})/.exec(h.stderr)?.[1];
    expect(session).toBeDefined();
    expect(g.stderr).toContain(`session ${session}`);
    const after = await metrics(metricsPort);
    const spliced = (text: string) => Number(/^eps_proxy_spliced_total (\d+)/m.exec(text)?.[1] ?? NaN);
    expect(spliced(after) - spliced(before)).toBe(1);
    // The splice ended once both peers closed: a finished session with the closed outcome.
    const closed = (text: string) => Number(/^eps_proxy_sessions_total\{outcome="closed"\} (\d+)/m.exec(text)?.[1] ?? NaN);
    await expect.poll(async () => closed(await metrics(metricsPort)) - closed(before)).toBe(1);
  });

  it('games relay - both peers of a pairing get the same grant; refusals are precise problem documents', async () => {
    const { host, guest } = await pairedGame('granted');
    const byGuest = await games.request('POST', '/games/relay', { name: 'granted', peerId: guest });
    expect(byGuest.status).toBe(200);
    expect(byGuest.body).toMatchObject({ endpoint: `127.0.0.1:${splicePort}`, token: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/) });
    expect(byGuest.body!.dialWithinMs).toBeGreaterThan(0);
    const byHost = await games.request('POST', '/games/relay', { name: 'granted', peerId: host, guest });
    expect(byHost.body).toEqual({ ...byGuest.body, dialWithinMs: expect.any(Number) });
    expect((await games.request('GET', '/games/granted')).body).toMatchObject({ state: 'paired' });

    const refusals = [
      [{ name: 'nowhere', peerId: guest }, 404, 'no game named "nowhere"'],
      [{ name: 'granted', peerId: 'stranger' }, 403, 'neither the host'],
      [{ name: 'granted', peerId: host }, 400, 'must name the guest'],
      [{ name: 'granted', peerId: host, guest: 'nobody' }, 404, 'has no guest "nobody"'],
      [{ name: 'granted', peerId: guest, token: 'x' }, 400, 'must NOT have additional properties'],
    ] as const;
    for (const [body, status, detail] of refusals) {
      const r = await games.request('POST', '/games/relay', body);
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.type).toContain('application/problem+json');
      expect(r.body!.detail).toContain(detail);
    }

    // A guest whose candidates never reached the host has not tried to punch: no relay yet.
    await games.request('POST', '/games/start', { name: 'granted', peerId: 'late-guest', addresses: ['198.51.100.9:5000'] });
    const early = await games.request('POST', '/games/relay', { name: 'granted', peerId: 'late-guest' });
    expect(early.status).toBe(409);
    expect(early.body).toMatchObject({ type: '/problems/not-paired' });
  });

  it('games relay - with the proxy down a relay request is answered 503 naming why, and works again once it is back', async () => {
    const { guest } = await pairedGame('outage');
    await stack.stopRole('public-proxy-1');
    const down = await games.request('POST', '/games/relay', { name: 'outage', peerId: guest });
    expect(down.status).toBe(503);
    expect(down.body).toMatchObject({ type: '/problems/relay-unavailable' });
    expect(down.body!.detail).toContain(`no proxy serves relays for ${PROXY_OPERATOR}`);
    stack.start('public-proxy-1');
    await waitForPort(splicePort, 15_000);
    await expect
      .poll(async () => (await games.request('POST', '/games/relay', { name: 'outage', peerId: guest })).status, { timeout: 10_000, interval: 300 })
      .toBe(200);
  });
  it('games relay - malformed relay requests on the bus get a precise refusal, open no session, and the proxy keeps relaying', async () => {
    const nc = await nats.connectAs('games-1');
    try {
      const ask = async (data: string) => (await nc.request(relaySubject(PROXY_OPERATOR), data, { timeout: 2000 })).json<{ ok: boolean; error?: string }>();
      // Sessions ever opened: live ones plus every finished one, whatever its outcome. It only
      // grows, so a session from an earlier test expiring meanwhile cannot hide a new one.
      const opened = async () => {
        const text = await metrics(metricsPort);
        const live = Number(/^eps_proxy_live_sessions (\d+)/m.exec(text)?.[1]);
        const finished = [...text.matchAll(/^eps_proxy_sessions_total\{outcome="[^"]+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
        expect(Number.isInteger(live)).toBe(true);
        return live + finished;
      };
      const before = await opened();
      expect(await ask('not json')).toEqual({ ok: false, error: 'the request is not JSON' });
      expect(await ask(JSON.stringify({ v: 2, game: 'g', requester: 'r' }))).toMatchObject({ ok: false, error: expect.stringContaining('v: ') });
      expect(await ask(JSON.stringify({ v: 1, game: 'g', requester: 'r', extra: 1 }))).toMatchObject({ ok: false, error: expect.stringContaining('Unrecognized key') });
      expect(await ask(JSON.stringify({ v: 1, game: 'x'.repeat(65), requester: 'r' }))).toMatchObject({ ok: false, error: expect.stringContaining('game') });
      // A well-formed request nobody can receive the answer to opens nothing either.
      nc.publish(relaySubject(PROXY_OPERATOR), JSON.stringify({ v: 1, game: 'g', requester: 'no-reply' }));
      await nc.flush();
      expect(await opened()).toBe(before);
      expect(await ask(JSON.stringify({ v: 1, game: 'fine', requester: 'test' }))).toMatchObject({ ok: true, endpoint: `127.0.0.1:${splicePort}` });
      expect(await opened()).toBe(before + 1);
    } finally {
      await nc.close();
    }
  });

  it('games relay - a proxy holding its limit of relay sessions refuses more with a precise error until one ends', async () => {
    // A made-up proxy operator no generated principal serves: the admin plays both sides.
    const nc = await nats.admin();
    const registry = new SessionRegistry({ log: silent, notifyB: () => new Promise(() => {}), confirmToA: () => new Promise(() => {}) });
    const operator = `capped-proxy-${process.pid}`;
    // Sessions nobody dials end at their 300 ms deadline, which frees their slots.
    const sub = serveGameRelays({ nc, operator, queue: 'cap', endpoint: '127.0.0.1:9', dialWithinMs: 300, maxLive: 2, open: (r, via) => registry.open(r, via), log: silent });
    try {
      const ask = async () =>
        (await nc.request(relaySubject(operator), JSON.stringify({ v: 1, game: 'busy', requester: 'test' }), { timeout: 2000 })).json<{ ok: boolean; error?: string }>();
      expect((await ask()).ok).toBe(true);
      expect((await ask()).ok).toBe(true);
      expect(await ask()).toEqual({ ok: false, error: 'the proxy has 2 relay sessions open, its limit; retry shortly' });
      expect(registry.liveCount()).toBe(2);
      await expect.poll(() => registry.liveCount(), { timeout: 2000, interval: 20 }).toBe(0);
      expect((await ask()).ok).toBe(true);
    } finally {
      sub.unsubscribe();
      await registry.shutdown();
      await nc.close();
    }
  });
});
