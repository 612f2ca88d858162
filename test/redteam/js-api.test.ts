import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestNatsServer } from '../helpers/nats-server.js';

// Red-team probes of the JetStream rights the generated configuration gives to readers.
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = (o: unknown) => JSON.stringify(o);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe('redteam - JetStream API', () => {
  let nats: TestNatsServer;
  let admin: NatsConnection;
  const conns: NatsConnection[] = [];
  const as = async (p: string) => { const nc = await nats.connectAs(p, `rt-${p}`); conns.push(nc); return nc; };
  const api = async (nc: NatsConnection, subj: string, body: unknown) => {
    try { const m = await nc.request(subj, enc(body), { timeout: 3000 }); return dec(m.data); } catch (e) { return `ERR ${(e as Error).message} ${String((e as Error).cause ?? '')}`; }
  };

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    admin = await nats.admin();
    const jsm = await jetstreamManager(admin);
    await jsm.streams.add({ name: 'EPS_SD_RECORDS', subjects: ['eps.sd.records'] });
    for (let i = 0; i < 3; i++) await admin.request('eps.sd.records', `{"record":${i}}`);
    const kv = await new Kvm(admin).create('EPS_GAMES', { history: 1 });
    await kv.put('game1', '{"secretHash":"x"}');
  }, 60_000);
  afterAll(async () => { for (const c of conns) await c.close().catch(() => undefined); await admin?.close(); await nats?.stop(); });

  const kvKeys = async () => { const kv = await new Kvm(admin).open('EPS_GAMES'); const keys: string[] = []; for await (const k of await kv.keys()) keys.push(k); return keys; };
  const streamMsgs = async (s: string) => (await (await jetstreamManager(admin)).streams.info(s)).state.messages;

  it('push consumer delivering into the stream itself (cycle)', async () => {
    const hd1 = await as('hd-1');
    console.log('cycle:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: 'eps.sd.records', ack_policy: 'none', deliver_policy: 'all' } }));
    await sleep(500);
    console.log('records after cycle attempt:', await streamMsgs('EPS_SD_RECORDS'));
  });

  it('push consumer delivering into the games bucket', async () => {
    const hd1 = await as('hd-1');
    console.log('into kv:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: '$KV.EPS_GAMES.game1', ack_policy: 'none', deliver_policy: 'all' } }));
    await sleep(500);
    const kv = await new Kvm(admin).open('EPS_GAMES');
    console.log('kv game1 now:', dec((await kv.get('game1'))!.value), 'keys', await kvKeys());
  });

  it('push consumer delivering into JetStream API (delete the bucket)', async () => {
    const hd1 = await as('hd-1');
    console.log('into api:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: '$JS.API.STREAM.DELETE.KV_EPS_GAMES', ack_policy: 'none', deliver_policy: 'last' } }));
    await sleep(1000);
    const jsm = await jetstreamManager(admin);
    const names: string[] = []; for await (const s of jsm.streams.names()) names.push(s);
    console.log('streams after:', names);
  });

  it('push consumer delivering into another principal inbox / op subject', async () => {
    const hd1 = await as('hd-1');
    const g = await as('games-1');
    const got: string[] = [];
    g.subscribe('_INBOX_games-1.victim', { callback: (_e, m) => void got.push(dec(m.data)) });
    await g.flush();
    const hd2 = await as('hd-2');
    const got2: string[] = [];
    hd2.subscribe('eps.op.hd-2.>', { callback: (_e, m) => void got2.push(m.subject) });
    await hd2.flush();
    console.log('into games inbox:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: '_INBOX_games-1.victim', ack_policy: 'none', deliver_policy: 'all' } }));
    console.log('into hd-2 op:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: 'eps.op.hd-2.connectionForward', ack_policy: 'none', deliver_policy: 'all' } }));
    await sleep(800);
    console.log('games-1 got', got.length, got.slice(0, 2), 'hd-2 got', got2);
  });

  it('durable consumers persist; many of them', async () => {
    const hd1 = await as('public-proxy-hyper-1');
    console.log('durable via CREATE.stream:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { durable_name: 'evil1', ack_policy: 'explicit', deliver_policy: 'all' } }));
    console.log('durable via CREATE.stream.name:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS.evil2', { stream_name: 'EPS_SD_RECORDS', config: { durable_name: 'evil2', ack_policy: 'explicit', deliver_policy: 'all' } }));
    const t0 = Date.now();
    let ok = 0;
    const N = 2000;
    await Promise.all(Array.from({ length: N }, async (_, i) => {
      const r = await api(hd1, `$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS.flood${i}`, { stream_name: 'EPS_SD_RECORDS', config: { durable_name: `flood${i}`, ack_policy: 'explicit', deliver_policy: 'all', inactive_threshold: 0 } });
      if (r.includes('"created"')) ok++;
    }));
    console.log(`created ${ok}/${N} durables in ${Date.now() - t0} ms`);
    await hd1.close();
    await sleep(500);
    const info = await (await jetstreamManager(admin)).streams.info('EPS_SD_RECORDS');
    console.log('consumers on EPS_SD_RECORDS after attacker left:', info.state.consumer_count);
  }, 120_000);

  it('reader deletes a consumer of someone else by name; acks', async () => {
    const jsm = await jetstreamManager(admin);
    await jsm.consumers.add('EPS_SD_RECORDS', { durable_name: 'sd-reader', ack_policy: 'explicit' as never });
    const hd2 = await as('hd-2');
    console.log('delete other consumer:', await api(hd2, '$JS.API.CONSUMER.DELETE.EPS_SD_RECORDS.sd-reader', {}));
  });


  it('games-1 push consumer on its bucket delivering into the directory stream subject', async () => {
    const g = await as('games-1');
    const before = await streamMsgs('EPS_SD_RECORDS');
    console.log('kv->sd:', await api(g, '$JS.API.CONSUMER.CREATE.KV_EPS_GAMES', { stream_name: 'KV_EPS_GAMES', config: { deliver_subject: 'eps.sd.records', ack_policy: 'none', deliver_policy: 'all' } }));
    await sleep(800);
    console.log('directory records before/after:', before, await streamMsgs('EPS_SD_RECORDS'));
    const hd1 = await as('hd-1');
    console.log('sd->kv ($KV) again with a listener:', await api(hd1, '$JS.API.CONSUMER.CREATE.EPS_SD_RECORDS', { stream_name: 'EPS_SD_RECORDS', config: { deliver_subject: '$KV.EPS_GAMES.game2', ack_policy: 'none', deliver_policy: 'all' } }));
    await sleep(800);
    console.log('kv keys', await kvKeys());
  });

  it('games-1 rewrites its bucket stream to capture bus traffic', async () => {
    const g = await as('games-1');
    const info = JSON.parse(await api(g, '$JS.API.STREAM.INFO.KV_EPS_GAMES', {}));
    const cfg = { ...info.config, subjects: ['$KV.EPS_GAMES.>', 'eps.op.>', '_INBOX_hd-1.>', '_INBOX_hd-2.>'] };
    console.log('update:', (await api(g, '$JS.API.STREAM.UPDATE.KV_EPS_GAMES', cfg)).slice(0, 300));
    const hd1 = await as('hd-1');
    const hd2 = await as('hd-2');
    hd2.subscribe('eps.op.hd-2._ping', { callback: (_e, m) => void m.respond("pong-secret") });
    await hd2.flush();
    const r = await hd1.request('eps.op.hd-2._ping', 'ping-with-token', { timeout: 2000 }).then((m) => dec(m.data), (e) => `ERR ${e}`);
    console.log('hd-1 got reply:', r);
    await sleep(300);
    // games-1 reads back what the bucket stream captured
    for (let seq = 1; seq <= 10; seq++) {
      const m = await api(g, '$JS.API.STREAM.MSG.GET.KV_EPS_GAMES', { seq });
      if (m.includes('error')) continue;
      const j = JSON.parse(m).message; console.log('captured', seq, j.subject, Buffer.from(j.data ?? '', 'base64').toString());
    }
  });

  it('sd-1 (or games-1) purges through STREAM.UPDATE limits', async () => {
    const sd = await as('sd-1');
    const before = await streamMsgs('EPS_SD_RECORDS');
    const info = JSON.parse(await api(sd, '$JS.API.STREAM.INFO.EPS_SD_RECORDS', {}));
    console.log('sd-1 update max_msgs=1:', (await api(sd, '$JS.API.STREAM.UPDATE.EPS_SD_RECORDS', { ...info.config, max_msgs: 1 })).slice(0, 160));
    console.log('directory messages before/after:', before, await streamMsgs('EPS_SD_RECORDS'));
    const g = await as('games-1');
    const kinfo = JSON.parse(await api(g, '$JS.API.STREAM.INFO.KV_EPS_GAMES', {}));
    console.log('games-1 update KV max_age 1s:', (await api(g, '$JS.API.STREAM.UPDATE.KV_EPS_GAMES', { ...kinfo.config, max_age: 1_000_000_000 })).slice(0, 120));
    await sleep(2500);
    console.log('kv keys after', await kvKeys());
  });

  it('big messages / flood into a victim inbox', async () => {
    const hd1 = await as('hd-1');
    const info = hd1.info; console.log('max_payload', info?.max_payload);
    const hd2 = await as('hd-2');
    let n = 0; hd2.subscribe('_INBOX_hd-2.>', { callback: () => void n++ });
    await hd2.flush();
    const big = new Uint8Array(1024 * 1024 - 200);
    const t0 = Date.now();
    for (let i = 0; i < 500; i++) hd1.publish('_INBOX_hd-2.x', big);
    await hd1.flush();
    await sleep(1000);
    console.log(`victim received ${n}/500 1MiB messages in ${Date.now() - t0} ms; victim closed: ${hd2.isClosed()}`);
  }, 60_000);
});
