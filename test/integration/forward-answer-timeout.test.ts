import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { ConnectionRequests } from '../../src/proxy/connection-requests.js';
import { TestNatsServer } from '../helpers/nats-server.js';

// B answers P's connectionForward once its dial is through (machines/callback.ts), so the forward's
// bus request lasts as long as B's dial. P's forward waits past bDialMs, whatever the proxy's
// timeouts.busRequestMs: a B slow to dial is bounded by bDialMs alone (the session's timer), and a
// short bus timeout must not end the session as busFailed while B's socket is on its way.

const CERTS = 'settings/dev/certs';
const pem = (n: string) => readFileSync(`${CERTS}/${n}`, 'utf8');
const log = pino({ level: 'silent' });
const P = 'public-proxy-eps-1';
const certificates = Object.fromEntries(['hd-2', P].map((n) => [n, { certificate: pem(`${n}.crt`), fingerprint: fingerprintOf(pem(`${n}.crt`)) }]));

describe('proxy - attack: B answers the forward after its dial', () => {
  let nats: TestNatsServer;
  let pNc: NatsConnection;
  let bNc: NatsConnection;

  const busFor = (nc: NatsConnection, name: string, requestTimeoutMs: number) =>
    new Bus({
      nc,
      signer: createSigner(name, pem(`${name}.key`)),
      directory: { entry: (op) => certificates[op], isPermitted: (from, _t, method) => from === P && method === 'connectionForward' },
      log,
      maxAgeMs: 30_000,
      maxBytes: 8 * 1024,
      requestTimeoutMs,
    });

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    [pNc, bNc] = await Promise.all([nats.connectAs(P), nats.connectAs('hd-2')]);
    // B's dial to P takes 800 ms (a far or busy path), well inside bDialMs; it answers then.
    busFor(bNc, 'hd-2', 3_000).serve('connectionForward', async () => {
      await new Promise((r) => setTimeout(r, 800));
      return { accepted: true };
    });
    await bNc.flush();
  });

  afterAll(async () => {
    await Promise.all([pNc?.close(), bNc?.close()]);
    await nats?.stop();
  });

  it('proxy - a forward B answers after an 800 ms dial is accepted when bDialMs allows it, whatever busRequestMs', async () => {
    const requests = new ConnectionRequests({
      operator: P,
      endpoint: '127.0.0.1:1',
      bDialMs: 5_000,
      bus: busFor(pNc, P, 500), // the proxy's timeouts.busRequestMs, set short
      directory: { entry: () => undefined },
      open: () => {
        throw new Error('not used');
      },
      log,
    });
    const session = { sessionId: 's1', a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:1' };
    const pass = { token: Buffer.alloc(32, 1), challenge: Buffer.alloc(32, 2) };
    const notifyB = (requests as unknown as { notifyB: (s: unknown, p: unknown) => Promise<unknown> }).notifyB.bind(requests);
    await expect(notifyB(session, pass)).resolves.toEqual({ accepted: true });
  });
});
