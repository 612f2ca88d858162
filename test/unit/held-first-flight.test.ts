import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { HeldFirstFlight } from '../../src/grpc/held-first-flight.js';

const CERTS = 'settings/dev/certs';
const pem = (n: string) => readFileSync(`${CERTS}/${n}`);

let servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  servers = [];
});

/** A loopback server; `onSocket` gets each accepted socket. Resolves with a dialer to it. */
async function serve(onSocket: (s: Socket) => void): Promise<() => Promise<Socket>> {
  const server = createServer(onSocket);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return () =>
    new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
}

/** Everything the far side receives until the connection closes. */
function received(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((r) => s.once('close', () => r(Buffer.concat(chunks))));
}

describe('HeldFirstFlight (src/grpc/held-first-flight.ts)', () => {
  it('held first flight - nothing leaves before attach; then the prefix and what was written leave in that order, and bytes flow both ways', async () => {
    let onFar!: (s: Socket) => void;
    const accepted = new Promise<Socket>((r) => (onFar = r));
    const dial = await serve((s) => onFar(s));
    const socket = await dial();
    const far = await accepted;
    const farGot: Buffer[] = [];
    far.on('data', (c: Buffer) => farGot.push(c));

    const flight = new HeldFirstFlight();
    flight.write('hello ');
    flight.write('world');
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(farGot).length).toBe(0);

    flight.attach(socket, Buffer.from('PREAMBLE|'));
    flight.write('|after');
    const fromFar = new Promise<Buffer>((r) => flight.once('data', r));
    far.write('answer');
    expect((await fromFar).toString()).toBe('answer');
    await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(farGot).toString()).toBe('PREAMBLE|hello world|after');

    // The far side ending ends the stream; ending the stream ends the socket.
    const ended = new Promise((r) => flight.once('end', r));
    flight.resume();
    far.end();
    await ended;
    flight.end();
    await new Promise((r) => socket.once('close', r));
  });

  it('held first flight - destroyed before attach (the brokering failed): the socket it is then given is destroyed without a byte sent', async () => {
    let farBytes!: Promise<Buffer>;
    const dial = await serve((s) => (farBytes = received(s)));
    const flight = new HeldFirstFlight();
    flight.write('client hello that must never leave');
    flight.destroy();
    const socket = await dial();
    flight.attach(socket, Buffer.from('PREAMBLE'));
    expect(socket.destroyed).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    expect((await farBytes).length).toBe(0);
  });

  it('held first flight - a TLS client started on it before the connection exists completes its handshake once attached behind a preamble', async () => {
    // The far side reads the 8-byte preamble, then serves TLS on the rest, as B does through P.
    let sawPreamble = '';
    const dial = await serve((raw) => {
      raw.once('readable', () => {
        const pre = raw.read(8) as Buffer | null;
        sawPreamble = pre?.toString() ?? '';
        const tls = new TLSSocket(raw, { isServer: true, key: pem('hd-2.key'), cert: pem('hd-2.crt'), ca: pem('root.crt'), requestCert: true, rejectUnauthorized: true });
        tls.on('error', () => {});
        tls.on('data', (d: Buffer) => tls.write(Buffer.concat([Buffer.from('echo:'), d])));
      });
    });
    const flight = new HeldFirstFlight();
    const client = tlsConnect({ socket: flight, key: pem('hd-1.key'), cert: pem('hd-1.crt'), ca: pem('root.crt'), servername: 'hd-2' });
    client.on('error', () => {});
    // The ClientHello is built now and waits in the stream.
    await new Promise((r) => setTimeout(r, 20));
    const socket = await dial();
    flight.attach(socket, Buffer.from('PREAMBLE'));
    await new Promise((r, j) => {
      client.once('secureConnect', r);
      client.once('error', j);
    });
    expect(sawPreamble).toBe('PREAMBLE');
    expect(client.authorized).toBe(true);
    const answer = new Promise<Buffer>((r) => client.once('data', r));
    client.write('ping');
    expect((await answer).toString()).toBe('echo:ping');
    client.destroy();
  });
});
