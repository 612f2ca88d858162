import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** PEM material for one party of an mTLS connection, read once at start-up. */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** SHA-256 of the DER certificate, lower-case hex: how the directory names a certificate. */
  fingerprint: string;
  /** The certificate's CN, which is the operator's name in this project. */
  commonName: string;
}

export function readTlsMaterial(paths: { ca: string; cert: string; key: string }): TlsMaterial {
  const read = (what: string, p: string): Buffer => {
    try {
      return readFileSync(p);
    } catch (err) {
      throw new Error(`cannot read ${what} ${p}: ${(err as Error).message} (run \`make certs\`?)`, { cause: err });
    }
  };
  const cert = read('certificate', paths.cert);
  const x509 = new X509Certificate(cert);
  return {
    ca: read('CA certificate', paths.ca),
    cert,
    key: read('private key', paths.key),
    fingerprint: fingerprintOf(x509),
    commonName: commonNameOf(x509),
  };
}

export function fingerprintOf(cert: X509Certificate | Buffer | string): string {
  const x509 = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  return createHash('sha256').update(x509.raw).digest('hex');
}

export function commonNameOf(cert: X509Certificate): string {
  const cn = cert.subject.split('\n').find((l) => l.startsWith('CN='));
  return cn ? cn.slice(3) : '';
}
