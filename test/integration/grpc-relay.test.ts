import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcError } from '../../src/core/errors.js';
import { readTlsMaterial, type TlsMaterial } from '../../src/core/tls-material.js';
import { connectPeerClient, connectPeerClientDirect, PeerTransportError, type PeerClient } from '../../src/grpc/peer-client.js';
import { createPeerServer, type PeerIdentity, type PeerServer } from '../../src/grpc/peer-server.js';

const CERTS = 'settings/dev/certs';
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

/**
 * The proxy's splice reduced to its essence: pairs connections in arrival order (first = B,
 * second = A) and pipes them, with noDelay on both legs as the real splicer sets it.
 */
class DumbRelay {
  readonly sockets = new Set<Socket>();
  private waiting: Socket | undefined;
  private acceptedWaiters: Array<() => boolean> = [];
  private accepted = 0;
  private readonly server: Server = createServer({ noDelay: true }, (s) => this.onConnection(s));
  port = 0;

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Resolves once the relay has accepted `n` connections in total. */
  acceptedCount(n: number): Promise<void> {
    if (this.accepted >= n) return Promise.resolve();
    return new Promise((resolve) => this.acceptedWaiters.push(() => this.accepted >= n && (resolve(), true)));
  }

  get total(): number {
    return this.accepted;
  }

  private onConnection(s: Socket): void {
    this.accepted++;
    this.sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => this.sockets.delete(s));
    const peer = this.waiting;
    if (peer) {
      this.waiting = undefined;
      s.pipe(peer);
      peer.pipe(s);
      s.once('close', () => peer.destroy());
      peer.once('close', () => s.destroy());
    } else this.waiting = s;
    this.acceptedWaiters = this.acceptedWaiters.filter((w) => !w());
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

function dial(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** A client certificate with CN hd-1, signed by a CA that B has never heard of. */
function makeRogueHd1(dir: string): { cert: string; key: string } {
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  };
  run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
  run('req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '1', '-subj', '/CN=rogue root',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'ca.crt');
  run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'hd-1.key');
  run('req', '-new', '-key', 'hd-1.key', '-subj', '/CN=hd-1', '-out', 'hd-1.csr');
  writeFileSync(join(dir, 'hd-1.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:hd-1\n');
  run('x509', '-req', '-in', 'hd-1.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-sha256', '-extfile', 'hd-1.ext', '-out', 'hd-1.crt');
  return { cert: join(dir, 'hd-1.crt'), key: join(dir, 'hd-1.key') };
}

const HANDLE_KINDS = ['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap', 'PipeWrap', 'PipeServerWrap', 'PipeConnectWrap', 'TCPConnectWrap'];

function handles(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const kind of HANDLE_KINDS) out[kind] = process.getActiveResourcesInfo().filter((r) => r === kind).length;
  return out;
}

describe('gRPC between A and B through a TCP relay, B with no listener', () => {
  let baseline: Record<string, number>;
  let hd1: TlsMaterial;
  let hd2: TlsMaterial;
  let rogueHd1: TlsMaterial;
  let tmp: string;
  const relay = new DumbRelay();
  let server: PeerServer;
  const seen: Array<{ method: string; peer: PeerIdentity }> = [];
  const hanging: Array<() => void> = [];
  const clients: PeerClient[] = [];
  const bSockets: Socket[] = [];

  beforeAll(async () => {
    baseline = handles();
    hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
    hd2 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-2.crt`, key: `${CERTS}/hd-2.key` });
    tmp = mkdtempSync(join(tmpdir(), 'eps-grpc-test-'));
    const rogue = makeRogueHd1(tmp);
    // Trusts the real root (so it could verify B), but presents a certificate B cannot verify.
    rogueHd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: rogue.cert, key: rogue.key });

    await relay.start();
    server = createPeerServer({
      tls: hd2,
      log,
      handle: async (call, peer) => {
        seen.push({ method: call.method, peer });
        switch (call.method) {
          case '_ping':
            return { pong: true, from: call.from, params: call.params ?? null };
          case 'refuse':
            throw new RpcError('METHOD_NOT_FOUND', 'refuse', { data: { hint: 'try _ping' } });
          case 'boom':
            throw new Error('secret internal detail');
          case 'hang':
            return new Promise((resolve) => hanging.push(() => resolve('released')));
          default:
            throw new RpcError('METHOD_NOT_FOUND', call.method);
        }
      },
    });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const release of hanging) release();
    for (const s of bSockets) s.destroy();
    await server?.close(1_000);
    await relay.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    // Nothing of ours may keep the worker alive: the socket and listener handles (TCP, TLS and
    // the unix bridges) must be back to what the worker had before this file ran.
    const deadline = Date.now() + 2_000;
    let now = handles();
    while (JSON.stringify(now) !== JSON.stringify(baseline) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      now = handles();
    }
    expect(now).toEqual(baseline);
  });

  /** What the proxy does for one session: B dials (and is injected), then A dials; returns A's socket. */
  async function brokeredSocket(into: PeerServer = server): Promise<{ a: Socket; b: Socket }> {
    const before = relay.total;
    const b = await dial(relay.port);
    bSockets.push(b);
    await relay.acceptedCount(before + 1);
    into.injectSocket(b);
    const a = await dial(relay.port);
    await relay.acceptedCount(before + 2);
    return { a, b };
  }

  async function openClient(overrides: Partial<Parameters<typeof connectPeerClient>[0]> = {}): Promise<{ client: PeerClient; b: Socket }> {
    const { a, b } = await brokeredSocket();
    const client = await connectPeerClient({
      tls: hd1,
      expectedPeer: { name: 'hd-2', fingerprint: hd2.fingerprint },
      socket: a,
      log,
      callTimeoutMs: 5_000,
      connectTimeoutMs: 5_000,
      ...overrides,
    });
    clients.push(client);
    return { client, b };
  }

  it('calls B, which sees A by its certificate; the channel is reused for a second call', async () => {
    const { client } = await openClient();
    seen.length = 0;
    expect(await client.call('_ping', { n: 1 })).toEqual({ pong: true, from: 'hd-1', params: { n: 1 } });
    expect(seen).toEqual([{ method: '_ping', peer: { commonName: 'hd-1', fingerprint: hd1.fingerprint } }]);

    const relayConnections = relay.total;
    expect(await client.call('_ping')).toEqual({ pong: true, from: 'hd-1', params: null });
    expect(relay.total).toBe(relayConnections);
    expect(client.isOpen()).toBe(true);
  });

  it('maps B\'s RpcError to an RpcError on A, and hides unexpected errors behind INTERNAL_ERROR', async () => {
    const { client } = await openClient();
    const refused = await client.call('refuse').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RpcError);
    expect(refused).toMatchObject({ code: -32601, data: { hint: 'try _ping' } });

    const boom = await client.call('boom').catch((e: unknown) => e);
    expect(boom).toBeInstanceOf(RpcError);
    expect((boom as RpcError).code).toBe(-32603);
    expect((boom as RpcError).message).not.toContain('secret');
    expect(client.isOpen()).toBe(true);
  });

  it('A refuses B when its certificate is not the one the directory names', async () => {
    const before = seen.length;
    const wrongFp = 'ab'.repeat(32);
    const err = await openClient({ expectedPeer: { name: 'hd-2', fingerprint: wrongFp } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerTransportError);
    expect(err).toMatchObject({ kind: 'identity' });
    expect((err as Error).message).toContain(wrongFp);

    const wrongName = await openClient({ expectedPeer: { name: 'hd-3', fingerprint: hd2.fingerprint } }).catch((e: unknown) => e);
    expect(wrongName).toMatchObject({ kind: 'identity' });
    expect(seen.length).toBe(before);
  });

  it('the next channel to B resumes the TLS session, B still sees A by its certificate; a session is never offered to another identity', async () => {
    const first = await openClient();
    await first.client.call('_ping');
    // The ticket arrives after the handshake, with or after B's first answer.
    await new Promise((r) => setTimeout(r, 50));
    const { client } = await openClient();
    expect(client.resumed).toBe(true);
    seen.length = 0;
    expect(await client.call('_ping', { n: 2 })).toEqual({ pong: true, from: 'hd-1', params: { n: 2 } });
    expect(seen).toEqual([{ method: '_ping', peer: { commonName: 'hd-1', fingerprint: hd1.fingerprint } }]);

    // The relay splices A to somebody else with a certificate of the same CA (here hd-1's):
    // hd-2's session cannot be resumed there, and the full handshake meets the identity check.
    const impostor = createPeerServer({ tls: hd1, log, handle: async () => 'impostor' });
    try {
      const { a } = await brokeredSocket(impostor);
      const err = await connectPeerClient({ tls: hd1, expectedPeer: { name: 'hd-2', fingerprint: hd2.fingerprint }, socket: a, log, connectTimeoutMs: 5_000 }).catch(
        (e: unknown) => e,
      );
      expect(err).toMatchObject({ kind: 'identity' });
    } finally {
      await impostor.close(1_000);
    }
    // hd-2's own session is still there for hd-2.
    const again = await openClient();
    expect(again.client.resumed).toBe(true);
  });

  it('B refuses a client certificate from another CA', async () => {
    const before = seen.length;
    const err = await openClient({ tls: rogueHd1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerTransportError);
    expect(err).toMatchObject({ kind: 'handshake' });
    expect((err as Error).message).toContain('hd-2');
    expect(seen.length).toBe(before);
  });

  it('when B closes the socket, A\'s onClose fires once and calls fail with a clear error', async () => {
    const { client, b } = await openClient();
    expect(await client.call('_ping')).toMatchObject({ pong: true });

    const closes: PeerTransportError[] = [];
    const closed = new Promise<void>((resolve) => client.onClose((reason) => (closes.push(reason), resolve())));
    const mark = seen.length;
    const inFlight = client.call('hang').catch((e: unknown) => e);
    // Let the call reach B before the connection goes away.
    while (!seen.slice(mark).some((s) => s.method === 'hang')) await new Promise((r) => setTimeout(r, 5));

    b.destroy();
    await closed;
    expect(client.isOpen()).toBe(false);
    const inFlightErr = await inFlight;
    expect(inFlightErr).toBeInstanceOf(PeerTransportError);
    expect(inFlightErr).toMatchObject({ kind: 'closed' });
    expect((inFlightErr as Error).message).toMatch(/hd-2/);

    const after = await client.call('_ping').catch((e: unknown) => e);
    expect(after).toMatchObject({ kind: 'closed' });
    client.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(closes).toHaveLength(1);
  });

  it('a call B does not answer in time fails with a timeout, and the channel stays usable', async () => {
    const { client } = await openClient({ callTimeoutMs: 200 });
    const err = await client.call('hang').catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'timeout' });
    expect((err as Error).message).toContain('200 ms');
    expect(await client.call('_ping')).toMatchObject({ pong: true });
  });

  it('200 small calls through the relay show no Nagle/delayed-ACK stall', async () => {
    const { client } = await openClient();
    for (let i = 0; i < 10; i++) await client.call('_ping', { i }); // warm-up
    const n = 200;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await client.call('_ping', { i });
    const meanMs = (performance.now() - t0) / n;
    console.log(`grpc-relay: mean latency of ${n} sequential calls through the relay: ${meanMs.toFixed(3)} ms`);
    // With Nagle on any leg this is ~40-45 ms per call.
    expect(meanMs).toBeLessThan(20);
  });

  it('also serves peers that accept direct connections (listen + connectPeerClientDirect)', async () => {
    const port = await server.listen('127.0.0.1', 0);
    const client = await connectPeerClientDirect({
      tls: hd1,
      expectedPeer: { name: 'hd-2', fingerprint: hd2.fingerprint },
      address: `127.0.0.1:${port}`,
      log,
    });
    clients.push(client);
    expect(await client.call('_ping', 'direct')).toEqual({ pong: true, from: 'hd-1', params: 'direct' });
  });
});
