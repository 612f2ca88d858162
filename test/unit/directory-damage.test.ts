import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DirectoryState } from '../../src/directory/chain.js';
import { applyStored, damageMessage, missingRecord, UnparsableRecord } from '../../src/directory/damage.js';
import { parseStoredRecord } from '../../src/directory/stored-record.js';
import { recordHash, signRecord, type SignerPolicy } from '../../src/directory/records.js';
import type { RecordData } from '../../src/directory/types.js';

// What the sd, every client and `sd repair` share when they replay the stream: a stored record
// either extends the chain or is reported as damage naming stream, sequence and reason.

const read = (n: string) => readFileSync(`settings/dev/certs/${n}`, 'utf8');
const admin = { certPem: read('sd-admin.crt'), keyPem: read('sd-admin.key') };
const policy: SignerPolicy = { rootCa: read('root.crt'), anyCodeSigningCert: true };
const group = (name: string): RecordData => ({ kind: 'group', name });

describe('directory damage', () => {
  it('damage - good records apply; the first that does not is reported with its sequence and code, and the state stays at the good prefix', () => {
    const state = new DirectoryState();
    const first = signRecord(group('a'), state.tip().hash, admin);
    expect(applyStored(state, 'S', 1, JSON.parse(JSON.stringify(first)), policy)).toMatchObject({ ok: true });
    const tip = state.tip();

    const offChain = signRecord(group('b'), '1'.repeat(64), admin);
    const forged = { ...signRecord(group('b'), tip.hash, admin), data: group('c') };
    const byOperator = signRecord(group('b'), tip.hash, { certPem: read('hd-1.crt'), keyPem: read('hd-1.key') });
    const cases: [unknown, string][] = [
      [offChain, 'STALE_PARENT'],
      [forged, 'BAD_SIGNATURE'],
      [byOperator, 'UNKNOWN_SIGNER'],
      [{ hello: 'world' }, 'INVALID_RECORD'],
      [new UnparsableRecord('{"nope'), 'INVALID_RECORD'],
    ];
    for (const [raw, code] of cases) {
      const result = applyStored(state, 'S', 2, raw, policy);
      expect(result).toMatchObject({ ok: false, damage: { stream: 'S', seq: 2, code } });
      if (!result.ok) expect(result.damage.foreignRoot).toBeUndefined();
      expect(state.tip()).toEqual(tip);
    }
    // A different record at the same sequence is told apart (a repair), the same one is not.
    const a = applyStored(state, 'S', 2, offChain, policy);
    const b = applyStored(state, 'S', 2, offChain, policy);
    const c = applyStored(state, 'S', 2, forged, policy);
    if (a.ok || b.ok || c.ok) throw new Error('expected damage');
    expect(a.damage.contentHash).toBe(b.damage.contentHash);
    expect(a.damage.contentHash).not.toBe(c.damage.contentHash);

    const good = signRecord(group('b'), tip.hash, admin);
    expect(applyStored(state, 'S', 2, good, policy)).toMatchObject({ ok: true, status: { chained: { seq: 2, hash: recordHash(good) } } });
  });

  it('damage - the message names stream, record, reason, what is served and the command', () => {
    expect(damageMessage({ stream: 'EPS_SD_RECORDS', seq: 5, contentHash: 'x', code: 'BAD_SIGNATURE', detail: 'signature does not match' })).toBe(
      'the directory stream EPS_SD_RECORDS is damaged at record 5 (BAD_SIGNATURE: signature does not match); serving the 4 records before it; `sd repair --yes` removes record 5 and everything after it',
    );
    expect(damageMessage(missingRecord('S', 2, 4))).toBe(
      'the directory stream S is damaged at record 2 (MISSING: record 2 is not in the stream; the next stored record is 4); serving the 1 record before it; `sd repair --yes` removes record 2 and everything after it',
    );
  });

  it('damage - a stored message on another subject than the records\' is damage even when it holds a genuine record that chains', () => {
    const state = new DirectoryState();
    const genuine = signRecord(group('a'), state.tip().hash, admin);
    const bytes = Buffer.from(JSON.stringify(genuine));
    const foreign = applyStored(state, 'S', 1, parseStoredRecord('$KV.EPS_GAMES.game.x', bytes), policy);
    expect(foreign).toMatchObject({ ok: false, damage: { seq: 1, code: 'INVALID_RECORD', detail: "the stored message was published on $KV.EPS_GAMES.game.x, not on the records' subject" } });
    expect(state.tip().seq).toBe(0);
    // The same bytes on the records' subject apply; bytes that are no JSON are named as such.
    expect(applyStored(state, 'S', 1, parseStoredRecord('eps.sd.records', bytes), policy)).toMatchObject({ ok: true });
    expect(parseStoredRecord('eps.sd.records', Buffer.from('{nope'))).toBeInstanceOf(UnparsableRecord);
  });
});
