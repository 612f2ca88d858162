import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busSubject } from '../../src/bus/bus.js';
import { createSigner, sealEnvelope, type ResponseEnvelope } from '../../src/bus/envelope.js';
import { RpcError } from '../../src/core/errors.js';
import { DevStack, waitForPort } from '../../src/devstack/stack.js';
import type { Tip } from '../../src/directory/chain.js';
import { recordHash, signRecord } from '../../src/directory/records.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { RELAY_METHOD } from '../../src/relay/protocol.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { fixedDirectory, testBus, type TestOperator } from '../helpers/relay-bus.js';
import { freePorts, metrics, metricValue, pingUntilAnswered, curlJsonRpc, PING } from '../helpers/stack.js';
import { GamesProcess } from '../integration/games-process.js';
import { encodePreamble } from '../../src/core/splice-wire.js';

// The relay attacks of issue 9 replayed on the real stack (sd with the dev directory, `proxy run
// public`, hd-1, hd-2, public-proxy-eps-1, `games run` as games-1), each beside the legitimate
// use: who may open relay sessions, who may answer for the proxy, how many sessions one requester
// may hold, and how every spliced session ends (limits, idle timeout, single-use leg tokens).
//
// The proxy runs with small limits so that each one is reached within a test.

const PROXY = 'public-proxy-eps-1';
const LIMITS = { perRequester: 3, bytes: 65_536, durationMs: 1_500, idleMs: 800, dialWithinMs: 4_000 };
const certs = resolve('settings/dev/certs');
const read = (name: string) => readFileSync(`${certs}/${name}`);

let nats: TestNatsServer;
let stack: DevStack;
let games: GamesProcess;
/** Two more `games run` over one bucket, with small relay caps: the fairness tests. */
let fairA: GamesProcess;
let fairB: GamesProcess;
const FAIR_BUCKET = `GAMES_F${process.pid}`;
const FAIR_CAPS = { maxPerClient: 2, maxPerGame: 4 };
let nc: NatsConnection;
let ports: Awaited<ReturnType<typeof freePorts>>;

const proxyOp: TestOperator = { name: PROXY, cert: PROXY };
/** Verifies the proxy's replies as the directory would: the test's requesters need nothing more. */
const directory = fixedDirectory([proxyOp, { name: 'games-1', cert: 'games-1' }, { name: 'hd-1', cert: 'hd-1' }, { name: 'hd-2', cert: 'hd-2' }], []);
const requester = (name: string, cert = name) => testBus(nc, { name, cert }, directory);

type Asked = { ok: true; grant: Record<string, unknown> } | { ok: false; code: number; message: string };
const ask = (bus: ReturnType<typeof requester>, params: Record<string, unknown> = { v: 1, game: 'g' }): Promise<Asked> =>
  bus.request(PROXY, RELAY_METHOD, params).then(
    (grant) => ({ ok: true, grant: grant as Record<string, unknown> }),
    (err: RpcError) => ({ ok: false, code: err.code, message: err.message }),
  );

/** Sessions ever opened by the proxy: live plus finished, whatever the outcome; it only grows. */
async function opened(): Promise<number> {
  const text = await metrics(ports.metrics);
  const live = Number(/^eps_proxy_live_sessions (\d+)/m.exec(text)?.[1]);
  const finished = [...text.matchAll(/^eps_proxy_sessions_total\{outcome="[^"]+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  return live + finished;
}
const spliceEnds = async (reason: string) => metricValue(await metrics(ports.metrics), 'eps_proxy_splice_ends_total', `{reason="${reason}"}`);
const rejections = async (reason: string) => metricValue(await metrics(ports.metrics), 'eps_proxy_preamble_rejections_total', `{reason="${reason}"}`);
const liveSessions = async () => metricValue(await metrics(ports.metrics), 'eps_proxy_live_sessions');
/** The legs of a session the proxy has routed to its brokering actor, as its inspector shows them. */
const legsDialed = async (sessionId: string) => {
  const res = await fetch(`http://127.0.0.1:${ports.metrics}/inspect/api/sessions/${sessionId}`);
  if (res.status !== 200) return 0;
  const { timeline } = (await res.json()) as { timeline: { event: string }[] };
  return timeline.filter((e) => e.event === 'A_DIALED' || e.event === 'B_DIALED').length;
};

async function pairedGame(name: string, on: GamesProcess = games) {
  const host = `host-${name}`;
  const guest = `guest-${name}`;
  expect((await on.request('POST', '/games/register', { name, peerId: host })).status).toBe(201);
  await on.request('POST', '/games/poll', { name, peerId: host, addresses: ['198.51.100.1:4000'] });
  await on.request('POST', '/games/start', { name, peerId: guest, addresses: ['198.51.100.2:5000'] });
  expect((await on.request('POST', '/games/poll', { name, peerId: host, addresses: ['198.51.100.1:4000'] })).body).toMatchObject({ status: 1 });
  return { host, guest };
}

/** Both peers' grants for a fresh pairing, as POST /games/relay hands them out. */
async function grants(name: string) {
  const { host, guest } = await pairedGame(name);
  const g = await games.request('POST', '/games/relay', { name, peerId: guest });
  const h = await games.request('POST', '/games/relay', { name, peerId: host, guest });
  expect([h.status, g.status], JSON.stringify([h.body, g.body])).toEqual([200, 200]);
  return { host: h.body as { token: string; sessionId: string }, guest: g.body as { token: string; sessionId: string } };
}

const dials: Socket[] = [];
async function dial(token: string, extra = ''): Promise<Socket> {
  const socket = connectTcp({ host: '127.0.0.1', port: ports.splice, allowHalfOpen: true, noDelay: true });
  socket.on('error', () => {});
  dials.push(socket);
  await once(socket, 'connect');
  // The splice preamble without a proof (game peers hold no operator key), then the peer's bytes.
  socket.write(Buffer.concat([encodePreamble(Buffer.from(token, 'base64')), Buffer.from(extra)]));
  return socket;
}
const closedByProxy = (socket: Socket): Promise<unknown> => {
  socket.resume();
  // A reset is the proxy closing too: a sender cut off at its byte limit may have bytes the proxy
  // never read, and closing a socket with unread bytes makes the kernel answer RST, not FIN.
  if (socket.readableEnded || socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('end', resolve);
    socket.once('close', resolve);
    socket.once('error', resolve);
  });
};
const counted = (socket: Socket) => {
  let n = 0;
  let text = '';
  socket.on('data', (c: Buffer) => {
    n += c.length;
    if (text.length < 100) text += c.toString();
  });
  return { bytes: () => n, text: () => text };
};

beforeAll(async () => {
  nats = await TestNatsServer.start({ buckets: [`GAMES_T${process.pid}`, FAIR_BUCKET] });
  ports = await freePorts();
  stack = new DevStack({
    natsUrl: nats.url,
    ports,
    overrides: {
      'public-proxy-1': [
        `gameRelays: { dialWithinMs: ${LIMITS.dialWithinMs}, maxSessions: 50, maxSessionsPerRequester: ${LIMITS.perRequester}, maxDurationMs: ${LIMITS.durationMs}, maxBytesPerDirection: ${LIMITS.bytes} }`,
        `timeouts: { spliceIdleMs: ${LIMITS.idleMs} }`,
      ].join('\n'),
    },
  });
  await stack.startAll();
  await stack.sdSetup();
  await waitForPort(ports.splice, 15_000);
  games = await GamesProcess.start({ natsUrl: nats.url, bucket: `GAMES_T${process.pid}`, relayProxy: PROXY, directoryUrl: stack.sdUrl });
  const fair = { natsUrl: nats.url, bucket: FAIR_BUCKET, relayProxy: PROXY, directoryUrl: stack.sdUrl, relayCaps: FAIR_CAPS };
  [fairA, fairB] = await Promise.all([GamesProcess.start(fair), GamesProcess.start(fair)]);
  // The signing identities below are played over one admin connection: NATS permissions already
  // keep every principal but the rendezvous off relayRequest (test/hostile/bus-access.test.ts), so
  // this shows the second wall, the envelope and directory checks, holding on its own.
  nc = await nats.admin();
  // The proxy serves relayRequest once it holds the directory.
  const bus = requester('games-1');
  const until = Date.now() + 20_000;
  while (!(await ask(bus)).ok) {
    if (Date.now() > until) throw new Error('the proxy never served relayRequest');
    await new Promise((r) => setTimeout(r, 300));
  }
  bus.close();
  if (!(await pingUntilAnswered(ports.jsonrpc)).body?.result) throw new Error('hd-1 never reached hd-2 through the proxy');
}, 90_000);

afterAll(async () => {
  for (const s of dials) s.destroy();
  await nc?.close();
  await games?.stop();
  await fairA?.stop();
  await fairB?.stop();
  await stack?.stop();
  await nats?.stop();
});

describe('relay trust (real stack, signed relayRequest)', () => {
  it('relay trust - a relayRequest not signed by a directory operator with the relayRequest permission is refused and opens nothing', async () => {
    const before = await opened();
    // A directory operator, but not in the rendezvous group.
    const hd1 = requester('hd-1');
    expect(await ask(hd1)).toMatchObject({ ok: false, code: -32002, message: expect.stringContaining(`hd-1 may not call ${PROXY}.${RELAY_METHOD}`) });
    // Not in the directory at all, signing with a real key of the dev PKI.
    const mallory = requester('mallory', 'hd-2');
    expect(await ask(mallory)).toMatchObject({ ok: false, code: -32001 });
    // The rendezvous' name with someone else's key.
    const impostor = requester('games-1', 'hd-1');
    expect(await ask(impostor)).toMatchObject({ ok: false, code: -32010 });
    expect(await opened()).toBe(before);
    // The rendezvous itself, signing with its own key, is granted a relay.
    const legit = requester('games-1');
    expect(await ask(legit)).toMatchObject({ ok: true, grant: { endpoint: `127.0.0.1:${ports.splice}` } });
    expect(await opened()).toBe(before + 1);
    for (const b of [hd1, mallory, impostor, legit]) b.close();
  });

  it('relay trust - a plain request on the old subject has no responder, and plain JSON on relayRequest opens nothing', async () => {
    const before = await opened();
    const plain = JSON.stringify({ v: 1, game: 'g', requester: 'games-1' });
    await expect(nc.request(`eps.relay.${PROXY}.request`, plain, { timeout: 1_000 })).rejects.toThrow(/no responders/i);
    const reply = (await nc.request(busSubject(PROXY, RELAY_METHOD), JSON.stringify({ v: 1, game: 'g' }), { timeout: 2_000 })).json<{ error?: { code: number; message: string }; result?: unknown }>();
    expect(reply.result).toBeUndefined();
    expect(reply.error).toMatchObject({ code: -32600, message: expect.stringContaining('MALFORMED') });
    expect(await opened()).toBe(before);
  });

  it('relay trust - a flood from one requester hits its per-requester cap with a precise error, while another requester still gets a relay', async () => {
    await expect.poll(liveSessions, { timeout: 15_000, interval: 200 }).toBe(0);
    // A second rendezvous: hd-2 joins the group, by a record the directory admin signs.
    const tls = { ca: read('root.crt'), cert: read('hd-1.crt'), key: read('hd-1.key') };
    const rpc = <T>(method: string, params: unknown) => callJsonRpc<T>({ url: stack.sdUrl, serverName: 'sd-1', tls, timeoutMs: 5_000 }, method, params);
    const tip = await rpc<Tip>('getTip', {});
    const record = signRecord({ kind: 'member', group: 'rendezvous', operator: 'hd-2' }, tip.hash, { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') });
    expect(await rpc('submitRecords', { records: [record] })).toEqual({ accepted: 1, tip: { seq: tip.seq + 1, hash: recordHash(record) } });

    const flood = requester('games-1');
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => ask(flood, { v: 1, game: `flood-${i}` })));
    expect(answers.filter((a) => a.ok)).toHaveLength(LIMITS.perRequester);
    const refused = answers.filter((a): a is Extract<Asked, { ok: false }> => !a.ok);
    expect(refused).toHaveLength(8 - LIMITS.perRequester);
    for (const r of refused) {
      expect(r).toEqual({
        ok: false,
        code: -32030,
        message: `Relay refused: too many relay sessions open: games-1 has ${LIMITS.perRequester} relay sessions open, its limit of ${LIMITS.perRequester} per requester; retry shortly`,
      });
    }
    // games run asks as games-1 too: its peers are told why, precisely.
    const { guest } = await pairedGame('flooded');
    const r = await games.request('POST', '/games/relay', { name: 'flooded', peerId: guest });
    expect(r.status).toBe(503);
    expect(r.body!.detail).toContain(`its limit of ${LIMITS.perRequester} per requester`);

    // Another requester is untouched (once the proxy has the new record).
    const other = requester('hd-2');
    await expect.poll(async () => (await ask(other, { v: 1, game: 'other' })).ok, { timeout: 10_000, interval: 200 }).toBe(true);
    // The flood's sessions end at their dial deadline, and games-1 is served again.
    await expect.poll(async () => (await games.request('POST', '/games/relay', { name: 'flooded', peerId: guest })).status, { timeout: 15_000, interval: 300 }).toBe(200);
    for (const b of [flood, other]) b.close();
  });

  it("relay trust - a leg token is single use: the host's token presented again for the guest's leg is refused, the guest's own token splices", async () => {
    const { host, guest } = await grants('single-use');
    expect(host.token).not.toBe(guest.token);
    expect(host.sessionId).toBe(guest.sessionId);
    const usedBefore = await rejections('TOKEN_USED');
    const h = await dial(host.token);
    const hGot = counted(h);
    // The proxy has taken the host's leg (a fixed pause raced a loaded proxy: it could read the
    // thief's preamble first, and hand the thief the host's leg).
    await expect.poll(() => legsDialed(host.sessionId), { timeout: 10_000, interval: 20 }).toBe(1);
    // A stolen copy of the host's token, dialed as if it were the guest: refused, the host held on.
    const thief = await dial(host.token, 'thief');
    await closedByProxy(thief);
    expect(await rejections('TOKEN_USED')).toBe(usedBefore + 1);
    const g = await dial(guest.token, 'hello host');
    await expect.poll(() => hGot.text(), { timeout: 2_000 }).toBe('hello host');
    // Spliced: the guest's token does not work again either.
    await closedByProxy(await dial(guest.token));
    expect(await rejections('TOKEN_USED')).toBe(usedBefore + 2);
    h.end();
    g.end();
    await Promise.all([closedByProxy(h), closedByProxy(g)]);
  });

  it('relay trust - a relayed session past its byte limit, or its duration, is ended by the splicer with that reason', async () => {
    const bytesBefore = await spliceEnds('byteLimit');
    const a = await grants('bytes');
    const h = await dial(a.host.token);
    const g = await dial(a.guest.token);
    const gGot = counted(g);
    await new Promise((r) => setTimeout(r, 100));
    h.write(Buffer.alloc(LIMITS.bytes * 2, 1));
    await Promise.all([closedByProxy(h), closedByProxy(g)]);
    expect(gGot.bytes()).toBeLessThanOrEqual(LIMITS.bytes);
    await expect.poll(() => spliceEnds('byteLimit'), { timeout: 2_000 }).toBe(bytesBefore + 1);
    // The inspector shows the same final output as the metric counts.
    const seen = (await (await fetch(`http://127.0.0.1:${ports.metrics}/inspect/api/sessions/${a.host.sessionId}`)).json()) as {
      summary: { status: string; outcome: string };
      context: { detail: string; bytesAToB: number; bytesBToA: number };
    };
    expect(seen.summary).toMatchObject({ status: 'finished', outcome: 'closed' });
    // Only the host sent; whichever peer dialed first is the session's B, so count both ways.
    expect(seen.context.detail).toBe('byteLimit');
    expect(seen.context.bytesAToB + seen.context.bytesBToA).toBe(LIMITS.bytes);

    const durationBefore = await spliceEnds('durationLimit');
    const b = await grants('duration');
    const h2 = await dial(b.host.token);
    const g2 = await dial(b.guest.token);
    const started = Date.now();
    // Traffic keeps the idle timeout away: it is the duration that ends it.
    const beat = setInterval(() => h2.write('.'), 200);
    await Promise.all([closedByProxy(h2), closedByProxy(g2)]);
    clearInterval(beat);
    expect(Date.now() - started).toBeGreaterThanOrEqual(LIMITS.durationMs - 100);
    await expect.poll(() => spliceEnds('durationLimit'), { timeout: 2_000 }).toBe(durationBefore + 1);
  });

  it('relay trust - idle spliced sessions, relayed and brokered, are closed after the idle timeout', async () => {
    const idleBefore = await spliceEnds('idle');
    const { host, guest } = await grants('idle');
    const h = await dial(host.token);
    const g = await dial(guest.token);
    const started = Date.now();
    await Promise.all([closedByProxy(h), closedByProxy(g)]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(LIMITS.idleMs - 100);
    await expect.poll(() => spliceEnds('idle'), { timeout: 2_000 }).toBe(idleBefore + 1);

    // hd-1's ping to hd-2 is brokered through the same proxy; the channel then sits unused.
    await expect.poll(liveSessions, { timeout: 10_000, interval: 100 }).toBe(0);
    const brokeredBefore = await spliceEnds('idle');
    expect((await curlJsonRpc(ports.jsonrpc, PING)).body?.result).toBeDefined();
    await expect.poll(() => spliceEnds('idle'), { timeout: 5_000, interval: 100 }).toBe(brokeredBefore + 1);
    expect(await liveSessions()).toBe(0);
    // The next call brokers a fresh channel.
    expect((await pingUntilAnswered(ports.jsonrpc)).body?.result).toBeDefined();
  });

  it('relay trust - a grant forged by anyone but the proxy is rejected by games run: the peer gets 503, never the forged endpoint', async () => {
    await stack.stopRole('public-proxy-1');
    const { guest } = await pairedGame('forged');
    const hd1 = createSigner('hd-1', read('hd-1.key'));
    const forgedGrant = {
      v: 1,
      sessionId: 'forged',
      tokens: { host: Buffer.alloc(32, 1).toString('base64'), guest: Buffer.alloc(32, 2).toString('base64') },
      endpoint: '203.0.113.66:9999',
      dialWithinMs: 10_000,
      limits: { maxDurationMs: 1, maxBytesPerDirection: 1 },
    };
    const forgeries: [string, (req: { id: string; from: string }) => unknown][] = [
      ['plain JSON', () => forgedGrant],
      // Claims to be the proxy, signed with another operator's key.
      ['signed by hd-1 as the proxy', (req) => sealEnvelope<ResponseEnvelope>({ ...hd1, name: PROXY }, { kind: 'response', from: PROXY, to: req.from, id: req.id, result: forgedGrant })],
      // Honestly signed by another operator.
      ['signed by hd-1 as itself', (req) => sealEnvelope<ResponseEnvelope>(hd1, { kind: 'response', from: 'hd-1', to: req.from, id: req.id, result: forgedGrant })],
    ];
    let forge = forgeries[0]![1];
    const attacker: Subscription = nc.subscribe(busSubject(PROXY, RELAY_METHOD), {
      callback: (_err, msg) => {
        const req = msg.json<{ id: string; from: string }>();
        msg.respond(JSON.stringify(forge(req)));
      },
    });
    try {
      await nc.flush();
      for (const [what, make] of forgeries) {
        forge = make;
        const r = await games.request('POST', '/games/relay', { name: 'forged', peerId: guest });
        expect(r.status, what).toBe(503);
        expect(r.body, what).toMatchObject({ type: '/problems/relay-unavailable' });
        expect(r.body!.detail, what).toMatch(/reply rejected|does not answer this request/);
        expect(JSON.stringify(r.body), what).not.toContain('203.0.113.66');
      }
      expect(games.log).toContain('bus reply rejected');
    } finally {
      attacker.unsubscribe();
      stack.start('public-proxy-1');
    }
    // With the proxy back, the same peer is granted the proxy's own endpoint.
    await expect
      .poll(async () => (await games.request('POST', '/games/relay', { name: 'forged', peerId: guest })).body?.endpoint, { timeout: 20_000, interval: 300 })
      .toBe(`127.0.0.1:${ports.splice}`);
  });
});

describe('relay fairness (real stack, two games run over one bucket, relay.maxPerClient 2)', () => {
  it('relay fairness - concurrent POST /games/relay for one pairing, through two instances, open one proxy session and all get it', async () => {
    const { host, guest } = await pairedGame('one-pairing', fairA);
    // Each instance must hold the directory before the proxy's grants verify: one grant each, on
    // pairings of their own, then room at the proxy (LIMITS.perRequester) once those expire.
    for (const [i, on] of [fairA, fairB].entries()) {
      const warm = await pairedGame(`warm-fair-${i}`, on);
      // From addresses of their own: the warm-up's holds must not count against 127.0.0.1 below.
      await expect
        .poll(async () => (await on.requestFrom(`127.0.0.${5 + i}`, 'POST', '/games/relay', { name: `warm-fair-${i}`, peerId: warm.guest })).status, { timeout: 20_000, interval: 300 })
        .toBe(200);
    }
    await expect.poll(liveSessions, { timeout: 15_000, interval: 200 }).toBe(0);
    const before = await opened();
    const asks = await Promise.all([
      fairA.request('POST', '/games/relay', { name: 'one-pairing', peerId: guest }),
      fairB.request('POST', '/games/relay', { name: 'one-pairing', peerId: guest }),
      fairA.request('POST', '/games/relay', { name: 'one-pairing', peerId: guest }),
      fairB.request('POST', '/games/relay', { name: 'one-pairing', peerId: host, guest }),
      fairA.request('POST', '/games/relay', { name: 'one-pairing', peerId: host, guest }),
    ]);
    expect(asks.map((a) => a.status), JSON.stringify(asks.map((a) => a.body))).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(asks.map((a) => a.body!.sessionId)).size).toBe(1);
    expect(new Set(asks.slice(0, 3).map((a) => a.body!.token)).size).toBe(1);
    expect(asks[3]!.body!.token).toBe(asks[4]!.body!.token);
    expect(asks[3]!.body!.token).not.toBe(asks[0]!.body!.token);
    // The red team's three concurrent asks opened three sessions; now the proxy opened one.
    expect(await opened()).toBe(before + 1);
  });

  it('relay fairness - one client address at relay.maxPerClient is refused 429 on either instance, while another client gets a relay and its duel splices', async () => {
    // The previous sessions (and their holds) end within dialWithinMs + maxDurationMs.
    await expect.poll(liveSessions, { timeout: 15_000, interval: 200 }).toBe(0);
    const mallory = '127.0.0.2';
    const names = ['m1', 'm2', 'm3'];
    const pairs = [];
    for (const n of names) pairs.push(await pairedGame(n, fairA));
    const before = await opened();
    const taken = [];
    for (const [i, n] of names.slice(0, 2).entries()) {
      const r = await (i === 0 ? fairA : fairB).requestFrom(mallory, 'POST', '/games/relay', { name: n, peerId: pairs[i]!.guest });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      taken.push(r.body!);
    }
    // Mallory dials both legs of each and trickles a byte: the sessions are held open.
    const legs: Socket[] = [];
    for (const [i, n] of names.slice(0, 2).entries()) {
      const hostGrant = await fairB.requestFrom(mallory, 'POST', '/games/relay', { name: n, peerId: pairs[i]!.host, guest: pairs[i]!.guest });
      expect(hostGrant.body!.sessionId).toBe(taken[i]!.sessionId);
      legs.push(await dial(hostGrant.body!.token), await dial(taken[i]!.token));
    }
    const trickle = setInterval(() => legs.forEach((l) => l.write('.')), 200);
    try {
      // Her third, on either instance: refused before the proxy is asked.
      for (const on of [fairA, fairB]) {
        const r = await on.requestFrom(mallory, 'POST', '/games/relay', { name: 'm3', peerId: pairs[2]!.guest });
        expect(r.status).toBe(429);
        expect(r.body).toMatchObject({ type: '/problems/relay-client-limit', status: 429 });
        expect(r.body!.detail).toContain(`${mallory} holds ${FAIR_CAPS.maxPerClient} relay sessions, its limit (relay.maxPerClient)`);
        const retryAfter = Number(r.headers['retry-after']);
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(Math.ceil((LIMITS.dialWithinMs + LIMITS.durationMs) / 1000));
      }
      expect(await opened()).toBe(before + 2);

      // A genuine duel from other addresses is granted and relays: without the cap, her third would
      // have taken the proxy's last per-requester slot (LIMITS.perRequester) and this would be 503.
      const duel = await pairedGame('genuine', fairB);
      const g = await fairA.requestFrom('127.0.0.3', 'POST', '/games/relay', { name: 'genuine', peerId: duel.guest });
      const h = await fairB.requestFrom('127.0.0.4', 'POST', '/games/relay', { name: 'genuine', peerId: duel.host, guest: duel.guest });
      expect([g.status, h.status], JSON.stringify([g.body, h.body])).toEqual([200, 200]);
      expect(h.body!.sessionId).toBe(g.body!.sessionId);
      const hs = await dial(h.body!.token);
      const hGot = counted(hs);
      await new Promise((r) => setTimeout(r, 100));
      const gs = await dial(g.body!.token, 'your move');
      await expect.poll(() => hGot.text(), { timeout: 2_000 }).toBe('your move');
      hs.end();
      gs.end();
      expect(await opened()).toBe(before + 3);
    } finally {
      clearInterval(trickle);
      for (const l of legs) l.destroy();
    }
  });
});
