import { connect, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { DEV_CERTS, TestNatsServer } from '../helpers/nats-server.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
describe('redteam - permission matrix', () => {
  let nats: TestNatsServer;
  const conns: NatsConnection[] = [];
  beforeAll(async () => {
    nats = await TestNatsServer.start();
    const admin = await nats.admin(); conns.push(admin);
    await (await jetstreamManager(admin)).streams.add({ name: 'EPS_SD_RECORDS', subjects: ['eps.sd.records'] });
    await admin.request('eps.sd.records', '{}');
    await new Kvm(admin).create('EPS_GAMES');
  }, 60_000);
  afterAll(async () => { for (const c of conns) await c.close().catch(() => undefined); await nats?.stop(); });

  it('connections', async () => {
    const r = (p: Promise<unknown>) => p.then((c) => { conns.push(c as NatsConnection); return 'CONNECTED'; }, (e) => `refused (${String((e as Error).message).slice(0, 80)})`);
    console.log('plain, no tls:', await r(connect({ servers: nats.url, maxReconnectAttempts: 0, timeout: 3000 })));
    console.log('tls, no client cert:', await r(connect({ servers: nats.url, maxReconnectAttempts: 0, timeout: 3000, tls: { caFile: join(DEV_CERTS, 'root.crt') } })));
    for (const n of ['sd-admin', 'public-proxy-1', 'nats-server']) console.log(`cert ${n}:`, await r(connect({ servers: nats.url, maxReconnectAttempts: 0, timeout: 3000, tls: { caFile: join(DEV_CERTS, 'root.crt'), certFile: join(DEV_CERTS, `${n}.crt`), keyFile: join(DEV_CERTS, `${n}.key`) } })));
  });

  it('subjects', async () => {
    const pubs = ['eps.sd.records', '$KV.EPS_GAMES.g', '$JS.API.STREAM.DELETE.EPS_SD_RECORDS', '$JS.API.STREAM.PURGE.KV_EPS_GAMES', '$JS.API.STREAM.MSG.DELETE.EPS_SD_RECORDS', '$JS.API.STREAM.LIST', '$JS.API.STREAM.NAMES', '$JS.API.CONSUMER.LIST.EPS_SD_RECORDS', '$JS.API.CONSUMER.CREATE.KV_EPS_GAMES', '$JS.API.STREAM.CREATE.EVIL', '$JS.API.STREAM.UPDATE.EPS_SD_RECORDS', '$JS.API.DIRECT.GET.KV_EPS_GAMES', 'eps.op.public-proxy-eps-1.relayRequest', 'eps.op.hd-2.connectionForward', '_INBOX_games-1.x', '_INBOX_nats-admin.x', '_INBOX_hd-1.x', '$SYS.REQ.SERVER.PING', '$JS.API.INFO'];
    const subs = ['>', 'eps.>', '_INBOX_hd-2.>', '$KV.EPS_GAMES.>', 'eps.sd.records', '$JS.API.>', '_INBOX_nats-admin.>', '$SYS.>'];
    for (const who of ['public-proxy-hyper-1', 'hd-1', 'games-1', 'sd-1']) {
      const nc = await nats.connectAs(who, `rt-${who}`); conns.push(nc);
      const denied = new Set<string>();
      void (async () => { for await (const s of nc.status()) if (s.type === 'error' && s.error instanceof PermissionViolationError) denied.add(`${s.error.operation}:${s.error.subject}`); })();
      for (const p of pubs) nc.publish(p, '{}');
      for (const s of subs) nc.subscribe(s);
      await nc.flush(); await sleep(500);
      console.log(who, 'ALLOWED pub:', pubs.filter((p) => !denied.has(`publish:${p}`)).join(' '), '| ALLOWED sub:', subs.filter((s) => !denied.has(`subscription:${s}`)).join(' '));
    }
  }, 30_000);
});
