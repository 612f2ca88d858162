import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { RpcError } from '../../src/core/errors.js';
import { readPreamble } from '../../src/core/splice-wire.js';
import { readTlsMaterial } from '../../src/core/tls-material.js';
import type { DirectoryEntry } from '../../src/directory/types.js';
import { PeerChannels } from '../../src/eps/peer-channels.js';
import { HeldFirstFlight } from '../../src/grpc/held-first-flight.js';
import { createPeerServer, type PeerServer } from '../../src/grpc/peer-server.js';
import { waitFor } from '../helpers/faults.js';

// A's early TLS client (src/eps/peer-channels.ts, startEarlyClient) on real sockets: a real gRPC
// server B behind a stand-in proxy P that reads A's preamble and pipes the rest to B, and a bus
// whose answers the test gives by hand, so each test decides when the confirmation arrives and
// what the directory says meanwhile.

const CERTS = 'settings/dev/certs';
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
const hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
const hd2 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-2.crt`, key: `${CERTS}/hd-2.key` });

// Every HeldFirstFlight a TLS client wrote its ClientHello to, so a test can see each one ended.
const flights = new Set<HeldFirstFlight>();
const write = HeldFirstFlight.prototype._write;
HeldFirstFlight.prototype._write = function (this: HeldFirstFlight, ...args: Parameters<typeof write>) {
  flights.add(this);
  return write.apply(this, args);
};

describe('early TLS client - the directory and the brokering around it', () => {
  let b: PeerServer;
  let bPort = 0;
  let p: Server;
  let pPort = 0;
  /** Connections P accepted that sent something. */
  const atP: Socket[] = [];
  /** B's certificate as A's directory names it; a test may change it mid-brokering. */
  let fingerprint = hd2.fingerprint;
  let lookups = 0;
  let onLookup: (n: number) => void = () => undefined;
  const directory = {
    entry(name: string): DirectoryEntry | undefined {
      if (name !== 'hd-2') return undefined;
      const entry = { name, certificate: '', fingerprint, channels: [{ type: 'grpc_server', proxy: 'P' }], groups: [], services: [] } as unknown as DirectoryEntry;
      onLookup(++lookups);
      return entry;
    },
  };
  let requests: { resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  /** When set, the bus answers every request with this at once, before a turn of the event loop. */
  let answerAtOnce: (() => unknown) | undefined;
  const bus = {
    request: () => (answerAtOnce ? Promise.resolve(answerAtOnce()) : new Promise((resolve, reject) => requests.push({ resolve, reject }))),
  } as unknown as Bus;
  const confirmation = () => ({ token: randomBytes(32).toString('base64'), challenge: randomBytes(32).toString('base64'), endpoint: `127.0.0.1:${pPort}`, sessionId: 's' });
  const channels = new Set<PeerChannels>();
  function peerChannels(): PeerChannels {
    const c = new PeerChannels({
      self: 'hd-1',
      tls: hd1,
      signer: createSigner('hd-1', hd1.key),
      directory,
      bus,
      log,
      timeouts: { dialMs: 2_000, channelIdleMs: 5_000, callMs: 3_000, busRequestMs: 3_000 },
      warmDials: false,
    });
    channels.add(c);
    return c;
  }
  /** A call to hd-2, once its request is on the bus and its early client has written its ClientHello. */
  async function calling(c: PeerChannels): Promise<{ outcome: Promise<unknown> }> {
    const outcome = c.call('hd-2', 'echo', { x: 1 }, 'id').catch((e: unknown) => e);
    await waitFor('the request and the early client', () => requests.length === 1 && flights.size === 1, 3_000, 5);
    return { outcome };
  }

  beforeAll(async () => {
    b = createPeerServer({ tls: hd2, log, handle: async (call) => call.params });
    bPort = await b.listen('127.0.0.1', 0);
    p = createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', (first: Buffer) => {
        atP.push(s);
        s.pause();
        s.unshift(first);
        void readPreamble(s, { timeoutMs: 3_000 }).then(({ rest }) => {
          const toB = connect(bPort, '127.0.0.1', () => {
            toB.write(rest);
            s.pipe(toB).pipe(s);
            s.resume();
          });
          toB.on('error', () => s.destroy());
          toB.on('close', () => s.destroy());
          s.on('close', () => toB.destroy());
        }, () => s.destroy());
      });
    });
    await new Promise<void>((r) => p.listen(0, '127.0.0.1', r));
    pPort = (p.address() as { port: number }).port;
  });

  afterEach(() => {
    for (const c of channels) c.close();
    channels.clear();
    flights.clear();
    atP.length = 0;
    requests = [];
    fingerprint = hd2.fingerprint;
    lookups = 0;
    onLookup = () => undefined;
    answerAtOnce = undefined;
  });

  afterAll(async () => {
    await b.close(0);
    await new Promise((r) => p.close(r));
  });

  it('early client - a brokered call through it succeeds, and a refused request leaves no client and dials nothing', async () => {
    const c = peerChannels();
    const ok = await calling(c);
    requests[0]!.resolve(confirmation());
    expect(await ok.outcome).toEqual({ x: 1 });
    c.close();
    flights.clear();
    atP.length = 0;
    requests = [];

    const refused = await calling(peerChannels());
    requests[0]!.reject(new RpcError('BROKERING_FAILED', 'hd-2 refused the connection'));
    expect(await refused.outcome).toMatchObject({ code: new RpcError('BROKERING_FAILED', '').code });
    await waitFor('the early client closed', () => [...flights].every((f) => f.destroyed), 2_000, 5);
    expect(atP).toHaveLength(0);
  });

  it('early client - the directory names another certificate for B while the request is on the bus: B is refused, as before there were early clients', async () => {
    // The early client started with the entry of then; B still presents the certificate the
    // directory no longer names (replaced, or revoked), and A must not accept it.
    const call = await calling(peerChannels());
    fingerprint = hd1.fingerprint;
    requests[0]!.resolve(confirmation());
    const err = await call.outcome;
    expect(err).toBeInstanceOf(RpcError);
    expect((err as Error).message).toContain('refusing hd-2');
  });

  it('early client - the directory names another certificate for B while A dials the proxy, after the flight left: refused, not checked against the old entry', async () => {
    const call = await calling(peerChannels());
    // The look-ups so far: the route (1), the early client (2). The third is the dial's; the
    // entry changes right after it, before the channel is secured.
    onLookup = (n) => {
      if (n === 3) fingerprint = hd1.fingerprint;
    };
    requests[0]!.resolve(confirmation());
    const err = await call.outcome;
    expect(err).toBeInstanceOf(RpcError);
    expect((err as Error).message).toContain('certificate in the directory changed');
    await waitFor('the early client closed', () => [...flights].every((f) => f.destroyed), 2_000, 5);
  });

  it('early client - a confirmation in before the early client started: none is started, none waits unused beside the open channel', async () => {
    answerAtOnce = confirmation;
    const c = peerChannels();
    expect(await c.call('hd-2', 'echo', { x: 1 }, 'id')).toEqual({ x: 1 });
    expect(c.states()).toEqual({ 'hd-2': 'open' });
    // The dial and TLS went ahead on their own; an early client made after them would be nobody's.
    expect(flights.size).toBe(0);
  });
});
