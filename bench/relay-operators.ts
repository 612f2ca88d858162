import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Leg } from '../src/core/splice-wire.js';
import { fingerprintOf } from '../src/core/tls-material.js';

// Who the relay benches' sessions are between: the dev PKI's hd-1 (A) and hd-2 (B), and the proxy
// operator their proofs name. Shared by the role processes of bench/relay.ts and relay-memory.ts.

const CERTS = 'settings/dev/certs';
export const BENCH_PROXY = 'bench-proxy';
export const BENCH_OPERATORS: Record<Leg, string> = { a: 'hd-1', b: 'hd-2' };

/** The registry's `certificateOf`: each leg's certificate as a directory would list it. */
export function listedBenchOperators(): (operator: string) => { certificate: string; fingerprint: string } | undefined {
  const listed = new Map(
    Object.values(BENCH_OPERATORS).map((operator) => {
      const cert = new X509Certificate(readFileSync(`${CERTS}/${operator}.crt`));
      return [operator, { certificate: cert.toString(), fingerprint: fingerprintOf(cert) }] as const;
    }),
  );
  return (operator) => listed.get(operator);
}

/** A leg's operator key, read once per process. */
const keys = new Map<Leg, KeyObject>();
export function benchKeyOf(leg: Leg): KeyObject {
  let key = keys.get(leg);
  if (!key) keys.set(leg, (key = createPrivateKey(readFileSync(`${CERTS}/${BENCH_OPERATORS[leg]}.key`))));
  return key;
}
