import { once } from 'node:events';
import { connect as connectTcp, type Socket } from 'node:net';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevStack, waitForPort } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { roleLog, freePorts, metrics, metricValue, pingUntilAnswered, curlJsonRpc, PING } from '../helpers/stack.js';
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { recordHash, signRecord, type RecordSigner } from '../../src/directory/records.js';
import type { Tip } from '../../src/directory/chain.js';
import { GamesProcess } from '../integration/games-process.js';

// Red-team probes on the real stack (sd, proxy, hd-1, hd-2, eps proxy, games run).
const PROXY = 'public-proxy-eps-1';
const BUCKET = `GAMES_R${process.pid}`;
const PER_REQUESTER = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

let nats: TestNatsServer;
let stack: DevStack;
let games: GamesProcess;
let ports: Awaited<ReturnType<typeof freePorts>>;
const conns: NatsConnection[] = [];
const dials: Socket[] = [];

async function pairedGame(name: string) {
  const host = `host-${name}`;
  const guest = `guest-${name}`;
  expect((await games.request('POST', '/games/register', { name, peerId: host })).status).toBe(201);
  await games.request('POST', '/games/poll', { name, peerId: host, addresses: ['198.51.100.1:4000'] });
  await games.request('POST', '/games/start', { name, peerId: guest, addresses: ['198.51.100.2:5000'] });
  await games.request('POST', '/games/poll', { name, peerId: host, addresses: ['198.51.100.1:4000'] });
  return { host, guest };
}
async function dial(token: string): Promise<Socket> {
  const socket = connectTcp({ host: '127.0.0.1', port: ports.splice, allowHalfOpen: true, noDelay: true });
  socket.on('error', () => {});
  dials.push(socket);
  await once(socket, 'connect');
  socket.write(Buffer.from(token, 'base64'));
  return socket;
}
const live = async () => metricValue(await metrics(ports.metrics), 'eps_proxy_live_sessions');

beforeAll(async () => {
  nats = await TestNatsServer.start({ buckets: [BUCKET] });
  ports = await freePorts();
  stack = new DevStack({
    natsUrl: nats.url,
    ports,
    overrides: {
      'public-proxy-1': [`gameRelays: { dialWithinMs: 4000, maxSessions: 50, maxSessionsPerRequester: ${PER_REQUESTER} }`, `timeouts: { spliceIdleMs: 3000 }`].join('\n'),
    },
  });
  await stack.startAll();
  await stack.sdSetup();
  await waitForPort(ports.splice, 15_000);
  games = await GamesProcess.start({ natsUrl: nats.url, bucket: BUCKET, relayProxy: PROXY, directoryUrl: stack.sdUrl });
  await pingUntilAnswered(ports.jsonrpc);
  // wait until relays are served
  const until = Date.now() + 20_000;
  for (let i = 0; ; i++) {
    const { host, guest } = await pairedGame(`warm${i}`);
    const r = await games.request('POST', '/games/relay', { name: `warm${i}`, peerId: guest });
    void host;
    if (r.status === 200) break;
    if (Date.now() > until) throw new Error('no relay');
    await sleep(500);
  }
  for (let t = 0; t < 40 && (await live()) !== 0; t++) await sleep(300);
}, 120_000);

afterAll(async () => {
  for (const s of dials) s.destroy();
  for (const c of conns) await c.close().catch(() => undefined);
  await games?.stop();
  await stack?.stop();
  await nats?.stop();
});

describe('redteam on the real stack', () => {
  it('redteam - one anonymous HTTP client fills the rendezvous-wide per-requester cap; a real pairing then gets 503', async () => {
    // concurrent relay requests for one pairing: how many proxy sessions does it open?
    const { guest, host } = await pairedGame('conc');
    const before = await live();
    const rs = await Promise.all(Array.from({ length: 3 }, () => games.request('POST', '/games/relay', { name: 'conc', peerId: guest })));
    console.log('concurrent relay statuses', rs.map((r) => r.status), 'proxy sessions opened by one pairing:', (await live()) - before);
    void host;
    await expect.poll(live, { timeout: 10_000, interval: 300 }).toBe(0);
    // The attacker: its own games, both ends dialed, a byte now and then.
    const keep: Socket[] = [];
    for (let i = 0; i < PER_REQUESTER; i++) {
      const p = await pairedGame(`att${i}`);
      const g = await games.request('POST', '/games/relay', { name: `att${i}`, peerId: p.guest });
      const h = await games.request('POST', '/games/relay', { name: `att${i}`, peerId: p.host, guest: p.guest });
      keep.push(await dial(h.body!.token), await dial(g.body!.token));
    }
    const timer = setInterval(() => keep.forEach((s) => s.write('.')), 1000);
    try {
      await sleep(500);
      console.log('live after attacker', await live());
      const v = await pairedGame('victim');
      const r = await games.request('POST', '/games/relay', { name: 'victim', peerId: v.guest });
      console.log('victim relay', r.status, JSON.stringify(r.body));
      await sleep(5000);
      console.log('attacker sessions still live after 5 s (idle 3 s):', await live());
    } finally {
      clearInterval(timer);
      keep.forEach((s) => s.destroy());
    }
  }, 90_000);

  it('redteam - hd-1 delivers directory records as requests to a method it may not call (relayRequest) via a push consumer', async () => {
    const hd1 = await nats.connectAs('hd-1', 'rt-hd1');
    conns.push(hd1);
    const direct = await hd1.request('eps.op.public-proxy-eps-1.relayRequest', '{}', { timeout: 1000 }).then(() => 'answered', (e) => `direct publish: ${String((e as Error).cause ?? e)}`);
    console.log(direct);
    const r = dec((await hd1.request('$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', JSON.stringify({ stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: 'eps.op.public-proxy-eps-1.relayRequest', deliver_group: 'eps-proxy', ack_policy: 'explicit', deliver_policy: 'all' } }))).data);
    console.log('consumer', r.slice(0, 120), 'push_bound', /push_bound":true/.test(r));
    await sleep(1500);
    for (const role of ['public-proxy-1'] as const) {
      const lines = roleLog(stack, role).split('\n').filter((l) => /rejected|not a request/.test(l));
      console.log(role, 'rejections logged:', lines.length, lines[0]?.slice(0, 300));
    }
  }, 30_000);

  it('redteam - amplification: 500 push consumers replay the directory into the proxy relayRequest handler', async () => {
    const hd1 = await nats.connectAs('hd-1', 'rt-hd1-amp');
    conns.push(hd1);
    const count = () => roleLog(stack, 'public-proxy-1').split('\n').filter((l) => /bus envelope rejected/.test(l)).length;
    const before = count();
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 500 }, () => hd1.request('$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', JSON.stringify({ stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: 'eps.op.public-proxy-eps-1.relayRequest', deliver_group: 'eps-proxy', ack_policy: 'none', deliver_policy: 'all' } }), { timeout: 10000 })));
    const pt = Date.now();
    const ping = await curlJsonRpc(ports.jsonrpc, PING);
    console.log('ping during amplification', ping.body?.result ? 'ok' : JSON.stringify(ping.body).slice(0, 200), Date.now() - pt, 'ms');
    await sleep(3000);
    console.log(`500 consumers in ${pt - t0} ms; envelopes the proxy rejected: ${count() - before}`);
  }, 60_000);

  it('redteam - games-1 widens its bucket stream and reads bus traffic (splice tokens), requests still answered?', async () => {
    const g = await nats.connectAs('games-1', 'rt-games');
    conns.push(g);
    const info = JSON.parse(dec((await g.request(`$JS.API.STREAM.INFO.KV_${BUCKET}`, '{}')).data));
    const upd = dec((await g.request(`$JS.API.STREAM.UPDATE.KV_${BUCKET}`, JSON.stringify({ ...info.config, subjects: [...info.config.subjects, 'eps.op.>', '_INBOX_hd-1.>', '_INBOX_public-proxy-eps-1.>'] }))).data);
    console.log('update', upd.slice(0, 200));
    await sleep(2000);
    const ping = await curlJsonRpc(ports.jsonrpc, PING);
    console.log('ping after capture:', JSON.stringify(ping.body).slice(0, 200));
    const st = JSON.parse(dec((await g.request(`$JS.API.STREAM.INFO.KV_${BUCKET}`, '{}')).data)).state;
    let tokens = 0;
    for (let seq = st.first_seq; seq <= st.last_seq; seq++) {
      const m = JSON.parse(dec((await g.request(`$JS.API.STREAM.MSG.GET.KV_${BUCKET}`, JSON.stringify({ seq }))).data));
      if (!m.message) continue;
      const body = Buffer.from(m.message.data ?? '', 'base64').toString();
      if (m.message.subject.startsWith('$KV')) continue;
      if (/token/.test(body)) tokens++;
      console.log('captured', m.message.subject, body.slice(0, 160));
    }
    console.log('captured messages carrying a token:', tokens);
    // undo
    await g.request(`$JS.API.STREAM.UPDATE.KV_${BUCKET}`, JSON.stringify(info.config));
  }, 60_000);

  it('redteam - games-1 appends to the directory stream through a push consumer on its bucket', async () => {
    const g = await nats.connectAs('games-1', 'rt-games2');
    conns.push(g);
    const kv = await new Kvm(g).open(BUCKET);
    await kv.put('zzz-junk', '{"not":"a record"}');
    const admin = await nats.admin();
    conns.push(admin);
    const jsm = await jetstreamManager(admin);
    const before = (await jsm.streams.info('EPS_SD_RECORDS')).state.messages;
    const r = dec((await g.request(`$JS.API.CONSUMER.CREATE.KV_${BUCKET}`, JSON.stringify({ stream_name: `KV_${BUCKET}`, config: { deliver_subject: 'eps.sd.records', ack_policy: 'none', deliver_policy: 'last_per_subject', filter_subject: `$KV.${BUCKET}.zzz-junk` } }))).data);
    console.log('consumer', r.slice(0, 150));
    await sleep(1000);
    console.log('directory stream messages before/after:', before, (await jsm.streams.info('EPS_SD_RECORDS')).state.messages);
    const last = await jsm.streams.getMessage('EPS_SD_RECORDS', { seq: before + 1 });
    console.log('appended record:', last?.subject, last?.string().slice(0, 200), 'headers', last?.header?.toString?.());
    const read = (n: string) => readFileSync(`settings/dev/certs/${n}`);
    const tls = { ca: read('root.crt'), cert: read('hd-1.crt'), key: read('hd-1.key') };
    const rpc = <T,>(m: string, p: unknown = {}) => callJsonRpc<T>({ url: stack.sdUrl, serverName: 'sd-1', tls, timeoutMs: 5000 }, m, p);
    const signer: RecordSigner = { certPem: read('sd-admin.crt').toString(), keyPem: read('sd-admin.key').toString() };
    const tip = await rpc<Tip>('getTip').catch((e) => ({ hash: 'ERR', err: String(e) }) as unknown as Tip);
    console.log('tip after append:', JSON.stringify(tip).slice(0, 300));
    const sub = await rpc('submitRecords', { records: [signRecord({ kind: 'group', name: 'later' }, tip.hash, signer)] }).then((r) => `accepted ${JSON.stringify(r).slice(0, 100)}`, (e) => `refused: ${String((e as Error).message).slice(0, 400)}`);
    console.log('a legitimate submit after the append:', sub);
    void recordHash;
    const repair = await new Promise<string>((done) => execFile(process.execPath, ['dist/src/cli/sd.js', 'repair', '--backup', '/tmp'], { env: { ...process.env, SD_SETTINGS: 'settings/dev/roles/sd-1', NATS_URL: nats.url, LOG_LEVEL: 'warn' } }, (err, so, se) => done(`code ${err ? err.code : 0}: ${so}${se}`)));
    console.log('sd repair (dry run):', repair.slice(0, 600));
    const setup = await stack.sdSetup().then(() => 'sd-setup ok', (e) => `sd-setup failed: ${String(e).slice(0, 400)}`);
    console.log(setup);
    await sleep(1500);
    const ping = await curlJsonRpc(ports.jsonrpc, PING);
    await sleep(1500);
    for (const role of ['sd-1', 'hd-1', 'public-proxy-1'] as const) console.log(role, 'log:', roleLog(stack, role).length, roleLog(stack, role).slice(-600), roleLog(stack, role).split('\n').filter((l) => /damag|verif|MALFORMED|record 20|error/i.test(l)).slice(-3).join('\n').slice(0, 400));
    console.log('ping after damage:', JSON.stringify(ping.body).slice(0, 200));
  }, 60_000);
});
