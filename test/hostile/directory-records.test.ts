import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/core/errors.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { waitForPort } from '../../src/devstack/stack.js';
import { DirectoryState, type Tip } from '../../src/directory/chain.js';
import { recordHash, signRecord, verifyRecord, type RecordSigner, type SignerPolicy } from '../../src/directory/records.js';
import type { RecordData, SignedRecord } from '../../src/directory/types.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';

// Signed directory records mutated by fast-check: each mutation names the refusal it earns, from
// verifyRecord and DirectoryState alone and from a real sd, whose chain tip must not move.

const certs = resolve('settings/dev/certs');
const read = (name: string) => readFileSync(join(certs, name), 'utf8');
const SEED = Number(process.env.HOSTILE_SEED ?? 20_240_611);
const admin: RecordSigner = { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') };
const operatorSigner: RecordSigner = { certPem: read('hd-1.crt'), keyPem: read('hd-1.key') };
const policy: SignerPolicy = { rootCa: read('root.crt'), adminFingerprints: new Set([fingerprintOf(admin.certPem.toString())]) };
const adminCert = new X509Certificate(admin.certPem);
const validFrom = Date.parse(adminCert.validFrom);
const validTo = Date.parse(adminCert.validTo);
const HEX64 = fc.stringMatching(/^[0-9a-f]{64}$/);

type Obj = Record<string, unknown>;
type Code = 'BAD_SIGNATURE' | 'UNKNOWN_SIGNER' | 'INVALID_RECORD' | 'STALE_PARENT';
/** `schema`: the shape is wrong, which the sd's params check reports as INVALID_PARAMS. */
interface Mutation {
  what: string;
  code: Code;
  schema?: true;
  make: (good: SignedRecord, tip: Tip) => unknown;
}

const WIRE: Record<Code, number> = { BAD_SIGNATURE: -32010, UNKNOWN_SIGNER: -32011, STALE_PARENT: -32012, INVALID_RECORD: -32013 };
const FIELDS = ['data', 'parent', 'createdAt', 'signer', 'signerCertificate', 'signature'] as const;
const set = (field: string, value: unknown) => (good: SignedRecord) => ({ ...good, [field]: value });
const newData: RecordData = { kind: 'group', name: 'hostile' };
const inWindow = (t: number) => t > validFrom && t < validTo;

const mutations: fc.Arbitrary<Mutation> = fc.oneof(
  // Shape: dropped, added, or wrong-typed fields.
  fc.constantFrom(...FIELDS).map((f) => ({
    what: `drop ${f}`,
    code: 'INVALID_RECORD' as const,
    schema: true as const,
    make: (good: SignedRecord) => Object.fromEntries(Object.entries(good).filter(([k]) => k !== f)),
  })),
  fc
    .tuple(fc.oneof(fc.string({ minLength: 1, maxLength: 10 }), fc.constantFrom('__proto__', 'seq', 'hash')), fc.jsonValue({ maxDepth: 1 }), fc.boolean())
    .filter(([k]) => !(FIELDS as readonly string[]).includes(k) && k !== 'kind' && k !== 'name')
    .map(([k, v, inData]) => ({
      what: `add ${JSON.stringify(k)} to ${inData ? 'data' : 'the record'}`,
      code: 'INVALID_RECORD' as const,
      schema: true as const,
      make: (good: SignedRecord) =>
        inData
          ? { ...good, data: Object.defineProperty({ ...good.data }, k, { value: v, enumerable: true }) }
          : Object.defineProperty({ ...good }, k, { value: v, enumerable: true }),
    })),
  fc
    .tuple(fc.constantFrom(...FIELDS), fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 })))
    .map(([f, v]) => ({ what: `${f} as ${JSON.stringify(v)}`, code: 'INVALID_RECORD' as const, schema: true as const, make: set(f, v) })),
  fc.string({ maxLength: 70 }).filter((s) => !/^[0-9a-f]{64}$/.test(s)).map((v) => ({ what: `parent ${JSON.stringify(v)}`, code: 'INVALID_RECORD' as const, schema: true as const, make: set('parent', v) })),
  fc.string().filter((s) => Number.isNaN(Date.parse(s)) || !s.endsWith('Z')).map((v) => ({ what: `createdAt ${JSON.stringify(v)}`, code: 'INVALID_RECORD' as const, schema: true as const, make: set('createdAt', v) })),
  fc.constantFrom<RecordData | Obj>({ kind: 'nope' }, { kind: 'group' }, { kind: 'operator', name: '-bad', certificate: 'x' }, { kind: 'channel', operator: 'hd-1', channel: { type: 'smtp' } }).map((d) => ({
    what: `data ${JSON.stringify(d)}`,
    code: 'INVALID_RECORD' as const,
    schema: true as const,
    make: set('data', d),
  })),
  // Signed content changed: the signature no longer matches.
  HEX64.map((v) => ({ what: 'another parent', code: 'BAD_SIGNATURE' as const, make: (g: SignedRecord) => (v === g.parent ? { ...g, parent: v.replace(/^./, v[0] === 'a' ? 'b' : 'a') } : { ...g, parent: v }) })),
  fc.date({ min: new Date(validFrom + 1), max: new Date(Math.min(validTo - 1, Date.now() + 365 * 86_400_000)), noInvalidDate: true }).map((d) => ({
    what: `createdAt ${d.toISOString()}`,
    code: 'BAD_SIGNATURE' as const,
    make: (g: SignedRecord) => ({ ...g, createdAt: d.toISOString() === g.createdAt ? new Date(d.getTime() + 1).toISOString() : d.toISOString() }),
  })),
  fc.string({ minLength: 1, maxLength: 40 }).map((name) => ({ what: `data renamed to ${JSON.stringify(name)}`, code: 'BAD_SIGNATURE' as const, make: (g: SignedRecord) => ({ ...g, data: { kind: 'group', name: `${name}!` } }) })),
  fc.integer({ min: 0, max: 63 }).map((i) => ({
    what: `flip signature byte ${i}`,
    code: 'BAD_SIGNATURE' as const,
    make: (g: SignedRecord) => {
      const b = Buffer.from(g.signature, 'base64');
      b[i % b.length]! ^= 0x80;
      return { ...g, signature: b.toString('base64') };
    },
  })),
  // Who signed: a mismatched fingerprint, an unparsable certificate, or someone who is not an admin.
  HEX64.map((v) => ({ what: 'signer is not the certificate fingerprint', code: 'INVALID_RECORD' as const, make: (g: SignedRecord) => ({ ...g, signer: v === g.signer ? '0'.repeat(64) : v }) })),
  fc.string({ maxLength: 50 }).map((junk) => ({
    what: 'signerCertificate is not a certificate',
    code: 'INVALID_RECORD' as const,
    make: set('signerCertificate', `-----BEGIN CERTIFICATE-----\n${Buffer.from(junk).toString('base64')}\n-----END CERTIFICATE-----\n`),
  })),
  fc.constantFrom('hd-1.crt', 'root.crt', 'sd-1.crt').map((crt) => ({
    what: `claims ${crt} as signer`,
    code: 'UNKNOWN_SIGNER' as const,
    make: (g: SignedRecord) => ({ ...g, signerCertificate: read(crt), signer: fingerprintOf(read(crt)) }),
  })),
  fc.constant({ what: 'signed by an operator key', code: 'UNKNOWN_SIGNER' as const, make: (_g: SignedRecord, tip: Tip) => signRecord(newData, tip.hash, operatorSigner) }),
  fc
    .date({ min: new Date(0), max: new Date(validFrom - 1), noInvalidDate: true })
    .map((d) => ({ what: `signed at ${d.toISOString()}, before the signer was valid`, code: 'UNKNOWN_SIGNER' as const, make: (_g: SignedRecord, tip: Tip) => signRecord(newData, tip.hash, admin, d) })),
  // Genuinely signed by the admin, but not on the tip, or not applicable to the entries.
  HEX64.map((v) => ({ what: 'signed on a stale parent', code: 'STALE_PARENT' as const, make: (_g: SignedRecord, tip: Tip) => signRecord(newData, v === tip.hash ? '0'.repeat(64) : v, admin) })),
  fc.constantFrom<RecordData>(
    { kind: 'member', group: 'gamers', operator: 'hd-1' },
    { kind: 'member', group: 'peers', operator: 'nobody' },
    { kind: 'group', name: 'peers' },
    { kind: 'channel', operator: 'hd-1', channel: { type: 'grpc_server' } },
    { kind: 'channel', operator: 'hd-2', channel: { type: 'grpc_server', proxy: 'nobody' } },
    { kind: 'service', operator: 'hd-1', name: 's', permissions: [{ group: 'gamers', methods: ['*'] }] },
    { kind: 'operator', name: 'x', certificate: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' },
  ).map((d) => ({ what: `does not apply: ${JSON.stringify(d)}`, code: 'INVALID_RECORD' as const, make: (_g: SignedRecord, tip: Tip) => signRecord(d, tip.hash, admin) })),
);

const SEED_RECORDS: RecordData[] = [
  { kind: 'operator', name: 'hd-1', certificate: read('hd-1.crt') },
  { kind: 'operator', name: 'hd-2', certificate: read('hd-2.crt') },
  { kind: 'group', name: 'peers' },
];

/** What verifyRecord, then DirectoryState.append, say about `record`. */
function verdict(state: DirectoryState, record: unknown): { ok: true } | { ok: false; code: string; detail: string } {
  const checked = verifyRecord(record, policy);
  if (!checked.ok) return checked;
  return state.clone().append(record as SignedRecord);
}

describe('hostile directory records', () => {
  it('records - every mutation of a signed record is refused with its code and the state is unchanged', () => {
    const state = new DirectoryState();
    for (const d of SEED_RECORDS) expect(state.append(signRecord(d, state.tip().hash, admin)).ok).toBe(true);
    const tip = state.tip();
    const good = signRecord(newData, tip.hash, admin);
    expect(verdict(state, good)).toMatchObject({ ok: true });
    const seen = new Set<string>();
    fc.assert(
      fc.property(mutations, (m) => {
        const v = verdict(state, m.make(good, tip));
        if (v.ok || v.code !== m.code) throw new Error(`${m.what}: expected ${m.code}, got ${JSON.stringify(v)}`);
        seen.add(v.code);
      }),
      { numRuns: 600, seed: SEED },
    );
    expect([...seen].sort()).toEqual(['BAD_SIGNATURE', 'INVALID_RECORD', 'STALE_PARENT', 'UNKNOWN_SIGNER']);
    expect(state.tip()).toEqual(tip);
  });

  it('records - a chained record whose seq or hash lies is refused by applyChained', () => {
    const state = new DirectoryState();
    const first = signRecord(SEED_RECORDS[0]!, state.tip().hash, admin);
    expect(state.applyChained({ seq: 2, hash: recordHash(first), record: first })).toMatchObject({ ok: false, code: 'STALE_PARENT' });
    expect(state.applyChained({ seq: 1, hash: '0'.repeat(64), record: first })).toMatchObject({ ok: false, code: 'INVALID_RECORD' });
    expect(state.applyChained({ seq: 1, hash: recordHash(first), record: first }).ok).toBe(true);
    expect(state.applyChained({ seq: 2, hash: recordHash(first), record: first })).toMatchObject({ ok: false, code: 'STALE_PARENT' });
  });
});

describe('hostile directory records against a real sd', () => {
  let nats: TestNatsServer;
  let child: ChildProcess | undefined;
  let roleDir: string;
  let url: string;
  const tls = { ca: Buffer.from(read('root.crt')), cert: Buffer.from(read('hd-1.crt')), key: Buffer.from(read('hd-1.key')) };
  const rpc = <T>(method: string, params: unknown) => callJsonRpc<T>({ url, serverName: 'sd-1', tls, timeoutMs: 5_000 }, method, params);

  beforeAll(async () => {
    nats = await TestNatsServer.start({ streams: ['SD_HOSTILE'] });
    const port = await freePort();
    url = `https://127.0.0.1:${port}/jsonrpc`;
    roleDir = mkdtempSync(join(tmpdir(), 'eps-hostile-sd-'));
    writeFileSync(
      join(roleDir, 'sd.yml'),
      [
        'name: sd-hostile',
        `listen: { host: 127.0.0.1, port: ${port} }`,
        `tls: { ca: ${certs}/root.crt, cert: ${certs}/sd-1.crt, key: ${certs}/sd-1.key }`,
        `admins: [${certs}/sd-admin.crt]`,
        'stream: SD_HOSTILE',
      ].join('\n'),
    );
    child = spawn(process.execPath, ['dist/src/cli/sd.js', 'run'], {
      env: { ...process.env, SD_SETTINGS: roleDir, NATS_URL: nats.url, LOG_FORMAT: 'json', LOG_LEVEL: 'error' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    await waitForPort(port, 10_000);
    let parent = (await rpc<Tip>('getTip', {})).hash;
    const records = SEED_RECORDS.map((d) => {
      const r = signRecord(d, parent, admin);
      parent = recordHash(r);
      return r;
    });
    expect((await rpc<{ accepted: number }>('submitRecords', { records })).accepted).toBe(3);
  });

  afterAll(async () => {
    const c = child;
    if (c && c.exitCode === null) await new Promise<void>((r) => (c.once('exit', () => r()), c.kill('SIGTERM')));
    if (roleDir) rmSync(roleDir, { recursive: true, force: true });
    await nats?.stop();
  });

  it('sd - submitRecords answers each mutated record with its precise code and the tip does not move', async () => {
    const tip = await rpc<Tip>('getTip', {});
    const good = signRecord(newData, tip.hash, admin);
    await fc.assert(
      fc.asyncProperty(mutations, async (m) => {
        // A bad record alone, and a bad record behind a good one: neither persists anything.
        const lead = signRecord({ kind: 'group', name: 'lead' }, tip.hash, admin);
        const afterLead: Tip = { seq: tip.seq + 1, hash: recordHash(lead) };
        const batches = [[m.make(good, tip)], [lead, m.make(signRecord(newData, afterLead.hash, admin), afterLead)]];
        for (const records of batches) {
          const err = await rpc('submitRecords', { records }).then(
            () => undefined,
            (e: unknown) => e,
          );
          const want = m.schema ? -32602 : WIRE[m.code];
          if (!(err instanceof RpcError) || err.code !== want) throw new Error(`${m.what}: expected ${want}, got ${String(err)}`);
          if (!m.schema && records.length === 2 && !err.message.includes('record 1:')) throw new Error(`${m.what}: ${err.message} does not name record 1`);
        }
      }),
      { numRuns: 60, seed: SEED },
    );
    expect(await rpc<Tip>('getTip', {})).toEqual(tip);
    // Still accepting: the untouched record goes in.
    expect(await rpc<{ accepted: number; tip: Tip }>('submitRecords', { records: [good] })).toEqual({ accepted: 1, tip: { seq: tip.seq + 1, hash: recordHash(good) } });
  }, 30_000);
});
