import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:https';
import { Agent, request } from 'node:https';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTlsMaterial, type TlsMaterial } from '../../src/core/tls-material.js';
import { callJsonRpc } from '../../src/jsonrpc/client.js';
import { startJsonRpcServer } from '../../src/jsonrpc/server.js';

// The gateway proves who calls from the client certificate once per TLS 1.3 connection and keeps
// that caller for the connection's later requests (src/jsonrpc/server.ts). What must hold: a
// keep-alive connection keeps its own caller and nobody else's, and a connection without a valid
// certificate is refused on every request, never remembered as anybody.

const CERTS = 'settings/dev/certs';
const material = (name: string): TlsMaterial => readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/${name}.crt`, key: `${CERTS}/${name}.key` });

let server: Server;
let url: string;
let connections = 0;

beforeAll(async () => {
  server = await startJsonRpcServer({
    tls: material('hd-1'),
    host: '127.0.0.1',
    port: 0,
    maxBodyBytes: 4096,
    log: pino({ level: 'silent' }),
    handle: async (_req, caller) => caller.commonName,
  });
  server.on('secureConnection', () => connections++);
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/jsonrpc`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const call = (tls: TlsMaterial, agent: Agent) => callJsonRpc<string>({ url, serverName: 'hd-1', tls, agent }, 'whoami', {});

/** A POST on `agent` with no client certificate at all; the HTTP status and the JSON-RPC error. */
function callWithoutCertificate(agent: Agent): Promise<{ status: number; body: { error?: { code: number; message: string } } }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/jsonrpc', method: 'POST', servername: 'hd-1', ca: readFileSync(`${CERTS}/root.crt`), agent, headers: { 'Content-Type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'whoami' }));
  });
}

describe('gateway callers on kept connections', () => {
  it('jsonrpc - a keep-alive TLS 1.3 client is the same caller on every request of its connection', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const before = connections;
    try {
      expect([await call(material('hd-1'), agent), await call(material('hd-1'), agent), await call(material('hd-1'), agent)]).toEqual(['hd-1', 'hd-1', 'hd-1']);
      expect(connections - before).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('jsonrpc - attack: two clients interleaving on their own kept connections never get each other\'s identity', async () => {
    const mine = new Agent({ keepAlive: true, maxSockets: 1 });
    const theirs = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers: string[] = [];
      for (let i = 0; i < 3; i++) answers.push(await call(material('hd-1'), mine), await call(material('hd-2'), theirs));
      expect(answers).toEqual(['hd-1', 'hd-2', 'hd-1', 'hd-2', 'hd-1', 'hd-2']);
    } finally {
      mine.destroy();
      theirs.destroy();
    }
  });

  it('jsonrpc - attack: a kept connection without a certificate is refused on every request, not only the first', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const before = connections;
    try {
      for (let i = 0; i < 3; i++) {
        const r = await callWithoutCertificate(agent);
        expect(r.status).toBe(401);
        expect(r.body.error?.message).toMatch(/no client certificate was presented/);
      }
      expect(connections - before).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('jsonrpc - a TLS 1.2 client (which could renegotiate) is still answered as itself on each request', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1, maxVersion: 'TLSv1.2' });
    try {
      expect([await call(material('hd-2'), agent), await call(material('hd-2'), agent)]).toEqual(['hd-2', 'hd-2']);
    } finally {
      agent.destroy();
    }
  });
});
