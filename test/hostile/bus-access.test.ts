import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busSubject } from '../../src/bus/bus.js';
import { createSigner, sealEnvelope, type RequestEnvelope } from '../../src/bus/envelope.js';
import type { DevStack } from '../../src/devstack/stack.js';
import type { Tip } from '../../src/directory/chain.js';
import { DEFAULT_SD_STREAM, DirectoryClient, SD_RECORDS_SUBJECT } from '../../src/directory/client.js';
import { signRecord } from '../../src/directory/records.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { gameKey } from '../../src/games/game-store.js';
import { RELAY_METHOD } from '../../src/relay/protocol.js';
import { pino } from 'pino';
import { DEV_CERTS, devMaterial, TestNatsServer } from '../helpers/nats-server.js';
import { PING, curlJsonRpc, metricValue, metrics, pingUntilAnswered, roleLog, startStack, untilSplicesEnded } from '../helpers/stack.js';
import { GamesProcess } from '../integration/games-process.js';

// The bus attacks of issue 9, replayed against the real stack on a nats-server running the
// generated configuration. The attacker holds what a stolen or rogue operator holds: a valid
// certificate of our PKI (public-proxy-hyper-1, a party to none of the sessions below) or a
// peer's own (hd-1), or nothing. Each test asserts what the attacker gets (a permissions error,
// no message) and what the legitimate parties see (their work goes on).

const PROXY = 'public-proxy-eps-1';
const ATTACKER = 'public-proxy-hyper-1';
const BUCKET = 'EPS_GAMES';
const IDLE_MS = 300;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Tries a subscription as an attacker would; resolves with the refusal and whatever arrived. */
async function trySubscribe(nc: NatsConnection, subject: string): Promise<{ error: unknown; received: string[] }> {
  const received: string[] = [];
  const sub = nc.subscribe(subject, { callback: (err, m) => void (err ? undefined : received.push(m.subject)) });
  const error = await Promise.race([sub.closed, sleep(3_000).then(() => 'still subscribed')]);
  return { error, received };
}

/** Publishes and waits for the server's verdict on that subject (it answers a violation asynchronously). */
async function tryPublish(nc: NatsConnection, subject: string, data = 'junk'): Promise<unknown> {
  const statuses = nc.status();
  const verdict = (async () => {
    for await (const s of statuses) {
      if (s.type === 'error' && s.error instanceof PermissionViolationError && s.error.subject === subject) return s.error;
    }
    return 'closed';
  })();
  nc.publish(subject, data);
  await nc.flush();
  // A flush round trip after the publish: any violation was reported before the PONG.
  const result = await Promise.race([verdict, sleep(1_000).then(() => 'accepted')]);
  return result;
}

/** nats.js fails a refused request with a RequestError whose cause is the server's verdict. */
async function expectRequestRefused(request: Promise<unknown>, subject: string): Promise<void> {
  const error = await request.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error, subject).toBeInstanceOf(Error);
  const cause = error instanceof PermissionViolationError ? error : (error as Error).cause;
  expectRefused(cause, 'publish', subject);
}

const expectRefused = (error: unknown, operation: 'publish' | 'subscription', subject: string) => {
  expect(error).toBeInstanceOf(PermissionViolationError);
  expect(error).toMatchObject({ operation, subject });
};

describe('hostile bus access (generated nats-server configuration)', () => {
  let nats: TestNatsServer;
  let stack: DevStack;
  let games: GamesProcess;
  let admin: NatsConnection;
  /** The GAMES account's admin: the games bucket lives there, out of OPS's sight. */
  let gamesAdmin: NatsConnection;
  const conns: NatsConnection[] = [];
  const as = async (principal: string) => {
    const nc = await nats.connectAs(principal, `attacker-as-${principal}`);
    conns.push(nc);
    return nc;
  };
  /** A ping that brokers a fresh channel: hd-1 closes an idle one after IDLE_MS. */
  const freshPing = async () => {
    await untilSplicesEnded(stack.opts.ports.metrics);
    return curlJsonRpc(stack.opts.ports.jsonrpc, PING);
  };
  const spliced = async () => metricValue(await metrics(stack.opts.ports.metrics), 'eps_proxy_spliced_total');

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    stack = await startStack(nats.url, { overrides: { 'hd-1': `timeouts: { channelIdleMs: ${IDLE_MS} }\n` } });
    games = await GamesProcess.start({ natsUrl: nats.url, bucket: BUCKET, relayProxy: PROXY });
    admin = await nats.admin();
    gamesAdmin = await nats.admin('games');
    expect((await pingUntilAnswered(stack.opts.ports.jsonrpc)).body.result.serverInfo.name).toBe('hd-2');
  }, 90_000);

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close().catch(() => undefined)));
    await admin?.close().catch(() => undefined);
    await gamesAdmin?.close().catch(() => undefined);
    await games?.stop();
    await stack?.stop();
    await nats?.stop();
  });

  it('bus access - no certificate, a certificate of another CA, or one of ours that names no principal: refused', async () => {
    // The attacker: a plain client on the bus's port.
    await expect(nats.connectRaw()).rejects.toThrow();
    // A self-made CA issuing "hd-1": the TLS handshake fails before any NATS protocol.
    const dir = mkdtempSync(join(tmpdir(), 'eps-foreign-ca-'));
    try {
      const sh = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
      sh(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key']);
      sh(['req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=foreign root', '-days', '1', '-out', 'ca.crt']);
      sh(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'hd-1.key']);
      sh(['req', '-new', '-key', 'hd-1.key', '-subj', '/CN=hd-1', '-out', 'hd-1.csr']);
      writeFileSync(join(dir, 'ext'), 'extendedKeyUsage=clientAuth\nsubjectAltName=DNS:hd-1\n');
      sh(['x509', '-req', '-in', 'hd-1.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext', '-out', 'hd-1.crt']);
      const foreign = { cert: readFileSync(join(dir, 'hd-1.crt'), 'utf8'), key: readFileSync(join(dir, 'hd-1.key'), 'utf8'), ca: readFileSync(join(DEV_CERTS, 'root.crt'), 'utf8') };
      await expect(nats.connectRaw({ tls: foreign })).rejects.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // public-proxy-1's certificate chains to our root, but no user of the bus is called that.
    const unmapped = { certFile: join(DEV_CERTS, 'public-proxy-1.crt'), keyFile: join(DEV_CERTS, 'public-proxy-1.key'), caFile: join(DEV_CERTS, 'root.crt') };
    await expect(nats.connectRaw({ tls: unmapped })).rejects.toThrow(/Authorization Violation/i);
    // The legitimate side: a principal's own certificate connects.
    const ok = await as('hd-1');
    expect(ok.isClosed()).toBe(false);
  });

  it('bus access - sniffing splice tokens: every wide or foreign subscription is refused, and brokerings go on unseen', async () => {
    const attacker = await as(ATTACKER);
    const peer = await as('hd-1');
    const tries = [
      { nc: attacker, subject: '>' },
      { nc: attacker, subject: 'eps.>' },
      { nc: attacker, subject: 'eps.op.*.connectionForward' },
      { nc: attacker, subject: busSubject('hd-2', 'connectionForward') },
      { nc: attacker, subject: busSubject(PROXY, 'connectionRequest') },
      { nc: attacker, subject: '_INBOX.>' },
      { nc: attacker, subject: '_INBOX_hd-1.>' },
      { nc: attacker, subject: `_INBOX_${PROXY}.>` },
      // Even a party of the brokering may not read the other party's subjects or replies.
      { nc: peer, subject: busSubject('hd-2', 'connectionForward') },
      { nc: peer, subject: `_INBOX_${PROXY}.>` },
    ];
    const results = await Promise.all(tries.map(async (t) => ({ ...t, ...(await trySubscribe(t.nc, t.subject)) })));
    const before = await spliced();
    for (let i = 0; i < 3; i++) expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
    expect(await spliced()).toBe(before + 3);
    for (const r of results) {
      expectRefused(r.error, 'subscription', r.subject);
      expect(r.received, r.subject).toEqual([]);
    }
    // The legitimate side: an operator subscribes to its own subjects.
    expect((await Promise.race([attacker.subscribe(busSubject(ATTACKER, 'anything')).closed, sleep(1_000).then(() => 'open')])) as unknown).toBe('open');
  });

  it('bus access - junk replies: publishing into the inbox of another principal is refused, and requests get their real answer', async () => {
    // Only those a principal may ask can answer into its inboxes (their answers are then checked
    // as signed envelopes); the proxy never asks public-proxy-hyper-1 anything, and nobody asks
    // sd or games.
    const attacker = await as(ATTACKER);
    for (const inbox of [`_INBOX_${PROXY}.x.1`, '_INBOX_sd-1.x.1', '_INBOX.x.1']) expectRefused(await tryPublish(attacker, inbox), 'publish', inbox);
    for (const stranger of ['sd-1', 'games-1']) {
      const nc = await as(stranger);
      for (const inbox of ['_INBOX_hd-1.x.1', `_INBOX_${PROXY}.x.1`]) expectRefused(await tryPublish(nc, inbox), 'publish', inbox);
    }
    const before = await spliced();
    for (let i = 0; i < 5; i++) expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
    expect(await spliced()).toBe(before + 5);
  });

  it('bus access - requests go only to the peers and methods the directory permits', async () => {
    const peer = await as('hd-1');
    // hd-1 is no proxy: the directory lets only proxies send connectionForward to hd-2.
    await expectRequestRefused(peer.request(busSubject('hd-2', 'connectionForward'), '{}', { timeout: 3_000 }), busSubject('hd-2', 'connectionForward'));
    const sd = await as('sd-1');
    await expectRequestRefused(sd.request(busSubject('hd-2', '_ping'), '{}', { timeout: 3_000 }), busSubject('hd-2', '_ping'));
    // Allowed: hd-1 may ping hd-2, and hd-2's signed answer comes back to hd-1's inbox.
    const signer = createSigner('hd-1', readFileSync(join(DEV_CERTS, 'hd-1.key')));
    const ping = sealEnvelope<RequestEnvelope>(signer, { kind: 'request', from: 'hd-1', to: 'hd-2', id: 'allowed-1', method: '_ping', params: {} });
    const reply = await peer.request(busSubject('hd-2', '_ping'), JSON.stringify(ping), { timeout: 5_000 });
    expect(reply.json()).toMatchObject({ kind: 'response', from: 'hd-2', to: 'hd-1', result: { serverInfo: { name: 'hd-2' } } });
  });

  it('bus access - relays: only the proxy principal serves relayRequest, only the rendezvous may ask it', async () => {
    const relayRequest = busSubject(PROXY, RELAY_METHOD);
    const attacker = await as(ATTACKER);
    // Answering relay requests first is how an attacker ran game duels through its own relay.
    const serve = await trySubscribe(attacker, relayRequest);
    expectRefused(serve.error, 'subscription', relayRequest);
    await expectRequestRefused(attacker.request(relayRequest, '{}', { timeout: 3_000 }), relayRequest);
    const peer = await as('hd-1');
    await expectRequestRefused(peer.request(relayRequest, '{}', { timeout: 3_000 }), relayRequest);
    // The old plain subject is nobody's: neither served nor askable.
    const old = `eps.relay.${PROXY}.request`;
    expectRefused((await trySubscribe(attacker, old)).error, 'subscription', old);
    await expectRequestRefused((await as('games-1')).request(old, '{}', { timeout: 3_000 }), old);
    // Allowed: the games principal asks and the real proxy answers, refusing an unsigned request
    // in a signed envelope of its own.
    const gamesNc = await as('games-1');
    const answer = (await gamesNc.request(relayRequest, 'not json', { timeout: 3_000 })).json<{ kind: string; from: string; error?: { code: number } }>();
    expect(answer).toMatchObject({ kind: 'response', from: PROXY, error: { code: -32600 } });
    expect(serve.received).toEqual([]);
  });

  it('bus access - the games bucket: strangers can neither read nor write it, games keeps serving', async () => {
    expect((await games.request('POST', '/games/register', { name: 'mine', peerId: 'host-1' })).status).toBe(201);
    const kvAdmin = await new Kvm(gamesAdmin).open(BUCKET);
    const stored = await kvAdmin.get(gameKey('mine'));
    expect(stored?.operation).toBe('PUT');
    for (const who of [ATTACKER, 'hd-1', 'sd-1']) {
      const nc = await as(who);
      // Opening is local; every read and write asks the server, which refuses.
      const kv = await new Kvm(nc).open(BUCKET);
      await expect(kv.get(gameKey('mine')), who).rejects.toThrow(/permissions violation/i);
      await expect(kv.put(gameKey('mine'), JSON.stringify({ lastPollAt: '2036-01-01T00:00:00Z' })), who).rejects.toThrow(/permissions violation/i);
      await expect(kv.delete(gameKey('mine')), who).rejects.toThrow(/permissions violation/i);
      const key = `$KV.${BUCKET}.${gameKey('mine')}`;
      expectRefused(await tryPublish(nc, key, JSON.stringify({ secretHash: '0'.repeat(64) })), 'publish', key);
      await expectRequestRefused(nc.request(`$JS.API.DIRECT.GET.KV_${BUCKET}.${key}`, '', { timeout: 3_000 }), `$JS.API.DIRECT.GET.KV_${BUCKET}.${key}`);
      expect((await trySubscribe(nc, `$KV.${BUCKET}.>`)).error).toBeInstanceOf(PermissionViolationError);
    }
    // Nothing changed the record, and games still reads and writes it.
    expect((await kvAdmin.get(gameKey('mine')))?.revision).toBe(stored?.revision);
    expect((await games.request('POST', '/games/poll', { name: 'mine', peerId: 'host-1', addresses: ['203.0.113.1:4000'] })).status).toBe(200);
  });

  it('bus access - reflection: a request whose reply subject is the stream, the bucket or the JetStream API makes the responder write nothing there', async () => {
    const jsmAdmin = await jetstreamManager(admin);
    const before = (await jsmAdmin.streams.info(DEFAULT_SD_STREAM)).state;
    expect((await games.request('POST', '/games/register', { name: 'mirror', peerId: 'host-1' })).status).toBe(201);
    const kvAdmin = await new Kvm(gamesAdmin).open(BUCKET);
    const game = await kvAdmin.get(gameKey('mirror'));
    // hd-1 may ping hd-2; it names as reply subject what it may not publish to itself, hoping
    // hd-2's answer lands there.
    const peer = await as('hd-1');
    const targets = [SD_RECORDS_SUBJECT, `$JS.API.STREAM.DELETE.${DEFAULT_SD_STREAM}`, `$JS.API.STREAM.PURGE.KV_${BUCKET}`, `$KV.${BUCKET}.${gameKey('mirror')}`];
    for (const reply of targets) peer.publish(busSubject('hd-2', '_ping'), '{}', { reply });
    await peer.flush();
    await sleep(1_000);
    const after = (await jsmAdmin.streams.info(DEFAULT_SD_STREAM)).state;
    expect(after.last_seq).toBe(before.last_seq);
    expect(after.messages).toBe(before.messages);
    expect((await kvAdmin.get(gameKey('mirror')))?.revision).toBe(game?.revision);
    // hd-2's own word that its answers were refused: it logs once the server's error reaches it,
    // which a loaded host may take longer than the window above to do.
    await expect.poll(() => roleLog(stack, 'hd-2'), { timeout: 15_000, interval: 50 }).toMatch(/Permissions Violation/);
    // hd-2 still answers a real request.
    expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
  });

  it('bus access - the directory stream: only sd appends, nobody but the admin deletes or purges', async () => {
    const jsmAdmin = await jetstreamManager(admin);
    const before = (await jsmAdmin.streams.info(DEFAULT_SD_STREAM)).state;
    for (const who of [ATTACKER, 'hd-1', 'games-1']) {
      const nc = await as(who);
      expectRefused(await tryPublish(nc, SD_RECORDS_SUBJECT, JSON.stringify({ data: { kind: 'group', name: 'evil' } })), 'publish', SD_RECORDS_SUBJECT);
      await expect(jetstream(nc).publish(SD_RECORDS_SUBJECT, '{}', { timeout: 3_000 }), who).rejects.toThrow(/permissions violation/i);
    }
    for (const who of [ATTACKER, 'sd-1']) {
      const jsm = await jetstreamManager(await as(who), { checkAPI: false });
      await expect(jsm.streams.delete(DEFAULT_SD_STREAM), who).rejects.toThrow(/permissions violation/i);
      await expect(jsm.streams.purge(DEFAULT_SD_STREAM), who).rejects.toThrow(/permissions violation/i);
      await expect(jsm.streams.delete(`KV_${BUCKET}`), who).rejects.toThrow(/permissions violation/i);
    }
    const games1 = await jetstreamManager(await as('games-1'), { checkAPI: false });
    await expect(games1.streams.delete(`KV_${BUCKET}`)).rejects.toThrow(/permissions violation/i);
    const after = (await jsmAdmin.streams.info(DEFAULT_SD_STREAM)).state;
    expect(after.last_seq).toBe(before.last_seq);
    expect(after.messages).toBe(before.messages);
    // The legitimate sides: sd still appends (sd-setup submits nothing new and succeeds), pings
    // go on, and the admin may delete a stream.
    await stack.sdSetup();
    expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
    await jsmAdmin.streams.add({ name: 'SCRATCH', subjects: ['scratch.>'] });
    expect(await jsmAdmin.streams.delete('SCRATCH')).toBe(true);
  });

  /** A JetStream API request as an attacker sends it: the server's JSON answer, or the refusal. */
  const jsApi = (nc: NatsConnection, subject: string, body: unknown) => nc.request(subject, JSON.stringify(body), { timeout: 3_000 });
  const directoryState = async () => (await (await jetstreamManager(admin)).streams.info(DEFAULT_SD_STREAM)).state;
  const read = (name: string) => readFileSync(join(DEV_CERTS, name), 'utf8');

  it('bus access - directory readers create no consumer: push delivery into relayRequest or an inbox, durables and deleting others\' consumers are refused, and readers still follow every record', async () => {
    // Red-team findings 4 and 6: any reader could have the stream pushed into a subject it may not
    // publish to (500 consumers -> 9,500 rejected envelopes at the proxy) and leave durables behind.
    const before = await directoryState();
    const proxyLog = () => roleLog(stack, 'public-proxy-1').split('\n').filter((l) => /bus envelope rejected/.test(l)).length;
    const rejectedBefore = proxyLog();
    const create = `$JS.API.CONSUMER.CREATE.${DEFAULT_SD_STREAM}`;
    for (const who of [ATTACKER, 'hd-1', 'sd-1']) {
      const nc = await as(who);
      const push = { stream_name: DEFAULT_SD_STREAM, config: { deliver_subject: busSubject(PROXY, RELAY_METHOD), deliver_group: 'eps-proxy', ack_policy: 'none', deliver_policy: 'all' } };
      await expectRequestRefused(jsApi(nc, create, push), create);
      const intoInbox = { stream_name: DEFAULT_SD_STREAM, config: { deliver_subject: '_INBOX_games-1.victim', ack_policy: 'none', deliver_policy: 'all' } };
      await expectRequestRefused(jsApi(nc, create, intoInbox), create);
      const durable = { stream_name: DEFAULT_SD_STREAM, config: { durable_name: 'evil', ack_policy: 'explicit', deliver_policy: 'all' } };
      await expectRequestRefused(jsApi(nc, `${create}.evil`, durable), `${create}.evil`);
      await expectRequestRefused(jsApi(nc, `$JS.API.CONSUMER.DELETE.${DEFAULT_SD_STREAM}.someone`, {}), `$JS.API.CONSUMER.DELETE.${DEFAULT_SD_STREAM}.someone`);
      await expectRequestRefused(jsApi(nc, `$JS.API.CONSUMER.MSG.NEXT.${DEFAULT_SD_STREAM}.someone`, { batch: 1 }), `$JS.API.CONSUMER.MSG.NEXT.${DEFAULT_SD_STREAM}.someone`);
    }
    // Every server of the stack follows the directory, and not one consumer exists on its stream.
    expect((await directoryState()).consumer_count).toBe(0);
    expect(proxyLog()).toBe(rejectedBefore);

    // The legitimate side: a reader in OPS (by sequence, on the poke) and games in GAMES (from
    // the sd, on the imported poke) both apply a record the sd appends, well before any resync.
    const opsNc = await as('hd-1');
    const gamesNc = await as('games-1');
    const quiet = pino({ level: 'silent' });
    const ops = new DirectoryClient({ url: stack.sdUrl, serverName: 'sd-1', tls: devMaterial('hd-1'), nc: opsNc, log: quiet, resyncMs: 600_000 });
    const viaSd = new DirectoryClient({ url: stack.sdUrl, serverName: 'sd-1', tls: devMaterial('games-1'), nc: gamesNc, log: quiet, catchUp: 'sd', resyncMs: 600_000 });
    try {
      ops.start();
      viaSd.start();
      await Promise.all([ops.ready(), viaSd.ready()]);
      await expect.poll(() => [ops.tip().seq, viaSd.tip().seq], { timeout: 5_000 }).toEqual([before.last_seq, before.last_seq]);
      const tls = { ca: Buffer.from(read('root.crt')), cert: Buffer.from(read('hd-1.crt')), key: Buffer.from(read('hd-1.key')) };
      const tip = await callJsonRpc<Tip>({ url: stack.sdUrl, serverName: 'sd-1', tls }, 'getTip', {});
      const record = signRecord({ kind: 'group', name: `followed-${Date.now()}` }, tip.hash, { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') });
      await callJsonRpc({ url: stack.sdUrl, serverName: 'sd-1', tls }, 'submitRecords', { records: [record] });
      await expect.poll(() => [ops.tip().seq, viaSd.tip().seq], { timeout: 3_000 }).toEqual([tip.seq + 1, tip.seq + 1]);
      expect((await directoryState()).consumer_count).toBe(0);
    } finally {
      await ops.close();
      await viaSd.close();
    }
  });

  it('bus access - nobody but the admin changes a stream: sd-1 cannot purge the directory through its limits, games-1 cannot widen its bucket to capture bus traffic', async () => {
    // Red-team findings 2 and 3: STREAM.UPDATE let sd-1 set max_msgs 1 on the directory and
    // games-1 add eps.op.> and other principals' inboxes to its bucket's stream, then read them.
    const before = await directoryState();
    const sd = await as('sd-1');
    const config = (await (await jetstreamManager(admin)).streams.info(DEFAULT_SD_STREAM)).config;
    const update = `$JS.API.STREAM.UPDATE.${DEFAULT_SD_STREAM}`;
    await expectRequestRefused(jsApi(sd, update, { ...config, max_msgs: 1 }), update);
    await expectRequestRefused(jsApi(sd, update, { ...config, subjects: [SD_RECORDS_SUBJECT, 'eps.op.>'] }), update);
    // Creating is for a missing stream only: the existing one keeps its configuration.
    const recreate = (await jsApi(sd, `$JS.API.STREAM.CREATE.${DEFAULT_SD_STREAM}`, { ...config, subjects: [SD_RECORDS_SUBJECT, 'eps.op.>'] })).json<{ error?: { description: string } }>();
    expect(recreate.error?.description).toMatch(/already in use/);
    expect((await (await jetstreamManager(admin)).streams.info(DEFAULT_SD_STREAM)).config.subjects).toEqual([SD_RECORDS_SUBJECT]);
    const g = await as('games-1');
    const kvConfig = (await (await jetstreamManager(gamesAdmin)).streams.info(`KV_${BUCKET}`)).config;
    const kvUpdate = `$JS.API.STREAM.UPDATE.KV_${BUCKET}`;
    await expectRequestRefused(jsApi(g, kvUpdate, { ...kvConfig, subjects: [...kvConfig.subjects, 'eps.op.>', '_INBOX_hd-1.>'] }), kvUpdate);
    await expectRequestRefused(jsApi(g, kvUpdate, { ...kvConfig, max_age: 1_000_000_000 }), kvUpdate);
    await expectRequestRefused(jsApi(g, '$JS.API.STREAM.CREATE.CAPTURE', { name: 'CAPTURE', subjects: ['eps.op.>'] }), '$JS.API.STREAM.CREATE.CAPTURE');
    const after = await directoryState();
    expect([after.messages, after.last_seq]).toEqual([before.messages, before.last_seq]);
    expect((await (await jetstreamManager(gamesAdmin)).streams.info(`KV_${BUCKET}`)).config.subjects).toEqual(kvConfig.subjects);
    // The legitimate sides: games opens its existing bucket (create-if-missing needs no update),
    // sd-setup still runs against the existing stream, pings go on.
    const kv = await new Kvm(g).create(BUCKET, { history: 1 });
    expect(await kv.get(gameKey('no-such-game'))).toBeNull();
    await stack.sdSetup();
    expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
  });

  it('bus access - games lives in its own account: consumers of its bucket deliver nothing into the directory stream or to anyone in OPS, and sd and brokering go on', async () => {
    // Red-team finding 1: a push consumer of games-1's bucket with deliver_subject eps.sd.records
    // appended to the directory stream (nats-server does not check a deliver_subject against the
    // creator's publish rights). Now the bucket lives in GAMES, where eps.sd.records is only the
    // poke imported from OPS.
    expect((await games.request('POST', '/games/register', { name: 'deliverer', peerId: 'host-1' })).status).toBe(201);
    const before = await directoryState();
    const hd1 = await as('hd-1');
    const got: string[] = [];
    hd1.subscribe('_INBOX_hd-1.victim', { callback: (_e, m) => void got.push(m.subject) });
    await hd1.flush();
    const g = await as('games-1');
    const names: string[] = [];
    for (const deliver of [SD_RECORDS_SUBJECT, '_INBOX_hd-1.victim', busSubject('hd-2', 'connectionForward')]) {
      const answer = (await jsApi(g, `$JS.API.CONSUMER.CREATE.KV_${BUCKET}`, { stream_name: `KV_${BUCKET}`, config: { deliver_subject: deliver, ack_policy: 'none', deliver_policy: 'all' } })).json<{ name?: string; error?: unknown }>();
      // Allowed in its own account, where nothing but games listens.
      expect(answer.error, deliver).toBeUndefined();
      names.push(answer.name!);
    }
    await sleep(1_000);
    const after = await directoryState();
    expect([after.messages, after.last_seq]).toEqual([before.messages, before.last_seq]);
    expect(got).toEqual([]);
    // OPS does not even see the bucket.
    await expect((await jetstreamManager(admin)).streams.info(`KV_${BUCKET}`)).rejects.toThrow(/stream not found/);
    for (const name of names) await jsApi(g, `$JS.API.CONSUMER.DELETE.KV_${BUCKET}.${name}`, {});
    // The legitimate side: sd still appends and brokering goes on.
    await stack.sdSetup();
    expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
  });

  it('bus access - only the proxy an operator is reachable through may forward to it, and no message may exceed max_payload', async () => {
    // Red-team finding 7: public-proxy-hyper-1 is in the proxies group, but hd-1 and hd-2 are
    // reachable only through public-proxy-eps-1; the code refused its forward, now the bus does.
    const attacker = await as(ATTACKER);
    for (const target of ['hd-1', 'hd-2']) {
      const forward = busSubject(target, 'connectionForward');
      await expectRequestRefused(attacker.request(forward, '{}', { timeout: 3_000 }), forward);
    }
    // The server announces a cap of the largest envelope plus headers (not nats-server's 1 MiB),
    // and refuses anything larger; an envelope-sized message still goes through.
    expect(attacker.info?.max_payload).toBe(320 * 1024);
    expect(() => attacker.publish(busSubject(ATTACKER, 'big'), new Uint8Array(400 * 1024))).toThrow(/payload/i);
    const big = new Uint8Array(256 * 1024);
    const [rx, tx] = [await as('hd-1'), await as('hd-2')];
    const echoed = new Promise<number>((resolve) => rx.subscribe('_INBOX_hd-1.big', { max: 1, callback: (_e, m) => resolve(m.data.length) }));
    await rx.flush();
    tx.publish('_INBOX_hd-1.big', big);
    expect(await echoed).toBe(big.length);
    // The legitimate forward: brokering through public-proxy-eps-1 goes on.
    expect((await freshPing()).body.result.serverInfo.name).toBe('hd-2');
  });
});
