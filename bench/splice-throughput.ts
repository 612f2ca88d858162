import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { pino } from 'pino';
import { pathToFileURL } from 'node:url';
import { encodePreamble } from '../src/core/splice-wire.js';
import { SessionRegistry, type SessionMessengers, type SessionRegistryOptions } from '../src/proxy/session-registry.js';
import { SpliceEndpoint } from '../src/proxy/splice-endpoint.js';

// What the splice costs: one bulk stream and many small round trips, first over a direct
// loopback connection, then through the real endpoint + registry + splicer, in the same run so
// both numbers see the same machine load.

const MiB = 1024 * 1024;
const STREAM_BYTES = 512 * MiB;
const STREAM_MAX_MS = 3_000;
const PING_COUNT = 1_000;
const PING_BYTES = 64;

const log = pino({ level: 'silent' });

/** A connected pair (sender, receiver) over a direct loopback connection. */
async function directPair(): Promise<{ a: Socket; b: Socket; close: () => Promise<void> }> {
  const server = createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
  await once(a, 'connect');
  const [b] = await accepted;
  b.setNoDelay(true);
  return {
    a,
    b,
    close: async () => {
      a.destroy();
      b.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A connected pair whose bytes go through the splice: B dials first, then A, each with its leg's token (no proofs: throughput only). */
export async function splicedPair(hooks: Pick<SessionRegistryOptions, 'inspect' | 'onRelayed'> = {}): Promise<{ a: Socket; b: Socket; close: () => Promise<void> }> {
  let port = 0;
  const dial = async (token: Buffer): Promise<Socket> => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true, allowHalfOpen: true });
    await once(s, 'connect');
    s.write(encodePreamble(token));
    return s;
  };
  let b!: Socket;
  let spliced!: () => void;
  const isSpliced = new Promise<void>((r) => (spliced = r));
  let resolveA!: (s: Socket) => void;
  const aReady = new Promise<Socket>((r) => (resolveA = r));
  const registry = new SessionRegistry({
    ...hooks,
    log,
    operator: 'bench-proxy',
    certificateOf: () => undefined,
    onSpliced: () => spliced(),
  });
  const messengers: SessionMessengers = {
    notifyB: async (_s, pass) => {
      b = await dial(pass.token);
      return { accepted: true };
    },
    confirmToA: async (_s, pass) => {
      setImmediate(() => void dial(pass.token).then(resolveA));
    },
  };
  const endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, route: (p, s, r) => registry.route(p, s, r) });
  port = (await endpoint.listen()).port;
  registry.open({ a: 'bench-a', b: 'bench-b', endpoint: `127.0.0.1:${port}` }, { messengers, proofs: false });
  const a = await aReady;
  await isSpliced;
  return {
    a,
    b,
    close: async () => {
      a.destroy();
      b.destroy();
      await registry.shutdown();
      await endpoint.close();
    },
  };
}

export async function stream(a: Socket, b: Socket): Promise<{ bytes: number; ms: number }> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let received = 0;
  let sending = true;
  const started = process.hrtime.bigint();
  const deadline = Date.now() + STREAM_MAX_MS;
  const done = new Promise<void>((resolve) => {
    b.on('data', (c: Buffer) => {
      received += c.length;
      if (received >= STREAM_BYTES) resolve();
    });
    setTimeout(resolve, STREAM_MAX_MS + 500).unref();
  });
  let sent = 0;
  const pump = (): void => {
    while (sending && sent < STREAM_BYTES) {
      if (Date.now() > deadline) {
        sending = false;
        break;
      }
      sent += chunk.length;
      if (!a.write(chunk)) {
        a.once('drain', pump);
        return;
      }
    }
  };
  pump();
  await done;
  sending = false;
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  b.removeAllListeners('data');
  return { bytes: received, ms };
}

async function pingPong(a: Socket, b: Socket): Promise<number[]> {
  b.on('data', (c: Buffer) => b.write(c));
  const payload = Buffer.alloc(PING_BYTES, 1);
  const rtts: number[] = [];
  for (let i = 0; i < PING_COUNT; i++) {
    const started = process.hrtime.bigint();
    a.write(payload);
    let got = 0;
    while (got < PING_BYTES) {
      const [c] = (await once(a, 'data')) as [Buffer];
      got += c.length;
    }
    rtts.push(Number(process.hrtime.bigint() - started) / 1e3);
  }
  b.removeAllListeners('data');
  return rtts;
}

const percentile = (xs: number[], p: number): number => {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};

async function measure(name: string, make: () => Promise<{ a: Socket; b: Socket; close: () => Promise<void> }>) {
  const bulk = await make();
  const s = await stream(bulk.a, bulk.b);
  await bulk.close();
  const small = await make();
  const rtts = await pingPong(small.a, small.b);
  await small.close();
  const mibps = s.bytes / MiB / (s.ms / 1000);
  console.log(
    `${name.padEnd(8)} stream ${(s.bytes / MiB).toFixed(0)} MiB in ${s.ms.toFixed(0)} ms = ${mibps.toFixed(0)} MiB/s; ` +
      `${PING_COUNT} x ${PING_BYTES} B round trips: p50 ${percentile(rtts, 50).toFixed(0)} us, p99 ${percentile(rtts, 99).toFixed(0)} us`,
  );
  return { mibps, p50: percentile(rtts, 50) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const direct = await measure('direct', directPair);
  const spliced = await measure('spliced', () => splicedPair());
  console.log(
    `spliced/direct throughput ${(spliced.mibps / direct.mibps).toFixed(2)}x; ` +
      `round trip p50 ${(spliced.p50 / direct.p50).toFixed(2)}x`,
  );
}
