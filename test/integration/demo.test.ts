import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { createSigner, sealEnvelope, type RequestEnvelope } from '../../src/bus/envelope.js';
import { busSubject } from '../../src/bus/bus.js';
import type { DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { CERTS, PING, curlJsonRpc, metricValue, metrics, pingUntilAnswered, roleLog, startStack } from '../helpers/stack.js';

// The seed's demo, end to end: real nats-server, the real CLIs as child processes, the seed's curl.
describe('seed demo', () => {
  let nats: TestNatsServer;
  let stack: DevStack;

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    // Servers first, the directory last: the order of starting the processes must not matter.
    stack = await startStack(nats.url, { order: ['hd-1', 'hd-2', 'public-proxy-eps-1', 'public-proxy-1', 'sd-1'] });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await nats?.stop();
  });

  it('demo - hd-2._ping through the proxy answers with hd-2 serverInfo and one splice', async () => {
    const before = metricValue(await metrics(stack.opts.ports.metrics), 'eps_proxy_spliced_total');
    const r = await pingUntilAnswered(stack.opts.ports.jsonrpc);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ jsonrpc: '2.0', id: '1', result: { serverInfo: { name: 'hd-2' } } });
    expect(typeof r.body.result.timestamp).toBe('string');
    expect(typeof r.body.result.version).toBe('string');
    const after = metricValue(await metrics(stack.opts.ports.metrics), 'eps_proxy_spliced_total');
    expect(after).toBe(before + 1);
  });

  it('demo - a second ping within the idle timeout reuses the brokered channel', async () => {
    await pingUntilAnswered(stack.opts.ports.jsonrpc);
    const before = metricValue(await metrics(stack.opts.ports.metrics), 'eps_proxy_spliced_total');
    const r = await curlJsonRpc(stack.opts.ports.jsonrpc, PING);
    expect(r.body.result.serverInfo.name).toBe('hd-2');
    const after = metricValue(await metrics(stack.opts.ports.metrics), 'eps_proxy_spliced_total');
    expect(after).toBe(before);
  });

  it('demo - a client without a certificate is refused with a clear error', async () => {
    const r = await curlJsonRpc(stack.opts.ports.jsonrpc, PING, { withCert: false });
    expect(r.status).toBe(401);
    expect(r.body.error).toMatchObject({ code: -32020 });
    expect(r.body.error.message).toMatch(/certificate/i);
    // Not OpenSSL's UNABLE_TO_GET_ISSUER_CERT, which reads as if a certificate had been sent.
    expect(r.body.error.data?.detail ?? r.body.error.message).toMatch(/no client certificate was presented/);
    expect(JSON.stringify(r.body.error)).not.toContain('UNABLE_TO_GET_ISSUER_CERT');
  });

  it('demo - bad JSON-RPC gets the standard codes and the server keeps working', async () => {
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, '{not json')).body.error.code).toBe(-32700);
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, '{"jsonrpc":"2.0","id":1,"method":5}')).body.error.code).toBe(-32600);
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, '{"jsonrpc":"2.0","id":1,"method":"nobody._ping"}')).body.error.code).toBe(-32001);
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, '{"jsonrpc":"2.0","id":1,"method":"hd-1.nothing"}')).body.error.code).toBe(-32601);
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, '{"jsonrpc":"2.0","id":1,"method":"noseparator"}')).body.error.code).toBe(-32601);
    // A method hd-2 does not have, through the proxy: not found, not "permission denied".
    const nope = await curlJsonRpc(stack.opts.ports.jsonrpc, '{"jsonrpc":"2.0","id":1,"method":"hd-2.nope"}');
    expect(nope.body.error.code, JSON.stringify(nope.body)).toBe(-32601);
    const huge = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'hd-1._ping', params: { pad: 'x'.repeat(2 * 1024 * 1024) } });
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, huge)).status).toBe(413);
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, PING)).body.result.serverInfo.name).toBe('hd-2');
  });

  it('demo - a forged bus envelope is rejected and logged', async () => {
    // Only the proxy's principal may publish connectionForward to hd-2 (test/hostile/bus-access.test.ts);
    // the admin carries the forgery so it reaches hd-2's envelope check behind the bus's.
    const nc: NatsConnection = await nats.admin();
    try {
      // Signed with hd-1's key but claiming to come from the proxy operator: hd-2 must refuse it.
      const signer = createSigner('public-proxy-eps-1', readFileSync(`${CERTS}/hd-1.key`));
      const env = sealEnvelope<RequestEnvelope>(signer, { kind: 'request', from: 'public-proxy-eps-1', to: 'hd-2', id: 'forged-1', method: 'connectionForward', params: {} });
      const reply = await nc.request(busSubject('hd-2', 'connectionForward'), JSON.stringify(env), { timeout: 5000 });
      const answer = JSON.parse(reply.string());
      expect(answer.error.code).toBe(-32010);
      expect(answer.error.message).toMatch(/BAD_SIGNATURE/);
      // Replaying a genuine-looking but tampered envelope twice changes nothing either.
      const replayed = await nc.request(busSubject('hd-2', 'connectionForward'), JSON.stringify(env), { timeout: 5000 });
      expect(JSON.parse(replayed.string()).error.code).toBe(-32010);
    } finally {
      await nc.close();
    }
    // hd-2's log reaches its file through a pipe, which may lag the NATS reply under load.
    await vi.waitFor(() => expect(roleLog(stack, 'hd-2')).toMatch(/bus envelope rejected/), { timeout: 5000, interval: 50 });
    expect((await curlJsonRpc(stack.opts.ports.jsonrpc, PING)).body.result.serverInfo.name).toBe('hd-2');
  });
});

describe('Hyper edition', () => {
  it('hyper - `hyper server run` reads HYPER_SETTINGS and answers a signed _ping on the bus', async () => {
    const nats = await TestNatsServer.start();
    const stack = await startStack(nats.url, { order: ['sd-1', 'public-proxy-hyper-1'] });
    const nc = await nats.connectAs('hd-1');
    try {
      const { Bus } = await import('../../src/bus/bus.js');
      const { DirectoryClient } = await import('../../src/directory/client.js');
      const { readTlsMaterial } = await import('../../src/core/tls-material.js');
      const { pino } = await import('pino');
      const log = pino({ level: 'silent' });
      const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
      const directory = new DirectoryClient({ url: stack.sdUrl, serverName: 'sd-1', tls, nc, log });
      directory.start();
      await directory.ready();
      const bus = new Bus({ nc, signer: createSigner('hd-1', tls.key), directory, log, maxAgeMs: 30_000, maxBytes: 65_536, requestTimeoutMs: 5000 });
      let answer: { serverInfo: { name: string } } | undefined;
      const deadline = Date.now() + 20_000;
      while (!answer) {
        try {
          answer = (await bus.request('public-proxy-hyper-1', '_ping', { from: 'test' })) as typeof answer;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 300));
        }
      }
      expect(answer!.serverInfo.name).toBe('public-proxy-hyper-1');
      await directory.close();
      // What the README shows: hd-1's gateway calls the Hyper server, which has no gRPC server
      // channel, over the bus, with the seed's curl.
      stack.start('hd-1');
      await stack.waitUntilListening('hd-1', stack.opts.ports.jsonrpc, 20_000);
      const viaGateway = await pingUntilAnswered(stack.opts.ports.jsonrpc, 20_000, 'public-proxy-hyper-1');
      expect(viaGateway.body, JSON.stringify(viaGateway.body)).toMatchObject({ result: { serverInfo: { name: 'public-proxy-hyper-1' } } });
    } finally {
      await nc.close();
      await stack.stop();
      await nats.stop();
    }
  }, 60_000);
});

describe('B cannot dial the proxy', () => {
  let nats: TestNatsServer;
  let stack: DevStack;

  beforeAll(async () => {
    nats = await TestNatsServer.start();
    // The proxy tells B to dial an endpoint where nothing listens; it would give up on B after
    // 10 s: far longer than B's refused dial takes even on a loaded host, so the answer's wording
    // and the outcome say which came first, and the elapsed time says A did not wait it out.
    stack = await startStack(nats.url, {
      overrides: { 'public-proxy-1': 'splice: { endpoint: "127.0.0.1:1" }\ntimeouts: { bDialMs: 10000 }\n' },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.stop();
    await nats?.stop();
  });

  it('brokering - A gets B\'s reason at once, not at the proxy\'s timeout, when B cannot dial the proxy', async () => {
    // Wait until hd-1 knows hd-2 (a ping to hd-1 itself proves the gateway is up; then retry hd-2).
    const deadline = Date.now() + 20_000;
    let r = await curlJsonRpc(stack.opts.ports.jsonrpc, PING);
    while (r.body?.error?.code === -32001 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 300));
      r = await curlJsonRpc(stack.opts.ports.jsonrpc, PING);
    }
    const started = Date.now();
    r = await curlJsonRpc(stack.opts.ports.jsonrpc, PING);
    const elapsed = Date.now() - started;
    expect(r.body.error.code).toBe(-32004);
    // B answers the forward once its dial has failed (machines/callback.ts), with the dial's error.
    expect(r.body.error.message).toMatch(/hd-2 refused the connection: hd-2 could not dial the proxy: cannot connect to 127\.0\.0\.1:1: connect ECONNREFUSED/);
    expect(elapsed).toBeLessThan(10_000); // the proxy's bDialMs: before, A waited all of it
    const m = await metrics(stack.opts.ports.metrics);
    expect(metricValue(m, 'eps_proxy_sessions_total', '{outcome="bRefused"}')).toBeGreaterThanOrEqual(1);
    expect(metricValue(m, 'eps_proxy_sessions_total', '{outcome="bNeverDialed"}')).toBe(0);
    expect(metricValue(m, 'eps_proxy_spliced_total')).toBe(0);
  });
});
