import { X509Certificate, type KeyObject } from 'node:crypto';
import { fingerprintOf } from './tls-material.js';

// Parsing and fingerprinting a certificate cost more than the signature check itself, and every
// bus envelope and every splice proof is checked against a certificate the signed directory
// lists, so each listed certificate's key is kept once its fingerprint was checked. Keyed by the
// certificate text and compared on the fingerprint: a directory change of either parses afresh.
const MAX_CACHED_KEYS = 1024;
const checkedKeys = new Map<string, { fingerprint: string; key: KeyObject }>();

/** The public key of a directory-listed certificate, or why it cannot be used. */
export function listedKey(listed: { certificate: string; fingerprint: string }): KeyObject | string {
  const cached = checkedKeys.get(listed.certificate);
  if (cached && cached.fingerprint === listed.fingerprint) return cached.key;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(listed.certificate);
  } catch {
    return 'the directory certificate does not parse';
  }
  if (fingerprintOf(cert) !== listed.fingerprint) return 'the directory certificate does not match its fingerprint';
  // Clearing all at once keeps this bounded without bookkeeping; a directory has far fewer entries.
  if (checkedKeys.size >= MAX_CACHED_KEYS) checkedKeys.clear();
  checkedKeys.set(listed.certificate, { fingerprint: listed.fingerprint, key: cert.publicKey });
  return cert.publicKey;
}
