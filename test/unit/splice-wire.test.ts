import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { generateKeyPairSync, randomBytes, X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fingerprintOf } from '../../src/core/tls-material.js';
import {
  encodePreamble,
  isHostPort,
  parseHostPort,
  PreambleClosed,
  PreambleInvalid,
  PreambleTimeout,
  proofMessage,
  readPreamble,
  signProof,
  verifyProof,
  type ProofSubject,
} from '../../src/core/splice-wire.js';

const token = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));
/** The preamble of a session without proofs: the token and a zero length. */
const wire = encodePreamble(token);

// A real loopback pair: `server` is the side readPreamble reads, `client` the dialer.
async function socketPair(): Promise<{ server: Socket; client: Socket; close: () => void }> {
  const srv: Server = createServer({ allowHalfOpen: true });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  const accepted = once(srv, 'connection') as Promise<[Socket]>;
  const client = connect({ port, host: '127.0.0.1', noDelay: true });
  await once(client, 'connect');
  const [server] = await accepted;
  return {
    server,
    client,
    close: () => {
      server.destroy();
      client.destroy();
      srv.close();
    },
  };
}

const tick = () => new Promise((r) => setTimeout(r, 2));

describe('splice wire: preamble', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('preamble - reads a token sent one byte at a time over TCP', async () => {
    const { server, client, close } = await socketPair();
    try {
      const read = readPreamble(server, { timeoutMs: 5_000 });
      for (const byte of wire) {
        client.write(Buffer.from([byte]));
        await tick();
      }
      const { token: got, rest } = await read;
      expect(got.equals(token)).toBe(true);
      expect(rest).toHaveLength(0);
    } finally {
      close();
    }
  });

  it('preamble - surplus bytes come back in rest and later bytes stay in the socket', async () => {
    const { server, client, close } = await socketPair();
    try {
      const read = readPreamble(server, { timeoutMs: 5_000 });
      client.write(Buffer.concat([wire, Buffer.from('hello')]));
      const { token: got, rest } = await read;
      expect(got.equals(token)).toBe(true);
      expect(rest.toString()).toBe('hello');
      // Nothing sent after the preamble is read may be lost to a stale listener.
      client.end(' world');
      const after: Buffer[] = [];
      server.on('data', (c: Buffer) => after.push(c));
      // readPreamble leaves the socket paused; whoever takes it over resumes it.
      server.resume();
      await once(server, 'end');
      expect(Buffer.concat(after).toString()).toBe(' world');
    } finally {
      close();
    }
  });

  it('preamble - the deadline is cleared once read: no socket timeout, no timer, no listeners', async () => {
    const { server, client, close } = await socketPair();
    try {
      server.setTimeout(60_000);
      const listeners = (['data', 'end', 'close', 'error'] as const).map((e) => server.listenerCount(e));
      const read = readPreamble(server, { timeoutMs: 5_000 });
      client.write(wire);
      await read;
      expect(server.timeout ?? 0).toBe(0);
      expect((['data', 'end', 'close', 'error'] as const).map((e) => server.listenerCount(e))).toEqual(listeners);
      expect(server.listenerCount('data')).toBe(0);
      expect(server.isPaused()).toBe(true);
    } finally {
      close();
    }
  });

  it('preamble - its own deadline timer is cleared once read', async () => {
    vi.useFakeTimers();
    const stream = new PassThrough();
    const read = readPreamble(stream, { timeoutMs: 1_000 });
    expect(vi.getTimerCount()).toBe(1);
    stream.write(wire.subarray(0, 10));
    stream.write(wire.subarray(10));
    await vi.advanceTimersByTimeAsync(0);
    const { token: got } = await read;
    expect(got.equals(token)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('preamble - an incomplete preamble times out with the bytes received', async () => {
    vi.useFakeTimers();
    const stream = new PassThrough();
    const read = readPreamble(stream, { timeoutMs: 1_000 });
    const assertion = expect(read).rejects.toSatisfy((e: unknown) => e instanceof PreambleTimeout && e.received === 5);
    stream.write(token.subarray(0, 5));
    await vi.advanceTimersByTimeAsync(999);
    stream.write(Buffer.alloc(0));
    await vi.advanceTimersByTimeAsync(1);
    await assertion;
    expect(stream.listenerCount('data')).toBe(0);
  });

  it('preamble - a peer that closes early rejects PreambleClosed and the socket is left open for the caller', async () => {
    const { server, client, close } = await socketPair();
    try {
      const read = readPreamble(server, { timeoutMs: 5_000 });
      client.end(token.subarray(0, 7));
      const err = await read.catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PreambleClosed);
      expect((err as PreambleClosed).received).toBe(7);
      expect(server.destroyed).toBe(false);
    } finally {
      close();
    }
  });

  it('preamble - a reset peer rejects PreambleClosed', async () => {
    const { server, client, close } = await socketPair();
    try {
      const read = readPreamble(server, { timeoutMs: 5_000 });
      client.resetAndDestroy();
      await expect(read).rejects.toBeInstanceOf(PreambleClosed);
    } finally {
      close();
    }
  });
});

const CERTS = 'settings/dev/certs';
const dev = (name: string) => {
  const cert = new X509Certificate(readFileSync(`${CERTS}/${name}.crt`));
  return { key: createPrivateKey(readFileSync(`${CERTS}/${name}.key`)), listed: { certificate: cert.toString(), fingerprint: fingerprintOf(cert) } };
};

describe('splice wire: proofs', () => {
  const b = dev('hd-2');
  const a = dev('hd-1');
  const subject: ProofSubject = { proxy: 'public-proxy-eps-1', sessionId: 's-1', leg: 'b', token, challenge: randomBytes(32) };

  it('splice wire - a preamble is the token, a big-endian proof length and the proof, then the rest', async () => {
    const proof = signProof(b.key, subject);
    const bytes = encodePreamble(token, proof);
    expect(bytes.subarray(0, 32).equals(token)).toBe(true);
    expect(bytes.readUInt16BE(32)).toBe(proof.length);
    expect(bytes.subarray(34).equals(proof)).toBe(true);
    const stream = new PassThrough();
    const read = readPreamble(stream, { timeoutMs: 1_000 });
    stream.write(Buffer.concat([bytes, Buffer.from('ClientHello')]));
    const got = await read;
    expect(got.token.equals(token)).toBe(true);
    expect(got.proof.equals(proof)).toBe(true);
    expect(got.rest.toString()).toBe('ClientHello');
  });

  it('splice wire - a proof verifies against the signer\'s directory certificate only', () => {
    const proof = signProof(b.key, subject);
    expect(verifyProof(proof, subject, b.listed)).toEqual({ ok: true });
    expect(verifyProof(proof, subject, a.listed).ok).toBe(false);
    expect(verifyProof(proof, subject, undefined).ok).toBe(false);
    expect(verifyProof(Buffer.alloc(0), subject, b.listed).ok).toBe(false);
    // A listed certificate whose fingerprint does not match is not trusted.
    expect(verifyProof(proof, subject, { ...b.listed, fingerprint: a.listed.fingerprint }).ok).toBe(false);
  });

  it('splice wire - a proof binds the proxy, the session, the leg, the token and the challenge', () => {
    const proof = signProof(b.key, subject);
    const other = Buffer.from(token);
    other[0] = (other[0] ?? 0) ^ 1;
    for (const changed of [
      { proxy: 'public-proxy-hyper-1' },
      { sessionId: 's-2' },
      { leg: 'a' as const },
      { token: other },
      { challenge: randomBytes(32) },
    ]) {
      expect(verifyProof(proof, { ...subject, ...changed }, b.listed).ok, JSON.stringify(Object.keys(changed))).toBe(false);
    }
  });

  it('splice wire - the signed message is domain-separated and unambiguous', () => {
    const text = proofMessage(subject).toString();
    expect(text.startsWith('["eps-splice-proof/v1",')).toBe(true);
    // A session id that tries to smuggle in a leg stays one field.
    expect(proofMessage({ ...subject, sessionId: 's","a' }).equals(proofMessage(subject))).toBe(false);
  });

  it('splice wire - Ed25519 and P-384 keys sign proofs that fit the cap', () => {
    for (const type of ['ed25519', 'ec'] as const) {
      const pair = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-384' });
      expect(signProof(pair.privateKey, subject).length).toBeLessThanOrEqual(512);
    }
  });

  it('splice wire - a length over the cap is refused as soon as the header is in', async () => {
    const header = encodePreamble(token);
    header.writeUInt16BE(513, 32);
    const stream = new PassThrough();
    const read = readPreamble(stream, { timeoutMs: 1_000 });
    stream.write(header);
    await expect(read).rejects.toBeInstanceOf(PreambleInvalid);
    expect(() => encodePreamble(token, Buffer.alloc(513))).toThrow(/at most 512/);
    expect(() => encodePreamble(token.subarray(1))).toThrow(/32 bytes/);
  });

  it('splice wire - a proof trickled byte by byte is read whole', async () => {
    const proof = signProof(b.key, subject);
    const bytes = encodePreamble(token, proof);
    const stream = new PassThrough();
    const read = readPreamble(stream, { timeoutMs: 5_000 });
    for (const byte of bytes) stream.write(Buffer.from([byte]));
    const got = await read;
    expect(got.proof.equals(proof)).toBe(true);
    expect(got.rest).toHaveLength(0);
  });
});

describe('splice wire: host:port', () => {
  it('splice wire - parses names, IPv4 and bracketed IPv6', () => {
    expect(parseHostPort('127.0.0.1:9999')).toEqual({ host: '127.0.0.1', port: 9999 });
    expect(parseHostPort('proxy.example:1')).toEqual({ host: 'proxy.example', port: 1 });
    expect(parseHostPort('[::1]:9999')).toEqual({ host: '::1', port: 9999 });
  });

  it('splice wire - refuses what is not host:port', () => {
    for (const bad of ['', ':9999', 'host', 'host:', 'host:0', 'host:65536', 'host:12a', '::1:9999', 'a b:1', 'host:+1', 'host:1.5']) {
      expect(isHostPort(bad), bad).toBe(false);
    }
  });
});
