import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/core/errors.js';
import { DevStack, waitForPort } from '../../src/devstack/stack.js';
import { RELAY_METHOD, relayGrantSchema } from '../../src/relay/protocol.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { fixedDirectory, testBus } from '../helpers/relay-bus.js';
import { freePorts, metrics } from '../helpers/stack.js';
import { GamesProcess } from './games-process.js';
import { resultOf, runPeer } from './games-peer-cli.js';

// The relay fallback on loopback, with the real processes: sd with the dev directory, `proxy run
// public` (dev role, game relays on), `games run` as the directory operator games-1 asking that
// proxy over the signed bus, and the peer CLIs told to relay at once (--relay always), since
// nothing on loopback stops a punch. games-nat.test.ts shows the same fallback happening on its
// own behind NATs that map each destination to a new port; test/hostile/relay-trust.test.ts
// replays the attacks on relays.

const PROXY_OPERATOR = 'public-proxy-eps-1';
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
  stack = new DevStack({ natsUrl: nats.url, ports });
  // The proxy serves relayRequest once it holds the directory: the requests are signed.
  await stack.startAll(['sd-1', 'public-proxy-1']);
  await stack.sdSetup();
  await waitForPort(splicePort, 15_000);
  games = await GamesProcess.start({ natsUrl: nats.url, bucket: `GAMES_R${process.pid}`, relayProxy: PROXY_OPERATOR, directoryUrl: stack.sdUrl });
  // Both ends of relayRequest have learned the directory once one grant comes through.
  const { guest } = await pairedGame('warm-up');
  await relayOnceReady({ name: 'warm-up', peerId: guest });
}, 60_000);
afterAll(async () => {
  await games?.stop();
  await stack?.stop();
  await nats?.stop();
});

/** POST /games/relay until the proxy (and games run) hold the directory and the grant comes. */
async function relayOnceReady(body: Record<string, string>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await games.request('POST', '/games/relay', body);
    if (r.status === 200) return r;
    if (Date.now() > deadline) throw new Error(`no relay within ${timeoutMs} ms: ${r.status} ${JSON.stringify(r.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

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
    const [h, g] = await Promise.all([runPeer('host', peer('relayed duel', ['--relay', 'always', '--max-guests', '1'])), runPeer('guest', peer('relayed duel', ['--relay', 'always']))]);
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

  it('games relay - both peers of a pairing get the same session, each only its own token, with the limits; refusals are precise problem documents', async () => {
    const { host, guest } = await pairedGame('granted');
    const byGuest = await games.request('POST', '/games/relay', { name: 'granted', peerId: guest });
    expect(byGuest.status).toBe(200);
    expect(byGuest.body).toMatchObject({
      endpoint: `127.0.0.1:${splicePort}`,
      token: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/),
      // The dev proxy role's gameRelays limits, as the proxy signed them.
      limits: { maxDurationMs: 3_600_000, maxBytesPerDirection: 268_435_456 },
    });
    expect(byGuest.body!.dialWithinMs).toBeGreaterThan(0);
    const byHost = await games.request('POST', '/games/relay', { name: 'granted', peerId: host, guest });
    expect(byHost.body).toEqual({ ...byGuest.body, token: expect.stringMatching(/^[A-Za-z0-9+/]{43}=$/), dialWithinMs: expect.any(Number) });
    expect(byHost.body!.token).not.toBe(byGuest.body!.token);
    // Asking again hands each peer its own token again, never the other's.
    expect((await games.request('POST', '/games/relay', { name: 'granted', peerId: guest })).body!.token).toBe(byGuest.body!.token);
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
    // Across the bus's accounts nats-server 2.9 reports no "no responders": the deadline names it.
    expect(down.body!.detail).toMatch(new RegExp(`no proxy answered relays for ${PROXY_OPERATOR} within \\d+ ms \\(down, or too busy\\)`));
    stack.start('public-proxy-1');
    await waitForPort(splicePort, 15_000);
    await expect
      .poll(async () => (await games.request('POST', '/games/relay', { name: 'outage', peerId: guest })).status, { timeout: 20_000, interval: 300 })
      .toBe(200);
  });
  it('games relay - relayRequest with malformed params signed by the rendezvous is refused precisely, opens nothing, and the proxy keeps relaying', async () => {
    const nc = await nats.connectAs('games-1');
    const proxy = { name: PROXY_OPERATOR, cert: PROXY_OPERATOR };
    const rendezvous = { name: 'games-1', cert: 'games-1' };
    // The test signs as games-1 with its dev key; the proxy checks it against the real directory.
    const bus = testBus(nc, rendezvous, fixedDirectory([proxy, rendezvous], []));
    try {
      // Sessions ever opened: live ones plus every finished one, whatever its outcome. It only
      // grows, so a session from an earlier test expiring meanwhile cannot hide a new one.
      const opened = async () => {
        const text = await metrics(metricsPort);
        const live = Number(/^eps_proxy_live_sessions (\d+)/m.exec(text)?.[1]);
        const finished = [...text.matchAll(/^eps_proxy_sessions_total\{outcome="[^"]+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
        expect(Number.isInteger(live)).toBe(true);
        return live + finished;
      };
      const ask = (params: Record<string, unknown>) =>
        bus.request(PROXY_OPERATOR, RELAY_METHOD, params).then(
          (grant) => ({ ok: true as const, grant }),
          (err: RpcError) => ({ ok: false as const, code: err.code, message: err.message }),
        );
      const before = await opened();
      expect(await ask({ v: 2, game: 'g' })).toMatchObject({ ok: false, code: -32602, message: expect.stringContaining('v: ') });
      expect(await ask({ v: 1, game: 'g', requester: 'someone-else' })).toMatchObject({ ok: false, code: -32602, message: expect.stringContaining('Unrecognized key') });
      expect(await ask({ v: 1, game: 'x'.repeat(65) })).toMatchObject({ ok: false, code: -32602, message: expect.stringContaining('game') });
      expect(await opened()).toBe(before);
      const fine = await ask({ v: 1, game: 'fine' });
      expect(fine.ok).toBe(true);
      expect(relayGrantSchema.parse((fine as { grant: unknown }).grant)).toMatchObject({ endpoint: `127.0.0.1:${splicePort}` });
      expect(await opened()).toBe(before + 1);
    } finally {
      bus.close();
      await nc.close();
    }
  });
});
