import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { Bus, type BusDirectory } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import type { NatsConnection } from '../../src/core/nats.js';
import { fingerprintOf } from '../../src/core/tls-material.js';

// Signed buses for in-process tests of relayRequest: real envelopes, real signatures and a real
// nats-server, with a fixed directory instead of an sd, so operator names can be unique per test
// on a shared server (each name is backed by one of the dev certificates).

const certs = resolve('settings/dev/certs');
const silent = pino({ level: 'silent' });

export interface TestOperator {
  /** The name on the bus (subject and envelope `from`). */
  name: string;
  /** The dev certificate (settings/dev/certs/<cert>.crt/.key) that backs it. */
  cert: string;
}

/** A directory that knows `operators` and permits exactly `calls` ([caller, target, method]). */
export function fixedDirectory(operators: TestOperator[], calls: [string, string, string][]): BusDirectory {
  const entries = new Map(
    operators.map((op) => {
      const certificate = readFileSync(`${certs}/${op.cert}.crt`, 'utf8');
      return [op.name, { certificate, fingerprint: fingerprintOf(certificate) }] as const;
    }),
  );
  return {
    entry: (name) => entries.get(name),
    isPermitted: (caller, target, method) => calls.some(([c, t, m]) => c === caller && t === target && m === method),
  };
}

export function testBus(nc: NatsConnection, op: TestOperator, directory: BusDirectory, requestTimeoutMs = 2_000): Bus {
  return new Bus({
    nc,
    signer: createSigner(op.name, readFileSync(`${certs}/${op.cert}.key`)),
    directory,
    log: silent,
    maxAgeMs: 30_000,
    maxBytes: 256 * 1024,
    requestTimeoutMs,
  });
}
