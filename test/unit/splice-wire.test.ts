import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PreambleClosed, PreambleTimeout, readPreamble } from '../../src/proxy/preamble.js';

const token = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1));

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

describe('preamble', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('preamble - reads a token sent one byte at a time over TCP', async () => {
    const { server, client, close } = await socketPair();
    try {
      const read = readPreamble(server, { bytes: 32, timeoutMs: 5_000 });
      for (const byte of token) {
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
      const read = readPreamble(server, { bytes: 32, timeoutMs: 5_000 });
      client.write(Buffer.concat([token, Buffer.from('hello')]));
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
      const read = readPreamble(server, { bytes: 32, timeoutMs: 5_000 });
      client.write(token);
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
    const read = readPreamble(stream, { bytes: 32, timeoutMs: 1_000 });
    expect(vi.getTimerCount()).toBe(1);
    stream.write(token.subarray(0, 10));
    stream.write(token.subarray(10));
    await vi.advanceTimersByTimeAsync(0);
    const { token: got } = await read;
    expect(got.equals(token)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('preamble - an incomplete preamble times out with the bytes received', async () => {
    vi.useFakeTimers();
    const stream = new PassThrough();
    const read = readPreamble(stream, { bytes: 32, timeoutMs: 1_000 });
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
      const read = readPreamble(server, { bytes: 32, timeoutMs: 5_000 });
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
      const read = readPreamble(server, { bytes: 32, timeoutMs: 5_000 });
      client.resetAndDestroy();
      await expect(read).rejects.toBeInstanceOf(PreambleClosed);
    } finally {
      close();
    }
  });
});
