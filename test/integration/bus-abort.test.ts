import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../hostile/helpers.js';

// A bus request whose caller stops needing the answer (the proxy's notifyB once B's socket came
// first) stops listening: the late reply must never be opened, so it costs no parse and no
// signature verification. The caller's directory is asked for a sender's certificate only when an
// envelope is opened, so its lookups count the replies it checked.

const CERTS = 'settings/dev/certs';
const pem = (n: string) => readFileSync(`${CERTS}/${n}`, 'utf8');
const log = pino({ level: 'silent' });
const certificates = Object.fromEntries(['hd-1', 'hd-2'].map((n) => [n, { certificate: pem(`${n}.crt`), fingerprint: fingerprintOf(pem(`${n}.crt`)) }]));

describe('bus request aborted by its caller', () => {
  let nats: TestNatsServer;
  let callerNc: NatsConnection;
  let serverNc: NatsConnection;
  let caller: Bus;
  let server: Bus;
  let lookups = 0;
  /** Requests the server holds until the test lets them answer. */
  const held = new Map<number, () => void>();

  const busFor = (nc: NatsConnection, name: string, count: boolean) =>
    new Bus({
      nc,
      signer: createSigner(name, pem(`${name}.key`)),
      directory: {
        entry: (op) => {
          if (count) lookups++;
          return certificates[op];
        },
        isPermitted: (from, _target, method) => from === 'hd-1' && method === '_ping',
      },
      log,
      maxAgeMs: 30_000,
      maxBytes: 8 * 1024,
      requestTimeoutMs: 2_000,
    });

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    [callerNc, serverNc] = await Promise.all([nats.connectAs('hd-1'), nats.connectAs('hd-2')]);
    caller = busFor(callerNc, 'hd-1', true);
    server = busFor(serverNc, 'hd-2', false);
    server.serve('_ping', async (params) => {
      const probe = params.probe as number;
      await new Promise<void>((resolve) => held.set(probe, resolve));
      return { pong: probe };
    });
    await serverNc.flush();
  });

  afterAll(async () => {
    caller?.close();
    server?.close();
    await callerNc?.drain();
    await serverNc?.drain();
    await nats?.stop();
  });

  it('bus - without an abort the reply is checked and returned', async () => {
    const pending = caller.request('hd-2', '_ping', { probe: 1 });
    await waitFor(() => held.has(1), 2_000, 'the server to hold the request');
    lookups = 0;
    held.get(1)!();
    expect(await pending).toEqual({ pong: 1 });
    expect(lookups).toBe(1);
  });

  it('bus - once aborted, the call rejects with the reason at once and the late reply is dropped unread', async () => {
    const controller = new AbortController();
    const pending = caller.request('hd-2', '_ping', { probe: 2 }, 2_000, controller.signal);
    await waitFor(() => held.has(2), 2_000, 'the server to hold the request');
    lookups = 0;
    const reason = new Error('B dialed first');
    const abortedAt = Date.now();
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(Date.now() - abortedAt).toBeLessThan(500);

    held.get(2)!();
    // Time for the reply to be sent and reach the caller's connection (the first test's took less).
    await new Promise((r) => setTimeout(r, 100));
    await serverNc.flush();
    await callerNc.flush();
    await new Promise((r) => setTimeout(r, 100));
    expect(lookups).toBe(0);
  });

  it('bus - a signal aborted before the call sends nothing', async () => {
    const controller = new AbortController();
    controller.abort(new Error('too late'));
    const before = held.size;
    await expect(caller.request('hd-2', '_ping', { probe: 3 }, 2_000, controller.signal)).rejects.toThrow('too late');
    await callerNc.flush();
    await new Promise((r) => setTimeout(r, 100));
    expect(held.size).toBe(before);
  });
});
