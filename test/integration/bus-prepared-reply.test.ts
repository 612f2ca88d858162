import { readFileSync } from 'node:fs';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, busSubject, PreparedReply, preparedFits } from '../../src/bus/bus.js';
import { createSigner, sealEnvelope, type RequestEnvelope, type ResponseEnvelope } from '../../src/bus/envelope.js';
import { inboxPrefixOf } from '../../src/core/nats.js';
import { fingerprintOf } from '../../src/core/tls-material.js';
import { TestNatsServer } from '../helpers/nats-server.js';

// A handler may seal its reply before it is done (the proxy signs A's confirmation while B dials).
// The sealed envelope goes out only to the request it was made for and only while fresh; one that
// waited longer is sealed again, so the receiver's freshness check never sees a stale reply.

const CERTS = 'settings/dev/certs';
const pem = (n: string) => readFileSync(`${CERTS}/${n}`, 'utf8');
const log = pino({ level: 'silent' });
const certificates = Object.fromEntries(['hd-1', 'hd-2'].map((n) => [n, { certificate: pem(`${n}.crt`), fingerprint: fingerprintOf(pem(`${n}.crt`)) }]));

describe('bus - prepared replies', () => {
  let nats: TestNatsServer;
  let callerNc: NatsConnection;
  let serverNc: NatsConnection;
  let caller: Bus;
  const sentNow: boolean[] = [];
  /** When each probe's handler resolved (after its wait), by probe. */
  const handlerEnds = new Map<number, number>();

  const busFor = (nc: NatsConnection, name: string, maxAgeMs: number) =>
    new Bus({
      nc,
      signer: createSigner(name, pem(`${name}.key`)),
      directory: { entry: (op) => certificates[op], isPermitted: (from, _t, method) => from === 'hd-1' && method === '_ping' },
      log,
      maxAgeMs,
      maxBytes: 8 * 1024,
      requestTimeoutMs: 3_000,
    });

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    [callerNc, serverNc] = await Promise.all([nats.connectAs('hd-1'), nats.connectAs('hd-2')]);
    // The caller accepts envelopes at most 1.05 s old: a prepared reply sent after waiting longer
    // than that would be refused as STALE, and the call would time out.
    caller = busFor(callerNc, 'hd-1', 1_050);
    const server = busFor(serverNc, 'hd-2', 30_000);
    server.serve('_ping', async (params, _from, prepare) => {
      const prepared = prepare!({ pong: params.probe }); // the bus always passes it
      await new Promise((r) => setTimeout(r, (params.sendAfterMs as number | undefined) ?? 0));
      if (params.sendAfterMs !== undefined) sentNow.push(prepared.sendNow() && prepared.sendNow()); // twice: sent once
      await new Promise((r) => setTimeout(r, params.waitMs as number));
      handlerEnds.set(params.probe as number, Date.now());
      return prepared;
    });
    await serverNc.flush();
  });

  afterAll(async () => {
    await Promise.all([callerNc?.close(), serverNc?.close()]);
    await nats?.stop();
  });

  it('bus - a reply prepared early reaches the caller and verifies', async () => {
    await expect(caller.request('hd-2', '_ping', { probe: 1, waitMs: 20 })).resolves.toEqual({ pong: 1 });
  });

  it('bus - a prepared reply that waited past its age is sealed again, not sent stale', async () => {
    await expect(caller.request('hd-2', '_ping', { probe: 2, waitMs: 1_300 })).resolves.toEqual({ pong: 2 });
  });

  it('bus - attack: a prepared reply spends up to 1 s of the caller\'s freshness window (and of its clock-skew allowance)', async () => {
    // A caller with a window under 1 s (or, with the default 30 s, a clock ~29.2 s ahead of the
    // proxy's) verifies a reply sealed as it is sent, but refuses the same reply prepared 900 ms
    // earlier as STALE: the answer is dropped and the call runs into its timeout.
    const strict = busFor(callerNc, 'hd-1', 800);
    await expect(strict.request('hd-2', '_ping', { probe: 3, waitMs: 0 })).resolves.toEqual({ pong: 3 });
    await expect(strict.request('hd-2', '_ping', { probe: 4, waitMs: 900 }, 2_500)).resolves.toEqual({ pong: 4 });
  });

  it('bus - a prepared reply sent from inside the handler leaves at once, and only once', async () => {
    // Raw NATS on the caller's side, so that every message on the reply subject is counted.
    const inbox = `${inboxPrefixOf('hd-1')}.sendnow`;
    const got: { at: number; env: Record<string, unknown> }[] = [];
    const sub = callerNc.subscribe(inbox, { callback: (_e, m) => void got.push({ at: Date.now(), env: JSON.parse(new TextDecoder().decode(m.data)) }) });
    const request = sealEnvelope<RequestEnvelope>(createSigner('hd-1', pem('hd-1.key')), { kind: 'request', from: 'hd-1', to: 'hd-2', id: 'send-now-1', method: '_ping', params: { probe: 5, sendAfterMs: 10, waitMs: 600 } });
    callerNc.publish(busSubject('hd-2', '_ping'), JSON.stringify(request), { reply: inbox });
    // Until the handler has resolved, when the bus would reply; then whatever the server sent is
    // through nats-server (its flush) and delivered to the caller (the caller's flush).
    for (const deadline = Date.now() + 10_000; !handlerEnds.has(5) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    await serverNc.flush();
    await callerNc.flush();
    sub.unsubscribe();
    expect(handlerEnds.has(5)).toBe(true);
    expect(sentNow.at(-1)).toBe(true);
    expect(got).toHaveLength(1); // the bus does not reply again when the handler resolves
    expect(got[0]!.at).toBeLessThan(handlerEnds.get(5)!); // before the handler's 600 ms wait ended
    expect(got[0]!.env).toMatchObject({ kind: 'response', from: 'hd-2', to: 'hd-1', id: 'send-now-1', result: { pong: 5 } });
  });

  it('bus - a prepared reply too old to send now is sent by the bus, sealed afresh, when the handler resolves', async () => {
    // Prepared, then 150 ms (over the 100 ms bound) before sendNow: it declines, and the answer
    // still arrives, fresh enough for a caller with a 1.05 s window.
    await expect(caller.request('hd-2', '_ping', { probe: 6, sendAfterMs: 150, waitMs: 0 })).resolves.toEqual({ pong: 6 });
    expect(sentNow.at(-1)).toBe(false);
  });

  it('bus - a prepared reply fits only the request it was sealed for, and only while fresh', () => {
    const signer = createSigner('hd-2', pem('hd-2.key'));
    const now = 50_000;
    const envelope = sealEnvelope<ResponseEnvelope>(signer, { kind: 'response', from: 'hd-2', to: 'hd-1', id: 'r1', result: { ok: true } }, now);
    const prepared = new PreparedReply({ ok: true }, envelope, now);
    expect(preparedFits(prepared, 'r1', 'hd-1', now + 10, 30_000)).toBe(true);
    expect(preparedFits(prepared, 'r2', 'hd-1', now + 10, 30_000)).toBe(false); // another request's reply
    expect(preparedFits(prepared, 'r1', 'hd-3', now + 10, 30_000)).toBe(false); // another requester
    expect(preparedFits(prepared, 'r1', 'hd-1', now + 1_001, 30_000)).toBe(false); // aged
    expect(preparedFits(prepared, 'r1', 'hd-1', now + 300, 1_000)).toBe(false); // aged for a short freshness window
  });
});
