import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { dialAndPresent } from '../../src/core/dial.js';
import { packageRoot } from '../../src/core/package-root.js';
import { readTlsMaterial } from '../../src/core/tls-material.js';
import { DevStack, type RoleName, type StackPorts } from '../../src/devstack/stack.js';
import { connectSplicedPeerClient } from '../../src/grpc/spliced-client.js';
import type { PeerClient } from '../../src/grpc/peer-transport.js';
import { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { DirectoryClient } from '../../src/directory/client.js';
import { connectBus } from '../../src/core/nats.js';
import { TestNatsCluster } from '../helpers/nats-cluster.js';
import { waitForJetStream } from '../../src/devstack/jetstream-ready.js';
import { CERTS, metrics, metricValue, roleLog } from '../helpers/stack.js';
import { distinctFreePorts } from '../helpers/ports.js';

// The cluster profile on a real 3-node nats-server cluster (the generated configuration: routes
// over mutual TLS, JetStream clustered): the directory stream and the games buckets at R3, two
// proxies of one operator in one queue group, a client that moves to another node when its node dies.

const log = pino({ level: 'silent' });
const PROXY = 'public-proxy-eps-1';
const hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
const signer = createSigner('hd-1', hd1.key);
const hd2 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-2.crt`, key: `${CERTS}/hd-2.key` });
/** Where each process connects first: no proxy on node 3, where A is, so either proxy may take A's requests. */
const HOME: Partial<Record<RoleName, number>> = { 'sd-1': 0, 'public-proxy-1': 0, 'games-1': 0, 'public-proxy-2': 1, 'games-2': 1, 'hd-2': 1, 'hd-1': 2 };
const A_HOME = 2;
/** Long enough to ping through a draining proxy, short enough for the test. */
const DRAIN_MS = 4000;

interface Brokered {
  endpoint: string;
  client: PeerClient;
}

describe('cluster (3 nats-servers, 2 proxies of one operator, real processes)', () => {
  let cluster: TestNatsCluster;
  let stack: DevStack;
  let a: { nc: Awaited<ReturnType<typeof connectBus>>; bus: Bus; directory: DirectoryClient };
  const endpoints: Record<string, string> = {};

  /** A brokers a connection to hd-2 as hd-1 does: request, dial the endpoint the confirmation names, gRPC over the splice. */
  async function broker(): Promise<Brokered> {
    const c = (await a.bus.request(PROXY, 'connectionRequest', { to: 'hd-2' })) as { token: string; challenge: string; endpoint: string; sessionId: string };
    return { endpoint: c.endpoint, client: await dialConfirmed(c) };
  }
  async function dialConfirmed(c: { token: string; challenge: string; endpoint: string; sessionId: string }): Promise<PeerClient> {
    const socket = await dialAndPresent(c.endpoint, {
      token: Buffer.from(c.token, 'base64'),
      prove: { key: signer.key, subject: { proxy: PROXY, sessionId: c.sessionId, leg: 'a', challenge: Buffer.from(c.challenge, 'base64') } },
    });
    return connectSplicedPeerClient({ socket, tls: hd1, expectedPeer: { name: 'hd-2', fingerprint: hd2.fingerprint }, log });
  }
  const spliced = async (role: 'public-proxy-1' | 'public-proxy-2') =>
    metricValue(await metrics(role === 'public-proxy-1' ? stack.opts.ports.metrics : stack.opts.ports.second!.metrics), 'eps_proxy_spliced_total');

  beforeAll(async () => {
    cluster = await TestNatsCluster.start(3);
    const [sd, jsonrpc, splice, metricsPort, games, stun, splice2, metrics2, games2, stun2] = await distinctFreePorts(10, cluster.ports);
    const ports: StackPorts = { sd: sd!, jsonrpc: jsonrpc!, splice: splice!, metrics: metricsPort!, games: games!, stun: stun!, second: { splice: splice2!, metrics: metrics2!, games: games2!, stun: stun2! } };
    endpoints['public-proxy-1'] = `127.0.0.1:${ports.splice}`;
    endpoints['public-proxy-2'] = `127.0.0.1:${ports.second!.splice}`;
    stack = new DevStack({
      natsUrl: cluster.urls(0),
      natsUrlOf: (role) => cluster.urls(HOME[role] ?? 0),
      profile: join(packageRoot, 'settings/cluster'),
      ports,
      ...(process.env.EPS_CLUSTER_TEST_LOGS ? { logDir: process.env.EPS_CLUSTER_TEST_LOGS } : {}),
      overrides: {
        'public-proxy-1': `timeouts: { drainMs: ${DRAIN_MS} }\n`,
        'public-proxy-2': `timeouts: { drainMs: ${DRAIN_MS} }\n`,
      },
    });
    await stack.startAll(['sd-1', 'public-proxy-1', 'public-proxy-2', 'hd-2', 'games-1', 'games-2']);
    await stack.sdSetup();
    await Promise.all([
      stack.waitUntilListening('public-proxy-1', ports.splice, 20_000),
      stack.waitUntilListening('public-proxy-2', ports.second!.splice, 20_000),
      stack.waitUntilListening('games-1', ports.games, 20_000),
      stack.waitUntilListening('games-2', ports.second!.games, 20_000),
    ]);
    const nc = await connectBus({ url: cluster.urls(A_HOME), randomize: false, name: 'cluster-test-a', tls: hd1 }, log);
    const directory = new DirectoryClient({ url: stack.sdUrl, serverName: 'sd-1', tls: hd1, nc, log });
    directory.start();
    await directory.ready();
    const bus = new Bus({ nc, signer, directory, log, maxAgeMs: 30_000, maxBytes: 65_536, requestTimeoutMs: 10_000 });
    a = { nc, bus, directory };
    // Both proxies and hd-2 learn the directory over the bus a moment after sd-setup.
    const deadline = Date.now() + 30_000;
    const serving = (role: RoleName) => roleLog(stack, role).includes('public proxy brokering');
    for (;;) {
      const ok = serving('public-proxy-1') && serving('public-proxy-2') && (await broker().then(async (b) => (await b.client.call('_ping', {}), b.client.close(), true)).catch(() => false));
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`the cluster stack did not broker within 30 s; logs in ${stack.logDir}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }, 90_000);

  afterAll(async () => {
    a?.bus.close();
    await a?.directory.close();
    await a?.nc.close().catch(() => undefined);
    await stack?.stop();
    await cluster?.stop();
  }, 30_000);

  it('cluster - the directory stream and the games buckets are replicated on 3 nodes; a game registered on one games instance is seen by the other', async () => {
    const ops = await cluster.connectAs('nats-admin');
    const games = await cluster.connectAs('nats-admin-games');
    try {
      const directory = await (await jetstreamManager(ops)).streams.info('EPS_SD_RECORDS');
      expect(directory.config.num_replicas).toBe(3);
      expect(directory.cluster?.replicas?.length).toBe(2);
      const gjsm = await jetstreamManager(games);
      for (const bucket of ['KV_EPS_GAMES', 'KV_EPS_GAMES_LOBBY', 'KV_EPS_GAMES_LIMITS']) {
        expect((await gjsm.streams.info(bucket)).config.num_replicas, bucket).toBe(3);
      }
    } finally {
      await ops.close();
      await games.close();
    }
    const post = (port: number, path: string, body: unknown) =>
      fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post(stack.opts.ports.games, '/games/register', { name: 'cluster-go', peerId: 'host-1' })).status).toBe(201);
    await post(stack.opts.ports.games, '/games/poll', { name: 'cluster-go', peerId: 'host-1', addresses: ['203.0.113.1:4000'] });
    const start = await post(stack.opts.ports.second!.games, '/games/start', { name: 'cluster-go', peerId: 'guest-1', addresses: ['198.51.100.7:5000'] });
    expect(await start.json()).toEqual({ status: 1, addresses: ['203.0.113.1:4000'] });
  });

  it('cluster - a route port admits only the route certificate: an operator certificate of the same root cannot join as a route', async () => {
    const answer = await new Promise<string>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: cluster.nodes[0]!.routePort, ca: hd1.ca, cert: hd1.cert, key: hd1.key, rejectUnauthorized: false });
      let got = '';
      s.on('secureConnect', () => s.write('CONNECT {"verbose":false,"pedantic":false,"tls_required":true,"name":"intruder"}\r\nPING\r\n'));
      s.on('data', (d) => (got += d.toString()));
      s.on('error', () => undefined);
      s.on('close', () => resolve(got));
      setTimeout(() => s.destroy(), 5000);
    });
    expect(answer).toContain('Authorization Violation');
    expect(answer).not.toContain('PONG');
  });

  it('cluster - many brokerings spread over both proxies; each session meets on the proxy that took it, and every ping answers', async () => {
    const before = { p1: await spliced('public-proxy-1'), p2: await spliced('public-proxy-2') };
    const seen: string[] = [];
    for (let batch = 0; batch < 4; batch++) {
      const sessions = await Promise.all(Array.from({ length: 6 }, () => broker()));
      for (const s of sessions) {
        // The endpoint is that of the proxy that took the request; A's leg met B's there, or no ping.
        expect(Object.values(endpoints)).toContain(s.endpoint);
        expect(await s.client.call('_ping', {})).toMatchObject({ serverInfo: expect.anything() });
        seen.push(s.endpoint);
        s.client.close();
      }
    }
    const by1 = seen.filter((e) => e === endpoints['public-proxy-1']).length;
    const by2 = seen.filter((e) => e === endpoints['public-proxy-2']).length;
    expect(by1, `proxy 1 took ${by1}, proxy 2 ${by2}`).toBeGreaterThan(0);
    expect(by2, `proxy 1 took ${by1}, proxy 2 ${by2}`).toBeGreaterThan(0);
    // Each proxy spliced exactly the sessions it confirmed: no leg went to the other one.
    expect((await spliced('public-proxy-1')) - before.p1).toBe(by1);
    expect((await spliced('public-proxy-2')) - before.p2).toBe(by2);
  }, 60_000);

  it('cluster - a draining proxy keeps its spliced and confirmed sessions, takes no new one while the other serves, and exits at its deadline', async () => {
    // A spliced session and a confirmed one (A not dialed yet), both on the proxy that will drain.
    let held: Brokered | undefined;
    for (let i = 0; i < 20 && held === undefined; i++) {
      const b = await broker();
      if (b.endpoint === endpoints['public-proxy-1']) held = b;
      else b.client.close();
    }
    if (!held) throw new Error('proxy 1 took none of 20 requests');
    type Confirmation = { token: string; challenge: string; endpoint: string; sessionId: string };
    let confirmed: Confirmation | undefined;
    for (let i = 0; i < 20 && confirmed === undefined; i++) {
      const c = (await a.bus.request(PROXY, 'connectionRequest', { to: 'hd-2' })) as Confirmation;
      if (c.endpoint === endpoints['public-proxy-1']) confirmed = c;
      else (await dialConfirmed(c)).close();
    }
    if (!confirmed) throw new Error('proxy 1 confirmed none of 20 requests');

    const proxy1 = stack.child('public-proxy-1')!;
    const exited = new Promise<number | null>((resolve) => proxy1.once('exit', (code) => resolve(code)));
    const stopAt = Date.now();
    proxy1.kill('SIGTERM');
    await expect.poll(() => roleLog(stack, 'public-proxy-1').includes('draining: taking no new sessions'), { timeout: 5000, interval: 50 }).toBe(true);

    // In flight: the spliced session still answers, and the confirmed one can still be dialed.
    expect(await held.client.call('_ping', {})).toMatchObject({ serverInfo: expect.anything() });
    const late = await dialConfirmed(confirmed);
    expect(await late.call('_ping', {})).toMatchObject({ serverInfo: expect.anything() });
    // New requests all go to the other proxy while this one drains.
    for (let i = 0; i < 6; i++) {
      const b = await broker();
      expect(b.endpoint).toBe(endpoints['public-proxy-2']);
      expect(await b.client.call('_ping', {})).toMatchObject({ serverInfo: expect.anything() });
      b.client.close();
    }
    expect(proxy1.exitCode).toBeNull();

    // Channels outlive the deadline here (hd-1 keeps them for reuse): the proxy ends them then, and exits cleanly.
    expect(await exited).toBe(0);
    expect(Date.now() - stopAt).toBeGreaterThanOrEqual(DRAIN_MS - 200);
    expect(roleLog(stack, 'public-proxy-1')).toContain('drain deadline passed');
    await expect(held.client.call('_ping', {})).rejects.toThrow();
    held.client.close();
    late.close();
  }, 60_000);

  it('cluster - a client whose node is killed moves to another node and brokers on', async () => {
    const nodeOf = () => a.nc.info?.port;
    expect(nodeOf()).toBe(cluster.nodes[A_HOME]!.clientPort);
    await cluster.killNode(A_HOME);
    await expect.poll(() => nodeOf() !== cluster.nodes[A_HOME]!.clientPort && !a.nc.isClosed(), { timeout: 10_000, interval: 100 }).toBe(true);
    const b = await broker();
    expect(b.endpoint).toBe(endpoints['public-proxy-2']);
    expect(await b.client.call('_ping', {})).toMatchObject({ serverInfo: expect.anything() });
    b.client.close();
    // The replicated directory still answers with one node of three gone, once JetStream has
    // elected new leaders where the killed node led (the cluster's meta group, the stream's).
    const ops = await cluster.connectAs('nats-admin', 0);
    try {
      await waitForJetStream(ops, 20_000);
      const jsm = await jetstreamManager(ops, { checkAPI: false, timeout: 2000 });
      await expect
        .poll(async () => (await jsm.streams.info('EPS_SD_RECORDS').catch(() => undefined))?.state.messages ?? 0, { timeout: 20_000, interval: 250 })
        .toBeGreaterThan(0);
    } finally {
      await ops.close();
    }
  }, 60_000);
});
