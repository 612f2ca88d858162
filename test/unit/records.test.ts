import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { DirectoryState, isPermitted, proxyFor } from '../../src/directory/chain.js';
import { canonicalJson, recordHash, signRecord, verifyRecord, type RecordSigner } from '../../src/directory/records.js';
import { GENESIS_PARENT, type RecordData, type SignedRecord } from '../../src/directory/types.js';

const certs = 'settings/dev/certs';
const read = (name: string) => readFileSync(join(certs, name), 'utf8');
const rootCa = read('root.crt');
const admin: RecordSigner = { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') };
const adminFingerprints = new Set([fingerprintOf(admin.certPem)]);

let tmp: string;
/** A codeSigning certificate from the dev root that is not on the admin list. */
let otherSigner: RecordSigner;
/** A codeSigning certificate from a root nobody trusts. */
let foreignSigner: RecordSigner;

function openssl(args: string[], cwd: string) {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

function issueCodeSigning(dir: string, name: string, caCert: string, caKey: string): RecordSigner {
  writeFileSync(join(dir, `${name}.ext`), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n');
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], dir);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '30', '-sha256', '-extfile', `${name}.ext`, '-out', `${name}.crt`], dir);
  return { certPem: readFileSync(join(dir, `${name}.crt`), 'utf8'), keyPem: readFileSync(join(dir, `${name}.key`), 'utf8') };
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'eps-records-'));
  otherSigner = issueCodeSigning(tmp, 'other-admin', join(process.cwd(), certs, 'root.crt'), join(process.cwd(), certs, 'root.key'));
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'evil-root.key'], tmp);
  openssl(['req', '-x509', '-new', '-key', 'evil-root.key', '-sha256', '-days', '30', '-subj', '/CN=evil root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign', '-out', 'evil-root.crt'], tmp);
  foreignSigner = issueCodeSigning(tmp, 'evil-admin', 'evil-root.crt', 'evil-root.key');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const operator = (name: string): RecordData => ({ kind: 'operator', name, certificate: read(`${name}.crt`) });

/** Signs `datas` as one chain starting at the genesis parent. */
function chainOf(datas: RecordData[], signer = admin): SignedRecord[] {
  let parent = GENESIS_PARENT;
  return datas.map((d) => {
    const r = signRecord(d, parent, signer);
    parent = recordHash(r);
    return r;
  });
}

const devChain: RecordData[] = [
  operator('hd-1'),
  operator('hd-2'),
  operator('public-proxy-eps-1'),
  { kind: 'channel', operator: 'hd-1', channel: { type: 'grpc_server', address: '127.0.0.1:5556' } },
  { kind: 'channel', operator: 'hd-2', channel: { type: 'grpc_server', proxy: 'public-proxy-eps-1' } },
  { kind: 'group', name: 'peers' },
  { kind: 'group', name: 'proxies' },
  { kind: 'member', group: 'peers', operator: 'hd-1' },
  { kind: 'member', group: 'peers', operator: 'hd-2' },
  { kind: 'member', group: 'proxies', operator: 'public-proxy-eps-1' },
  { kind: 'service', operator: 'hd-2', name: 'eps', permissions: [{ group: 'peers', methods: ['_ping'] }, { group: 'proxies', methods: ['connectionForward'] }] },
  { kind: 'service', operator: 'public-proxy-eps-1', name: 'proxy', permissions: [{ group: 'peers', methods: ['*'] }] },
];

describe('records', () => {
  it('records - canonical JSON sorts keys at every level and has no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[2,{"y":2,"z":1}]},"b":1}');
  });

  it('records - a record signed by an admin verifies', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, admin);
    expect(r.signer).toBe(fingerprintOf(admin.certPem));
    expect(verifyRecord(r, { rootCa, adminFingerprints })).toEqual({ ok: true });
    expect(verifyRecord(r, { rootCa, anyCodeSigningCert: true })).toEqual({ ok: true });
  });

  it('records - the hash covers the whole signed record and ignores key order', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, admin, new Date('2025-01-01T00:00:00Z'));
    const reordered = Object.fromEntries(Object.entries(r).reverse()) as SignedRecord;
    expect(recordHash(reordered)).toBe(recordHash(r));
    expect(recordHash({ ...r, createdAt: '2025-01-01T00:00:01.000Z' })).not.toBe(recordHash(r));
  });

  it('records - tampered data, parent or date is a bad signature', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, admin);
    for (const tampered of [
      { ...r, data: operator('hd-2') },
      { ...r, parent: 'f'.repeat(64) },
      { ...r, createdAt: new Date(Date.parse(r.createdAt) + 1).toISOString() },
      { ...r, signature: Buffer.from('nonsense').toString('base64') },
    ]) {
      expect(verifyRecord(tampered, { rootCa, adminFingerprints })).toMatchObject({ ok: false, code: 'BAD_SIGNATURE' });
    }
  });

  it('records - a root-issued signer that is not on the admin list is an unknown signer', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, otherSigner);
    expect(verifyRecord(r, { rootCa, adminFingerprints })).toMatchObject({ ok: false, code: 'UNKNOWN_SIGNER', detail: expect.stringContaining('not a directory admin') });
    // A client holds no admin list and accepts any codeSigning certificate of the root.
    expect(verifyRecord(r, { rootCa, anyCodeSigningCert: true })).toEqual({ ok: true });
  });

  it('records - an operator certificate cannot sign records, even for clients', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, { certPem: read('hd-1.crt'), keyPem: read('hd-1.key') });
    for (const policy of [{ rootCa, adminFingerprints }, { rootCa, anyCodeSigningCert: true as const }]) {
      expect(verifyRecord(r, policy)).toMatchObject({ ok: false, code: 'UNKNOWN_SIGNER', detail: expect.stringContaining('codeSigning') });
    }
  });

  it('records - a signer certificate from another CA is rejected', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, foreignSigner);
    const withItsFingerprintListed = new Set([...adminFingerprints, fingerprintOf(foreignSigner.certPem)]);
    expect(verifyRecord(r, { rootCa, adminFingerprints: withItsFingerprintListed })).toMatchObject({
      ok: false,
      code: 'UNKNOWN_SIGNER',
      detail: expect.stringContaining('not issued by the root CA'),
    });
  });

  it('records - a signer field that does not match the certificate is an invalid record', () => {
    const r = signRecord(operator('hd-1'), GENESIS_PARENT, admin);
    expect(verifyRecord({ ...r, signer: 'a'.repeat(64) }, { rootCa, adminFingerprints })).toMatchObject({ ok: false, code: 'INVALID_RECORD' });
    expect(verifyRecord({ ...r, extra: 1 }, { rootCa, adminFingerprints })).toMatchObject({ ok: false, code: 'INVALID_RECORD' });
  });
});

describe('chain', () => {
  it('chain - replaying records builds one entry per operator', () => {
    const state = new DirectoryState();
    for (const r of chainOf(devChain)) expect(state.append(r)).toMatchObject({ ok: true });
    expect(state.tip().seq).toBe(devChain.length);
    const hd2 = state.entry('hd-2')!;
    expect(hd2.fingerprint).toBe(fingerprintOf(read('hd-2.crt')));
    expect(hd2.groups).toEqual(['peers']);
    expect(hd2.services.map((s) => s.name)).toEqual(['eps']);
    expect(proxyFor(hd2)).toBe('public-proxy-eps-1');
    expect(proxyFor(state.entry('hd-1')!)).toBeUndefined();
    expect(proxyFor(hd2, 'jsonrpc_server')).toBeUndefined();
  });

  it('chain - a record must extend the tip', () => {
    const state = new DirectoryState();
    const [first, second] = chainOf(devChain);
    expect(state.append(second!)).toMatchObject({ ok: false, code: 'STALE_PARENT', detail: expect.stringContaining(GENESIS_PARENT) });
    expect(state.append(first!)).toMatchObject({ ok: true });
    expect(state.append(first!)).toMatchObject({ ok: false, code: 'STALE_PARENT' });
  });

  it('chain - a record naming an unknown operator or group is invalid, with the name in the detail', () => {
    const cases: [RecordData, string][] = [
      [{ kind: 'channel', operator: 'hd-9', channel: { type: 'grpc_server', address: '127.0.0.1:1' } }, 'channel operator hd-9 is not a known operator'],
      [{ kind: 'channel', operator: 'hd-1', channel: { type: 'grpc_server', proxy: 'nobody' } }, 'channel proxy nobody is not a known operator'],
      [{ kind: 'channel', operator: 'hd-1', channel: { type: 'grpc_server' } }, 'neither an address nor a proxy'],
      [{ kind: 'member', group: 'gamers', operator: 'hd-1' }, 'member group gamers is not a declared group'],
      [{ kind: 'service', operator: 'hd-1', name: 'eps', permissions: [{ group: 'gamers', methods: ['*'] }] }, 'permission group gamers'],
    ];
    for (const [data, detail] of cases) {
      const state = new DirectoryState();
      const [op] = chainOf([operator('hd-1')]);
      state.append(op!);
      const r = signRecord(data, state.tip().hash, admin);
      expect(state.append(r)).toEqual({ ok: false, code: 'INVALID_RECORD', detail: expect.stringContaining(detail) });
      expect(state.tip().seq).toBe(1);
    }
  });

  it('chain - applyChained checks position and hash', () => {
    const state = new DirectoryState();
    const [first] = chainOf(devChain);
    expect(state.applyChained({ seq: 2, hash: recordHash(first!), record: first! })).toMatchObject({ ok: false, code: 'STALE_PARENT' });
    expect(state.applyChained({ seq: 1, hash: 'f'.repeat(64), record: first! })).toMatchObject({ ok: false, code: 'INVALID_RECORD' });
    expect(state.applyChained({ seq: 1, hash: recordHash(first!), record: first! })).toMatchObject({ ok: true });
  });

  it('chain - a later channel or service record replaces the earlier one of the same type or name', () => {
    const state = new DirectoryState();
    for (const r of chainOf([
      ...devChain,
      { kind: 'channel', operator: 'hd-2', channel: { type: 'grpc_server', address: '10.0.0.2:5556' } },
      { kind: 'service', operator: 'hd-2', name: 'eps', permissions: [{ group: 'peers', methods: ['echo'] }] },
    ])) {
      expect(state.append(r)).toMatchObject({ ok: true });
    }
    expect(state.entry('hd-2')!.channels).toEqual([{ type: 'grpc_server', address: '10.0.0.2:5556' }]);
    expect(state.entry('hd-2')!.services).toEqual([{ name: 'eps', permissions: [{ group: 'peers', methods: ['echo'] }] }]);
  });

  it('chain - isPermitted follows group membership, methods and the wildcard', () => {
    const state = new DirectoryState();
    for (const r of chainOf(devChain)) state.append(r);
    const entries = state.entries();
    expect(isPermitted(entries, 'hd-1', 'hd-2', '_ping')).toBe(true);
    expect(isPermitted(entries, 'hd-1', 'hd-2', 'connectionForward')).toBe(false);
    expect(isPermitted(entries, 'public-proxy-eps-1', 'hd-2', 'connectionForward')).toBe(true);
    expect(isPermitted(entries, 'public-proxy-eps-1', 'hd-2', '_ping')).toBe(false);
    expect(isPermitted(entries, 'hd-2', 'public-proxy-eps-1', 'anything')).toBe(true);
    // hd-1 offers no service at all, and strangers are never permitted.
    expect(isPermitted(entries, 'hd-2', 'hd-1', '_ping')).toBe(false);
    expect(isPermitted(entries, 'stranger', 'hd-2', '_ping')).toBe(false);
    expect(isPermitted(entries, 'hd-1', 'stranger', '_ping')).toBe(false);
  });

  it('chain - a failed batch on a clone leaves the original untouched', () => {
    const state = new DirectoryState();
    const records = chainOf(devChain);
    state.append(records[0]!);
    const scratch = state.clone();
    for (const r of records.slice(1)) scratch.append(r);
    expect(scratch.tip().seq).toBe(devChain.length);
    expect(state.tip().seq).toBe(1);
    expect(state.entry('hd-2')).toBeUndefined();
  });
});
