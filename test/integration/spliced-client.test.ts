import { createSecureServer, type Http2SecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTlsMaterial, type TlsMaterial } from '../../src/core/tls-material.js';
import { connectPeerClient, PeerTransportError, type PeerClient } from '../../src/grpc/peer-client.js';

// The spliced client against servers that are not a well-behaved grpc-js server: what it sends
// (headers, deadline) and how it refuses answers that are not one gRPC message. Against the real
// grpc-js server through a relay: test/integration/grpc-relay.test.ts.

const CERTS = 'settings/dev/certs';
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

type Answer = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

describe('spliced gRPC client - wire behaviour against raw HTTP/2 servers', () => {
  let hd1: TlsMaterial;
  let hd2: TlsMaterial;
  let h2server: Http2SecureServer;
  let h2port = 0;
  let answer: Answer = () => undefined;
  const received: IncomingHttpHeaders[] = [];
  const clients: PeerClient[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
    hd2 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-2.crt`, key: `${CERTS}/hd-2.key` });
    h2server = createSecureServer({ key: hd2.key, cert: hd2.cert, ca: hd2.ca, requestCert: true, rejectUnauthorized: true });
    h2server.on('stream', (stream, headers) => {
      received.push(headers);
      stream.on('error', () => undefined);
      stream.resume();
      stream.on('end', () => answer(stream, headers));
    });
    await new Promise<void>((r) => h2server.listen(0, '127.0.0.1', r));
    h2port = (h2server.address() as { port: number }).port;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => h2server.close(() => r()));
  });

  function dial(port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
      sockets.push(s);
    });
  }

  async function open(port = h2port, callTimeoutMs = 2_000): Promise<PeerClient> {
    const client = await connectPeerClient({
      tls: hd1,
      expectedPeer: { name: 'hd-2', fingerprint: hd2.fingerprint },
      socket: await dial(port),
      log,
      callTimeoutMs,
      connectTimeoutMs: 2_000,
    });
    clients.push(client);
    return client;
  }

  it('sends a gRPC unary request with its deadline, and fails a call not answered by then', async () => {
    answer = () => undefined; // never answers
    const client = await open(h2port, 300);
    received.length = 0;
    const t0 = performance.now();
    const err = await client.call('_ping', {}).catch((e: unknown) => e);
    const took = performance.now() - t0;
    expect(err).toBeInstanceOf(PeerTransportError);
    expect(err).toMatchObject({ kind: 'timeout' });
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1_500);
    expect(received[0]).toMatchObject({
      ':method': 'POST',
      ':path': '/eps.v1.Peer/Call',
      ':authority': 'hd-2',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '300m',
    });
    expect(client.isOpen()).toBe(true);
  });

  it('an HTTP answer that is not gRPC is a transport error, and the channel stays open', async () => {
    answer = (stream) => stream.respond({ ':status': 404, 'content-type': 'text/plain' }, { endStream: true });
    const client = await open();
    const err = await client.call('_ping', {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'transport' });
    expect((err as Error).message).toContain('HTTP 404');
    expect(client.isOpen()).toBe(true);
  });

  it('a gRPC status other than OK is reported with its decoded message (trailers-only answer)', async () => {
    answer = (stream) =>
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'no%20such%20method' }, { endStream: true });
    const client = await open();
    const err = await client.call('_ping', {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'transport', grpcCode: 12 });
    expect((err as Error).message).toContain('UNIMPLEMENTED: no such method');
  });

  it('refuses a message over 4 MiB from its prefix, and OK with no message', async () => {
    answer = (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0x7f, 0, 0, 0]));
    };
    const client = await open();
    expect(await client.call('_ping', {}).catch((e: unknown) => e)).toMatchObject({ kind: 'transport', grpcCode: 8 });

    answer = (stream) => stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '0' }, { endStream: true });
    const err = await client.call('_ping', {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'transport' });
    expect((err as Error).message).toContain('no message');
  });

  it('a second message in a unary answer fails the call at once, without waiting for the trailers', async () => {
    const streams: ServerHttp2Stream[] = [];
    answer = (stream) => {
      streams.push(stream);
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.write(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0])); // two empty messages, no trailers yet
    };
    const client = await open();
    const err = await client.call('_ping', {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'transport', grpcCode: 13 });
    expect((err as Error).message).toContain('more than one message');
    for (const s of streams) s.destroy();
  });

  it('a TLS server that does not speak HTTP/2 fails the set-up as a handshake error', async () => {
    const accepted: Socket[] = [];
    const plain: TlsServer = createTlsServer({ key: hd2.key, cert: hd2.cert, ca: hd2.ca, requestCert: true }, (s) => {
      accepted.push(s);
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    try {
      const err = await open((plain.address() as { port: number }).port).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PeerTransportError);
      expect(err).toMatchObject({ kind: 'handshake' });
    } finally {
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => plain.close(() => r()));
    }
  });

  it('a held socket already closed is refused at once', async () => {
    const s = await dial(h2port);
    s.destroy();
    await new Promise((r) => setImmediate(r));
    const err = await connectPeerClient({ tls: hd1, expectedPeer: { name: 'hd-2', fingerprint: hd2.fingerprint }, socket: s, log }).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'closed' });
  });
});
