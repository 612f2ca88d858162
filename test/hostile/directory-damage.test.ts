import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/core/errors.js';
import { waitForPort } from '../../src/devstack/stack.js';
import type { Tip } from '../../src/directory/chain.js';
import { DirectoryClient, SD_RECORDS_SUBJECT } from '../../src/directory/client.js';
import { recordHash, signRecord, type RecordSigner } from '../../src/directory/records.js';
import { GENESIS_PARENT, type RecordData, type SignedRecord } from '../../src/directory/types.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from './helpers.js';

// The attack from issue 9: whoever can publish on the record stream's subject appends a record
// the sd never accepted. Before, one such record made the sd refuse every later submit, even after
// a restart. Now the sd and every client stop at it, name it, keep serving the records before it,
// and `sd repair --yes` (and only with --yes) removes it, after which submissions work again.

const certs = resolve('settings/dev/certs');
const read = (name: string) => readFileSync(join(certs, name), 'utf8');
const admin: RecordSigner = { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') };
const tlsOf = (name: string) => ({ ca: Buffer.from(read('root.crt')), cert: Buffer.from(read(`${name}.crt`)), key: Buffer.from(read(`${name}.key`)) });
const STREAM = 'SD_DAMAGE';
type Line = Record<string, unknown> & { msg?: string };

/** `sd run` as a child process whose JSON log lines the test reads. */
class Sd {
  child: ChildProcess | undefined;
  lines: Line[] = [];
  constructor(
    readonly roleDir: string,
    readonly port: number,
    readonly natsUrl: string,
  ) {}
  async start(): Promise<void> {
    const child = spawn(process.execPath, ['dist/src/cli/sd.js', 'run'], {
      env: { ...process.env, SD_SETTINGS: this.roleDir, NATS_URL: this.natsUrl, LOG_FORMAT: 'json', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.child = child;
    let rest = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop()!;
      for (const p of parts) if (p.trim()) this.lines.push(JSON.parse(p) as Line);
    });
    await waitForPort(this.port, 10_000);
  }
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((r) => (child.once('exit', () => r()), child.kill('SIGTERM')));
  }
}

function writeRole(dir: string, port: number, certDir: string): void {
  writeFileSync(
    join(dir, 'sd.yml'),
    [
      'name: sd-damage',
      `listen: { host: 127.0.0.1, port: ${port} }`,
      `tls: { ca: ${certDir}/root.crt, cert: ${certDir}/sd-1.crt, key: ${certDir}/sd-1.key }`,
      `admins: [${certDir}/sd-admin.crt]`,
      `stream: ${STREAM}`,
    ].join('\n'),
  );
}

describe('hostile directory stream', () => {
  let nats: TestNatsServer;
  let sd: Sd;
  let roleDir: string;
  let backupDir: string;
  let attacker: NatsConnection;
  let clientNc: NatsConnection;
  let client: DirectoryClient;
  const clientLines: Line[] = [];
  let url: string;

  const rpc = <T>(method: string, params: unknown = {}) => callJsonRpc<T>({ url, serverName: 'sd-1', tls: tlsOf('hd-1'), timeoutMs: 5_000 }, method, params);
  const rpcError = (method: string, params: unknown) =>
    rpc(method, params).then(
      () => {
        throw new Error(`${method} succeeded`);
      },
      (e: unknown) => e as RpcError,
    );

  /** Signs `datas` as a chain on the sd's tip and submits it. */
  async function submit(datas: RecordData[]): Promise<{ accepted: number; tip: Tip }> {
    let parent = (await rpc<Tip>('getTip')).hash;
    const records = datas.map((d) => {
      const r = signRecord(d, parent, admin);
      parent = recordHash(r);
      return r;
    });
    return rpc('submitRecords', { records });
  }

  /** `sd repair ARGS`: exit code and stdout. */
  function repair(...args: string[]): Promise<{ code: number; out: string }> {
    return new Promise((done) => {
      execFile(
        process.execPath,
        ['dist/src/cli/sd.js', 'repair', '--backup', backupDir, ...args],
        { env: { ...process.env, SD_SETTINGS: roleDir, NATS_URL: nats.url, LOG_LEVEL: 'warn' } },
        (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }),
      );
    });
  }

  /** The real sd-setup with the dev records, against this sd. */
  function sdSetup(): Promise<{ code: number; out: string }> {
    return new Promise((done) => {
      execFile(
        process.execPath,
        ['dist/src/cli/sd-setup.js', '--wait', '5'],
        { env: { ...process.env, SD_URL: url, SD_SERVER_NAME: 'sd-1', LOG_LEVEL: 'warn' } },
        (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr }),
      );
    });
  }

  async function storedCount(): Promise<number> {
    const jsm = await jetstreamManager(attacker);
    return (await jsm.streams.info(STREAM)).state.messages;
  }

  /** What an attacker with bus access does: publish straight to the stream's subject. */
  async function append(record: unknown): Promise<number> {
    const jsm = await jetstreamManager(attacker);
    const before = (await jsm.streams.info(STREAM)).state.last_seq;
    attacker.publish(SD_RECORDS_SUBJECT, typeof record === 'string' ? record : JSON.stringify(record));
    await attacker.flush();
    for (let i = 0; i < 100 && (await jsm.streams.info(STREAM)).state.last_seq === before; i++) await new Promise((r) => setTimeout(r, 20));
    return before + 1;
  }

  const damageLines = (lines: Line[], seq: number) => lines.filter((l) => l.level === 50 && l.seq === seq && typeof l.msg === 'string' && l.msg.includes(`damaged at record ${seq}`));

  beforeAll(async () => {
    nats = await TestNatsServer.start({ streams: [STREAM] });
    const port = await freePort();
    url = `https://127.0.0.1:${port}/jsonrpc`;
    roleDir = mkdtempSync(join(tmpdir(), 'eps-damage-sd-'));
    backupDir = mkdtempSync(join(tmpdir(), 'eps-damage-backup-'));
    writeRole(roleDir, port, certs);
    sd = new Sd(roleDir, port, nats.url);
    await sd.start();
    // On the secured bus only the sd (and the admin) may write the stream, so a record that does not
    // verify gets there by disk damage, an old bug or a stolen sd key: the admin stands in for those.
    attacker = await nats.admin();
    expect((await submit([{ kind: 'operator', name: 'hd-1', certificate: read('hd-1.crt') }, { kind: 'operator', name: 'hd-2', certificate: read('hd-2.crt') }, { kind: 'group', name: 'peers' }])).accepted).toBe(3);

    clientNc = await nats.connectAs('hd-2');
    const log = pino({ level: 'info' }, { write: (s: string) => void clientLines.push(JSON.parse(s) as Line) });
    // resyncMs: a message that reaches the stream without a poke is found within it.
    client = new DirectoryClient({ url, serverName: 'sd-1', tls: tlsOf('hd-2'), nc: clientNc, log, stream: STREAM, retry: { initialMs: 50, maxMs: 300 }, resyncMs: 500 });
    client.start();
    await client.ready();
    await waitFor(() => client.tip().seq === 3, 5_000, 'the client to hold 3 records');
  }, 30_000);

  afterAll(async () => {
    await client?.close();
    await clientNc?.drain();
    await attacker?.close();
    await sd?.stop();
    for (const d of [roleDir, backupDir]) if (d) rmSync(d, { recursive: true, force: true });
    await nats?.stop();
  });

  it('directory - a badly signed record appended to the stream is named by the sd and the clients, reads go on, and sd repair --yes (only with --yes) brings submissions back', async () => {
    const tip = await rpc<Tip>('getTip');
    const forged = signRecord({ kind: 'member', group: 'peers', operator: 'hd-1' }, tip.hash, admin);
    const sig = Buffer.from(forged.signature, 'base64');
    sig[10]! ^= 0x01;
    const seq = await append({ ...forged, signature: sig.toString('base64') });
    expect(seq).toBe(4);

    // The sd and the running client say which record and why, once each.
    await waitFor(() => damageLines(sd.lines, 4).length > 0 && damageLines(clientLines, 4).length > 0, 5_000, 'sd and client to report record 4');
    for (const lines of [sd.lines, clientLines]) {
      const [line] = damageLines(lines, 4);
      expect(line).toMatchObject({ stream: STREAM, seq: 4, code: 'BAD_SIGNATURE' });
      expect(line!.msg).toBe(
        `the directory stream ${STREAM} is damaged at record 4 (BAD_SIGNATURE: ${line!.detail as string}); serving the 3 records before it; \`sd repair --yes\` removes record 4 and everything after it`,
      );
    }
    expect(client.damage()).toMatchObject({ stream: STREAM, seq: 4, code: 'BAD_SIGNATURE' });

    // The last good state is served: by the sd, by the running client, and to a client that starts now.
    expect(await rpc<Tip>('getTip')).toEqual(tip);
    expect(await rpc<{ name: string }>('getEntry', { name: 'hd-2' })).toMatchObject({ name: 'hd-2' });
    expect(client.entry('hd-1')?.groups).toEqual([]);
    const lateNc = await nats.connectAs('hd-1');
    const late = new DirectoryClient({ url, serverName: 'sd-1', tls: tlsOf('hd-2'), nc: lateNc, log: pino({ level: 'silent' }), stream: STREAM, retry: { initialMs: 50, maxMs: 300 } });
    late.start();
    await late.ready();
    expect(late.entry('hd-2')).toBeDefined();
    await waitFor(() => late.damage()?.seq === 4, 5_000, 'a client started later to see record 4');
    expect(late.tip()).toEqual(tip);

    // Submissions are refused with what is wrong and what to run, not "see the sd log".
    const refused = await rpcError('submitRecords', { records: [signRecord({ kind: 'group', name: 'later' }, tip.hash, admin)] });
    expect(refused.code).toBe(-32603);
    expect(refused.message).toMatch(new RegExp(`damaged at record 4 \\(BAD_SIGNATURE: .*\\); serving the 3 records before it; \`sd repair --yes\` removes record 4 .*; submissions are refused until then$`));
    expect(refused.data).toMatchObject({ damage: { stream: STREAM, seq: 4, code: 'BAD_SIGNATURE' } });

    // Read again on every retry of the followers (the client's retry is 50-300 ms), said once.
    expect(damageLines(clientLines, 4)).toHaveLength(1);
    expect(damageLines(sd.lines, 4)).toHaveLength(1);

    // Without --yes the command only says what it would do.
    const dry = await repair();
    expect(dry.code).toBe(2);
    expect(dry.out).toContain(`stream ${STREAM} holds 4 records; 3 verify from the first one on`);
    expect(dry.out).toContain(`will remove 1 stored record (sequences 4..4) and rebuild ${STREAM} with records 1..3`);
    expect(dry.out).toContain('refusing to change the stream without --yes');
    expect(await storedCount()).toBe(4);

    const fixed = await repair('--yes');
    expect(fixed.out).toMatch(/backup of every stored record: .*SD_DAMAGE-.*\.jsonl/);
    expect(fixed.out).toContain(`repaired: ${STREAM} holds records 1..3`);
    expect(fixed.code).toBe(0);
    expect(await storedCount()).toBe(3);
    const backup = readFileSync(/backup of every stored record: (\S+)/.exec(fixed.out)![1]!, 'utf8').trim().split('\n');
    expect(backup).toHaveLength(4);

    // The same sd accepts the next record, and both clients follow on from the repaired stream.
    const after = await submit([{ kind: 'member', group: 'peers', operator: 'hd-1' }]);
    expect(after).toMatchObject({ accepted: 1, tip: { seq: 4 } });
    await waitFor(() => client.tip().seq === 4 && late.tip().seq === 4, 10_000, 'the clients to apply the new record 4');
    expect(client.entry('hd-1')?.groups).toEqual(['peers']);
    expect(client.damage()).toBeUndefined();
    expect(late.damage()).toBeUndefined();
    expect(sd.lines.some((l) => l.msg === 'the damaged records are gone from the stream; accepting submissions again')).toBe(true);
    await late.close();
    await lateNc.drain();
  }, 40_000);

  it('directory - a genuinely signed record that does not chain, and a message that is not JSON, are named too, even by a restarted sd; repair removes both', async () => {
    const tip = await rpc<Tip>('getTip');
    // Signed by the real admin (a captured or misdirected record), but on another parent.
    const offChain = signRecord({ kind: 'group', name: 'elsewhere' }, randomBytes(32).toString('hex'), admin);
    expect(await append(offChain)).toBe(tip.seq + 1);
    expect(await append('{"not": "a record"')).toBe(tip.seq + 2);
    const bad = tip.seq + 1;
    await waitFor(() => damageLines(sd.lines, bad).length > 0 && client.damage()?.seq === bad, 5_000, `sd and client to report record ${bad}`);
    expect(damageLines(sd.lines, bad)[0]).toMatchObject({ code: 'STALE_PARENT' });
    expect(client.damage()).toMatchObject({ code: 'STALE_PARENT', detail: expect.stringContaining(`expected parent ${tip.hash}`) });

    // A restart does not brick it either: the sd replays the good prefix and serves it.
    await sd.stop();
    sd.lines = [];
    await sd.start();
    expect(await rpc<Tip>('getTip')).toEqual(tip);
    expect(damageLines(sd.lines, bad)).toHaveLength(1);
    const refused = await rpcError('submitRecords', { records: [signRecord({ kind: 'group', name: 'later' }, tip.hash, admin)] });
    expect(refused.message).toContain(`damaged at record ${bad} (STALE_PARENT: `);

    const fixed = await repair('--yes');
    expect(fixed.out).toContain(`will remove 2 stored records (sequences ${bad}..${bad + 1})`);
    expect(fixed.code).toBe(0);
    expect(await submit([{ kind: 'group', name: 'later' }])).toMatchObject({ accepted: 1, tip: { seq: bad } });
    await waitFor(() => client.tip().seq === bad && client.damage() === undefined, 10_000, 'the client to follow the repaired stream');

    // Nothing to repair now; the command says so and changes nothing.
    const clean = await repair('--yes');
    expect(clean).toMatchObject({ code: 0, out: expect.stringContaining(`the chain in ${STREAM} verifies; nothing to repair`) });
  }, 40_000);

  it('directory - a message stored on another subject (a consumer delivering into the stream, a widened stream) is named as damage by the sd, the clients and sd repair, even when it holds a genuine record', async () => {
    const tip = await rpc<Tip>('getTip');
    // Red-team finding 1: a push consumer of another stream delivered into the records' subject
    // and the stored message kept its own subject, so followers filtering on eps.sd.records never
    // saw it and every submit failed as "Stale parent". Played here by the admin widening the
    // stream; the record itself is genuine and chains, so only its subject gives it away.
    const jsm = await jetstreamManager(attacker);
    const config = (await jsm.streams.info(STREAM)).config;
    await jsm.streams.update(STREAM, { ...config, subjects: [SD_RECORDS_SUBJECT, 'eps.sd.elsewhere'] });
    const genuine = signRecord({ kind: 'group', name: 'smuggled' }, tip.hash, admin);
    await jetstream(attacker).publish('eps.sd.elsewhere', JSON.stringify(genuine));
    const bad = tip.seq + 1;
    // Nothing pokes the followers (the poke is the records' subject): the sd reads it at the next
    // submit, and refuses it for that record rather than as a stale parent; clients at their resync.
    const refused = await rpcError('submitRecords', { records: [signRecord({ kind: 'group', name: 'later' }, tip.hash, admin)] });
    expect(refused.message).toContain(`damaged at record ${bad} (INVALID_RECORD: the stored message was published on eps.sd.elsewhere`);
    await waitFor(() => damageLines(sd.lines, bad).length > 0 && client.damage()?.seq === bad, 5_000, `sd and client to report record ${bad}`);
    for (const d of [damageLines(sd.lines, bad)[0], client.damage()]) {
      expect(d).toMatchObject({ code: 'INVALID_RECORD', detail: "the stored message was published on eps.sd.elsewhere, not on the records' subject" });
    }
    expect(client.tip()).toEqual(tip);
    expect(await rpc<Tip>('getTip')).toEqual(tip);

    const dry = await repair();
    expect(dry.code).toBe(2);
    expect(dry.out).toContain(`INVALID_RECORD: the stored message was published on eps.sd.elsewhere`);
    const fixed = await repair('--yes');
    expect(fixed.code).toBe(0);
    // The rebuilt stream captures the records' subject only, whatever it had been widened to.
    expect((await jsm.streams.info(STREAM)).config.subjects).toEqual([SD_RECORDS_SUBJECT]);
    expect(await submit([{ kind: 'group', name: 'after-foreign' }])).toMatchObject({ accepted: 1, tip: { seq: bad } });
    await waitFor(() => client.tip().seq === bad && client.damage() === undefined, 10_000, 'the client to follow the repaired stream');
  }, 40_000);

  it('directory - a stream written under another root is recognised in one line, and sd repair --reset --yes (only with --yes) lets sd-setup start over', async () => {
    // Another clone's PKI: same names, another root.
    const otherCerts = mkdtempSync(join(tmpdir(), 'eps-other-pki-'));
    try {
      await new Promise<void>((done, fail) => execFile('bash', ['scripts/make-certs.sh', otherCerts], (err) => (err ? fail(err) : done())));
      const otherAdmin: RecordSigner = { certPem: readFileSync(join(otherCerts, 'sd-admin.crt')), keyPem: readFileSync(join(otherCerts, 'sd-admin.key')) };
      const jsm = await jetstreamManager(attacker);
      await jsm.streams.purge(STREAM);
      // Purging keeps the sequence counter: start from a fresh stream, as another clone's sd would.
      const config = (await jsm.streams.info(STREAM)).config;
      await jsm.streams.delete(STREAM);
      await jsm.streams.add(config);
      let parent = GENESIS_PARENT;
      for (const data of [{ kind: 'group', name: 'theirs' }, { kind: 'group', name: 'also-theirs' }] as RecordData[]) {
        const r: SignedRecord = signRecord(data, parent, otherAdmin);
        parent = recordHash(r);
        await append(r);
      }
      await sd.stop();
      sd.lines = [];
      await sd.start();
      // Logs are written asynchronously: the line may land a moment after the sd listens.
      await waitFor(() => sd.lines.some((l) => l.level === 50 && l.seq === 1), 10_000, 'the sd to log the foreign root');
      const line = sd.lines.find((l) => l.level === 50 && l.seq === 1);
      expect(line?.msg).toMatch(
        new RegExp(
          `^the directory stream ${STREAM} was written under another root: its first record is signed by CN=sd-admin, issued by "CN=EPS P2P dev root" but not by the configured root "CN=EPS P2P dev root" \\(fingerprint [0-9a-f]{16}…\\); .*reset it with \`sd repair --reset --yes\` and run sd-setup again$`,
        ),
      );
      // sd-setup, as `make demo` runs it, passes the sentence on instead of "Internal error".
      const setup = await sdSetup();
      expect(setup.code).toBe(1);
      expect(setup.out).toMatch(new RegExp(`^sd-setup: the sd refuses new records: the directory stream ${STREAM} was written under another root: .*\`sd repair --reset --yes\` and run sd-setup again; submissions are refused until then\n$`));

      const dry = await repair('--reset');
      expect(dry.code).toBe(2);
      expect(dry.out).toContain(`will delete stream ${STREAM} and its 2 records`);
      expect(dry.out).toContain('refusing to change the stream without --yes');
      expect(await storedCount()).toBe(2);

      const reset = await repair('--reset', '--yes');
      expect(reset.code).toBe(0);
      expect(reset.out).toContain(`deleted stream ${STREAM}`);
      // The running sd recreates the stream and sd-setup writes the dev directory from its first record on.
      const again = await sdSetup();
      expect(again.out).toBe('');
      expect(again.code).toBe(0);
      const tip = await rpc<Tip>('getTip');
      expect(tip.seq).toBeGreaterThan(10);
      expect(await storedCount()).toBe(tip.seq);
      expect(await rpc<{ name: string }>('getEntry', { name: 'public-proxy-eps-1' })).toMatchObject({ name: 'public-proxy-eps-1' });
    } finally {
      rmSync(otherCerts, { recursive: true, force: true });
    }
  }, 40_000);

  it('directory - a record deleted from the end of the stream is named as missing at the next submit, and sd repair --yes makes appends possible again', async () => {
    const tip = await rpc<Tip>('getTip');
    const jsm = await jetstreamManager(attacker);
    // Deleting leaves JetStream's sequence counter where it was: no append can match the chain's tip.
    expect(await jsm.streams.deleteMessage(STREAM, tip.seq)).toBe(true);
    const refused = await rpcError('submitRecords', { records: [signRecord({ kind: 'group', name: 'after-delete' }, tip.hash, admin)] });
    expect(refused.message).toContain(`damaged at record ${tip.seq} (MISSING: record ${tip.seq} is not in the stream; nothing is stored after it)`);

    const fixed = await repair('--yes');
    expect(fixed.out).toContain(`damaged at record ${tip.seq} (MISSING: record ${tip.seq} is not in the stream; nothing is stored after it)`);
    expect(fixed.out).toContain(`rebuild ${STREAM} with records 1..${tip.seq - 1}`);
    expect(fixed.code).toBe(0);
    expect(await submit([{ kind: 'group', name: 'after-delete' }])).toMatchObject({ accepted: 1, tip: { seq: tip.seq } });
    expect(sd.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('the record stream no longer holds the replayed chain'))).toBe(true);
  }, 30_000);
});
