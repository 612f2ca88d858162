import { X509Certificate, createHash, createPrivateKey, sign, verify } from 'node:crypto';
import { canonicalJson } from '../core/canonical-json.js';
import { fingerprintOf } from '../core/tls-material.js';
import { signedRecordSchema, type RecordData, type SignedRecord } from './types.js';

export { canonicalJson };

/** Extended key usage that marks a certificate as a directory record signer (X.509 codeSigning). */
export const CODE_SIGNING_EKU = '1.3.6.1.5.5.7.3.3';

export interface RecordSigner {
  certPem: string | Buffer;
  keyPem: string | Buffer;
}

/** The bytes a signature covers: every field of the record except the signature itself. */
function signingBytes(record: Omit<SignedRecord, 'signature'>): Buffer {
  const { data, parent, createdAt, signer, signerCertificate } = record;
  return Buffer.from(canonicalJson({ data, parent, createdAt, signer, signerCertificate }), 'utf8');
}

export function signRecord(data: RecordData, parentHash: string, signer: RecordSigner, now: Date = new Date()): SignedRecord {
  const certPem = signer.certPem.toString();
  const unsigned = {
    data,
    parent: parentHash,
    createdAt: now.toISOString(),
    signer: fingerprintOf(certPem),
    signerCertificate: certPem,
  };
  const signature = sign('sha256', signingBytes(unsigned), createPrivateKey(signer.keyPem)).toString('base64');
  return { ...unsigned, signature };
}

/** What a record's child names as `parent`, and how the chain refers to a record. */
export function recordHash(record: SignedRecord): string {
  return createHash('sha256').update(canonicalJson(record), 'utf8').digest('hex');
}

/**
 * Who may sign records. The sd knows the admin certificates and checks the explicit list; a server
 * consuming the directory only holds the root, so it accepts any root-issued certificate whose
 * extended key usage is codeSigning. Operator certificates (serverAuth/clientAuth) never have it,
 * so an operator cannot forge directory records, and the sd requires codeSigning of its admins as
 * well so that a record the sd accepts is one every client accepts.
 */
export type SignerPolicy =
  | { rootCa: string | Buffer; adminFingerprints: ReadonlySet<string> }
  | { rootCa: string | Buffer; anyCodeSigningCert: true };

export type VerifyStatus =
  | { ok: true }
  | { ok: false; code: 'BAD_SIGNATURE' | 'UNKNOWN_SIGNER' | 'INVALID_RECORD'; detail: string };

export function verifyRecord(record: unknown, policy: SignerPolicy): VerifyStatus {
  const parsed = signedRecordSchema.safeParse(record);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ');
    return { ok: false, code: 'INVALID_RECORD', detail };
  }
  const r = parsed.data;
  let cert: X509Certificate;
  let root: X509Certificate;
  try {
    cert = new X509Certificate(r.signerCertificate);
  } catch (err) {
    return { ok: false, code: 'INVALID_RECORD', detail: `signerCertificate is not a certificate: ${(err as Error).message}` };
  }
  try {
    root = new X509Certificate(policy.rootCa);
  } catch (err) {
    throw new Error(`root CA is not a certificate: ${(err as Error).message}`, { cause: err });
  }
  const fingerprint = fingerprintOf(cert);
  if (fingerprint !== r.signer) {
    return { ok: false, code: 'INVALID_RECORD', detail: `signer ${r.signer} is not the fingerprint of signerCertificate (${fingerprint})` };
  }
  if (!cert.checkIssued(root) || !cert.verify(root.publicKey)) {
    return { ok: false, code: 'UNKNOWN_SIGNER', detail: `signer ${fingerprint} (${cert.subject.replace(/\n/g, ', ')}) is not issued by the root CA` };
  }
  if (cert.ca) return { ok: false, code: 'UNKNOWN_SIGNER', detail: `signer ${fingerprint} is a CA certificate` };
  const created = Date.parse(r.createdAt);
  if (created < Date.parse(cert.validFrom) || created > Date.parse(cert.validTo)) {
    return { ok: false, code: 'UNKNOWN_SIGNER', detail: `signer ${fingerprint} was not valid at ${r.createdAt}` };
  }
  // Node names the extended key usage list `keyUsage`; it is undefined when the extension is absent.
  if (!(cert.keyUsage ?? []).includes(CODE_SIGNING_EKU)) {
    return { ok: false, code: 'UNKNOWN_SIGNER', detail: `signer ${fingerprint} lacks the codeSigning extended key usage` };
  }
  if ('adminFingerprints' in policy && !policy.adminFingerprints.has(fingerprint)) {
    return { ok: false, code: 'UNKNOWN_SIGNER', detail: `signer ${fingerprint} is not a directory admin` };
  }
  let valid = false;
  try {
    valid = verify('sha256', signingBytes(r), cert.publicKey, Buffer.from(r.signature, 'base64'));
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, code: 'BAD_SIGNATURE', detail: `signature does not match the record signed by ${fingerprint}` };
  return { ok: true };
}
