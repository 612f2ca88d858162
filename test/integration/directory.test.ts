import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { NatsConnection } from '../../src/core/nats.js';
import { RpcError } from '../../src/core/errors.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { DirectoryClient } from '../../src/directory/client.js';
import { recordHash, signRecord, type RecordSigner } from '../../src/directory/records.js';
import type { Tip } from '../../src/directory/chain.js';
import type { ChainedRecord, DirectoryEntry, RecordData, SignedRecord } from '../../src/directory/types.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { waitForPort } from '../../src/devstack/stack.js';
import { freePort } from '../helpers/ports.js';

const certs = resolve('settings/dev/certs');
const read = (name: string) => readFileSync(join(certs, name), 'utf8');
const admin: RecordSigner = { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') };
const tlsOf = (name: string) => ({ ca: Buffer.from(read('root.crt')), cert: Buffer.from(read(`${name}.crt`)), key: Buffer.from(read(`${name}.key`)) });
const silent = pino({ level: 'silent' });
const run = promisify(execFile);

const CODES = { BAD_SIGNATURE: -32010, UNKNOWN_SIGNER: -32011, STALE_PARENT: -32012, INVALID_RECORD: -32013, INVALID_PARAMS: -32602, UNKNOWN_OPERATOR: -32001 };

/** A real `sd run` child process with its own role folder. */
class SdProcess {
  child: ChildProcess | undefined;
  readonly roleDir: string;
  constructor(
    readonly port: number,
    readonly natsUrl: string,
    stream: string,
  ) {
    this.roleDir = mkdtempSync(join(tmpdir(), 'eps-sd-role-'));
    writeFileSync(
      join(this.roleDir, 'sd.yml'),
      [
        'name: sd-test',
        `listen: { host: 127.0.0.1, port: ${port} }`,
        `tls: { ca: ${certs}/root.crt, cert: ${certs}/sd-1.crt, key: ${certs}/sd-1.key }`,
        `admins: [${certs}/sd-admin.crt]`,
        `stream: ${stream}`,
      ].join('\n'),
    );
  }
  get url() {
    return `https://127.0.0.1:${this.port}/jsonrpc`;
  }
  async start(): Promise<void> {
    this.child = spawn(process.execPath, ['dist/src/cli/sd.js', 'run'], {
      env: { ...process.env, SD_SETTINGS: this.roleDir, NATS_URL: this.natsUrl, LOG_FORMAT: 'json', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const child = this.child;
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`sd exited with code ${code} before listening`))));
    await Promise.race([waitForPort(this.port, 10_000), exited]);
  }
  /** Stops with SIGTERM and resolves to the exit code. */
  async stop(): Promise<number | null> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    return new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill('SIGTERM');
    });
  }
  cleanup() {
    rmSync(this.roleDir, { recursive: true, force: true });
  }
}

let nats: TestNatsServer;
let sd: SdProcess;

function rpc<T>(method: string, params: unknown = {}, as = 'hd-1', url = sd.url): Promise<T> {
  return callJsonRpc<T>({ url, serverName: 'sd-1', tls: tlsOf(as), timeoutMs: 5_000 }, method, params);
}

async function rpcError(method: string, params: unknown): Promise<RpcError> {
  const err = await rpc(method, params).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RpcError);
  return err as RpcError;
}

/** Signs `datas` as a chain extending the sd's current tip. */
async function signOnTip(datas: RecordData[], signer = admin, url = sd.url): Promise<SignedRecord[]> {
  let parent = (await rpc<Tip>('getTip', {}, 'hd-1', url)).hash;
  return datas.map((d) => {
    const r = signRecord(d, parent, signer);
    parent = recordHash(r);
    return r;
  });
}

const operator = (name: string): RecordData => ({ kind: 'operator', name, certificate: read(`${name}.crt`) });

function newClient(url: string, nc: NatsConnection, stream: string) {
  return new DirectoryClient({ url, serverName: 'sd-1', tls: tlsOf('hd-2'), nc, log: silent, stream, retry: { initialMs: 50, maxMs: 300 } });
}

beforeAll(async () => {
  nats = await TestNatsServer.start({ streams: ['SD_TEST'] });
  sd = new SdProcess(await freePort(), nats.url, 'SD_TEST');
  await sd.start();
});

afterAll(async () => {
  await sd?.stop();
  sd?.cleanup();
  await nats?.stop();
});

describe('directory', () => {
  it('directory - a client without a certificate is refused', async () => {
    const status = await new Promise<{ code: number | undefined; body: string }>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: sd.port, path: '/jsonrpc', method: 'POST', ca: read('root.crt'), servername: 'sd-1', headers: { 'Content-Type': 'application/json' } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ code: res.statusCode, body }));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'getEntries', params: {} }));
    });
    expect(status.code).toBe(401);
    expect(JSON.parse(status.body).error.code).toBe(-32020);
  });

  it('directory - a client started before any record exists picks records up as they arrive over NATS', async () => {
    const nc = await nats.connectAs('hd-2');
    // Nothing answers at this URL, so whatever the client learns can only come over NATS.
    const client = newClient(`https://127.0.0.1:${await freePort()}/jsonrpc`, nc, 'SD_TEST');
    try {
      const changes: ChainedRecord[] = [];
      client.onChange((r) => changes.push(r));
      client.start();
      await client.ready();
      expect(client.entries()).toEqual([]);

      const records = await signOnTip([operator('hd-1'), operator('hd-2'), { kind: 'group', name: 'peers' }, { kind: 'member', group: 'peers', operator: 'hd-1' }]);
      const result = await rpc<{ accepted: number; tip: Tip }>('submitRecords', { records });
      expect(result).toEqual({ accepted: 4, tip: { seq: 4, hash: recordHash(records[3]!) } });

      await vi.waitFor(() => expect(client.tip().seq).toBe(4), { timeout: 5_000, interval: 20 });
      expect(changes.map((c) => c.seq)).toEqual([1, 2, 3, 4]);
      expect(client.entry('hd-1')).toMatchObject({ name: 'hd-1', groups: ['peers'] });

      const entry = await rpc<DirectoryEntry>('getEntry', { name: 'hd-2' });
      expect(entry).toEqual(client.entry('hd-2'));
      expect((await rpcError('getEntry', { name: 'nobody' })).code).toBe(CODES.UNKNOWN_OPERATOR);
    } finally {
      await client.close();
      await nc.drain();
    }
  });

  it('directory - refusals carry precise JSON-RPC codes and persist nothing', async () => {
    const before = await rpc<Tip>('getTip');

    const [good] = await signOnTip([{ kind: 'group', name: 'proxies' }]);
    const tampered = { ...good!, data: { kind: 'group', name: 'admins' } };
    expect((await rpcError('submitRecords', { records: [tampered] })).code).toBe(CODES.BAD_SIGNATURE);

    const [byOperator] = await signOnTip([{ kind: 'group', name: 'proxies' }], { certPem: read('hd-1.crt'), keyPem: read('hd-1.key') });
    const unknown = await rpcError('submitRecords', { records: [byOperator] });
    expect(unknown.code).toBe(CODES.UNKNOWN_SIGNER);

    const stale = signRecord({ kind: 'group', name: 'proxies' }, '0'.repeat(64), admin);
    const staleErr = await rpcError('submitRecords', { records: [stale] });
    expect(staleErr.code).toBe(CODES.STALE_PARENT);
    expect(staleErr.message).toContain(`expected parent ${before.hash}`);
    expect(staleErr.message).toContain(`got ${'0'.repeat(64)}`);

    const [orphan] = await signOnTip([{ kind: 'member', group: 'gamers', operator: 'hd-1' }]);
    const invalid = await rpcError('submitRecords', { records: [orphan] });
    expect(invalid.code).toBe(CODES.INVALID_RECORD);
    expect(invalid.message).toContain('member group gamers is not a declared group');

    const params = await rpcError('submitRecords', { records: [{ data: { kind: 'group' } }] });
    expect(params.code).toBe(CODES.INVALID_PARAMS);
    expect(params.message).toContain('records.0');

    // A batch whose second record is bad persists none of it.
    const batch = await signOnTip([{ kind: 'group', name: 'proxies' }, { kind: 'member', group: 'gamers', operator: 'hd-1' }]);
    expect((await rpcError('submitRecords', { records: batch })).message).toContain('record 1:');

    expect(await rpc<Tip>('getTip')).toEqual(before);
  });

  it('directory - sd-setup submits the dev records once and changes nothing when run again', async () => {
    const env = { ...process.env, SD_URL: sd.url, LOG_FORMAT: 'json' };
    const first = await run(process.execPath, ['dist/src/cli/sd-setup.js'], { env });
    expect(first.stdout).toContain('directory records submitted');
    const tip = await rpc<Tip>('getTip');
    // hd-1, hd-2, group peers and hd-1's membership were submitted by an earlier test.
    // The dev directory: 15 records (games-1, its rendezvous group and membership among them).
    expect(tip.seq).toBe(4 + 15);

    const second = await run(process.execPath, ['dist/src/cli/sd-setup.js'], { env });
    expect(second.stdout).toContain('nothing to do');
    expect(await rpc<Tip>('getTip')).toEqual(tip);

    const { entries } = await rpc<{ entries: DirectoryEntry[] }>('getEntries');
    const hd2 = entries.find((e) => e.name === 'hd-2')!;
    expect(hd2.channels).toEqual([{ type: 'grpc_server', proxy: 'public-proxy-eps-1' }]);
    expect(entries.map((e) => e.name).sort()).toEqual(['games-1', 'hd-1', 'hd-2', 'public-proxy-eps-1', 'public-proxy-hyper-1']);
    // The rendezvous may ask the proxy operator for relays, and nothing else.
    expect(entries.find((e) => e.name === 'public-proxy-eps-1')!.services).toContainEqual(
      expect.objectContaining({ permissions: expect.arrayContaining([{ group: 'rendezvous', methods: ['relayRequest'] }]) }),
    );
  });

  it('directory - records survive an sd restart and clients keep serving entries while it is down', async () => {
    const nc = await nats.connectAs('hd-2');
    const client = newClient(sd.url, nc, 'SD_TEST');
    try {
      client.start();
      await client.ready();
      const before = await rpc<{ records: ChainedRecord[]; tip: Tip }>('getRecords', {});
      expect(client.tip()).toEqual(before.tip);

      expect(await sd.stop()).toBe(0);
      expect(client.isPermitted('hd-1', 'hd-2', '_ping')).toBe(true);
      expect(client.isPermitted('public-proxy-eps-1', 'hd-2', '_ping')).toBe(false);
      expect(client.entry('hd-2')?.fingerprint).toBe(fingerprintOf(read('hd-2.crt')));

      await sd.start();
      expect(await rpc('getRecords', {})).toEqual(before);
      expect((await rpc<{ records: ChainedRecord[] }>('getRecords', { after: before.tip.seq - 1 })).records.map((r) => r.seq)).toEqual([before.tip.seq]);

      // The restarted sd appends where the old one stopped, and the client hears of it.
      const records = await signOnTip([{ kind: 'channel', operator: 'hd-1', channel: { type: 'jsonrpc_server', address: '127.0.0.1:5555' } }]);
      expect((await rpc<{ accepted: number }>('submitRecords', { records })).accepted).toBe(1);
      await vi.waitFor(() => expect(client.entry('hd-1')?.channels).toHaveLength(2), { timeout: 5_000, interval: 20 });
    } finally {
      await client.close();
      await nc.drain();
    }
  });

  it('directory - a client started before the sd loads the chain once the sd is up', async () => {
    // A bus of its own: the stream does not exist until this sd creates it.
    const bus = await TestNatsServer.start({ streams: ['SD_LATE'] });
    const late = new SdProcess(await freePort(), bus.url, 'SD_LATE');
    const nc = await bus.connectAs('hd-2');
    const client = newClient(late.url, nc, 'SD_LATE');
    try {
      client.start();
      let ready = false;
      void client.ready().then(() => (ready = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(ready).toBe(false);

      await late.start();
      await client.ready();
      const records = await signOnTip([operator('public-proxy-hyper-1')], admin, late.url);
      await rpc('submitRecords', { records }, 'hd-1', late.url);
      await vi.waitFor(() => expect(client.entry('public-proxy-hyper-1')).toBeDefined(), { timeout: 5_000, interval: 20 });
    } finally {
      await client.close();
      await nc.drain();
      await late.stop();
      late.cleanup();
      await bus.stop();
    }
  });
});
