import { X509Certificate, createHash } from 'node:crypto';
import { fingerprintOf } from '../core/tls-material.js';
import type { ApplyStatus, DirectoryState } from './chain.js';
import { recordHash, verifyRecord, type SignerPolicy } from './records.js';
import type { SignedRecord } from './types.js';

// A stored record that does not verify (disk damage, an old bug, someone with write access to the
// stream) must not brick the directory: whoever replays the stream (sd, every DirectoryClient, the
// repair command) stops at it, keeps the records before it, and says exactly which one and why,
// with the command that repairs it. The sd, the clients and `sd repair` share this code so that
// they all stop at the same record for the same reason.

/** How the operator repairs or resets the stream; quoted in every damage message. */
export const REPAIR_COMMAND = 'sd repair --yes';
export const RESET_COMMAND = 'sd repair --reset --yes';

/** A stored message that could not be parsed as JSON, handed on so that it is reported like any bad record. */
export class UnparsableRecord {
  constructor(readonly text: string) {}
}

/** A stored message on a subject other than the records' own: whatever it holds, it is no record. */
export class ForeignSubject {
  constructor(
    readonly subject: string,
    readonly text: string,
  ) {}
}

export interface ChainDamage {
  stream: string;
  /** Sequence of the first record that does not fit; every record before it verifies. */
  seq: number;
  /** What was stored at `seq`, hashed: tells a rewritten record at the same sequence from the same one. */
  contentHash: string;
  code: string;
  detail: string;
  /**
   * Set when the very first record is signed under another root: the whole stream was written by
   * another PKI (a directory from another clone or before `make certs` ran again), not damaged.
   */
  foreignRoot?: { signer: string; signerIssuer: string; configuredRoot: string; configuredRootFingerprint: string };
}

export type StoredApply = { ok: true; status: Extract<ApplyStatus, { ok: true }> } | { ok: false; damage: ChainDamage };

/**
 * Applies the record the stream holds at `seq` if it extends the chain. A record beyond the tip
 * means the ones between are not in the stream (readers always resume right after their tip).
 */
export function applyNext(state: DirectoryState, stream: string, seq: number, raw: unknown, policy: SignerPolicy): StoredApply {
  const tip = state.tip().seq;
  if (seq > tip + 1) return { ok: false, damage: missingRecord(stream, tip + 1, seq) };
  return applyStored(state, stream, seq, raw, policy);
}

/** True when `d` is news: readers retry the same bad record until it is repaired, and say it once. */
export function isNewDamage(known: ChainDamage | undefined, d: ChainDamage): boolean {
  return known?.seq !== d.seq || known.contentHash !== d.contentHash;
}

/** Verifies a record read from the stream and appends it to `state` if it extends the chain. */
export function applyStored(state: DirectoryState, stream: string, seq: number, raw: unknown, policy: SignerPolicy): StoredApply {
  const contentHash = createHash('sha256')
    .update(raw instanceof UnparsableRecord ? raw.text : raw instanceof ForeignSubject ? `${raw.subject}\u0000${raw.text}` : JSON.stringify(raw) ?? 'undefined')
    .digest('hex');
  const fail = (code: string, detail: string): StoredApply => ({
    ok: false,
    damage: { stream, seq, contentHash, code, detail, ...(seq === 1 && code === 'UNKNOWN_SIGNER' ? foreignRoot(raw, policy) : {}) },
  });
  if (raw instanceof UnparsableRecord) return fail('INVALID_RECORD', 'the stored message is not JSON');
  if (raw instanceof ForeignSubject) return fail('INVALID_RECORD', `the stored message was published on ${raw.subject}, not on the records' subject`);
  const verdict = verifyRecord(raw, policy);
  if (!verdict.ok) return fail(verdict.code, verdict.detail);
  const record = raw as SignedRecord;
  const applied = state.applyChained({ seq, hash: recordHash(record), record });
  if (!applied.ok) return fail(applied.code, applied.detail);
  return { ok: true, status: applied };
}

function foreignRoot(raw: unknown, policy: SignerPolicy): Pick<ChainDamage, 'foreignRoot'> {
  try {
    const signer = new X509Certificate((raw as SignedRecord).signerCertificate);
    const root = new X509Certificate(policy.rootCa);
    if (signer.checkIssued(root) && signer.verify(root.publicKey)) return {};
    return {
      foreignRoot: {
        signer: oneLine(signer.subject),
        signerIssuer: oneLine(signer.issuer),
        configuredRoot: oneLine(root.subject),
        configuredRootFingerprint: fingerprintOf(root).slice(0, 16),
      },
    };
  } catch {
    return {};
  }
}

const oneLine = (dn: string) => dn.replace(/\n/g, ', ');

/** One line for logs and errors: which stream, which record, why, what is still served, what to run. */
export function damageMessage(d: ChainDamage): string {
  if (d.foreignRoot) {
    const f = d.foreignRoot;
    return (
      `the directory stream ${d.stream} was written under another root: its first record is signed by ${f.signer}, ` +
      `issued by "${f.signerIssuer}" but not by the configured root "${f.configuredRoot}" (fingerprint ${f.configuredRootFingerprint}…); ` +
      `if that directory is not needed (e.g. certificates regenerated in development), reset it with \`${RESET_COMMAND}\` and run sd-setup again`
    );
  }
  const kept = d.seq - 1;
  return (
    `the directory stream ${d.stream} is damaged at record ${d.seq} (${d.code}: ${d.detail}); ` +
    `serving the ${kept} record${kept === 1 ? '' : 's'} before it; ` +
    `\`${REPAIR_COMMAND}\` removes record ${d.seq} and everything after it`
  );
}

/** A record the chain needs is not in the stream (deleted, or the stream's front was purged). */
export function missingRecord(stream: string, seq: number, nextStored: number | undefined): ChainDamage {
  const after = nextStored === undefined ? 'nothing is stored after it' : `the next stored record is ${nextStored}`;
  return { stream, seq, contentHash: `missing:${nextStored ?? ''}`, code: 'MISSING', detail: `record ${seq} is not in the stream; ${after}` };
}
