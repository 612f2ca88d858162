import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { DEFAULT_SPLICE_IDLE_TIMEOUT_MS } from '../src/core/constants.js';
import { encodePreamble, signProof, type Leg } from '../src/core/splice-wire.js';
import { createProxyMetrics, registryMetricHooks } from '../src/proxy/metrics.js';
import { SessionRegistry } from '../src/proxy/session-registry.js';
import { SpliceEndpoint } from '../src/proxy/splice-endpoint.js';
import { BENCH_OPERATORS, BENCH_PROXY, benchKeyOf, listedBenchOperators } from './relay-operators.js';

// The processes of the relay bench (bench/relay.ts forks one per role, with an IPC channel to it):
//   relay-eps      the project's relay: SessionRegistry + SpliceEndpoint as the proxy builds them
//                  (metrics hooks, default idle timeout; `bare`: neither), sessions opened with proofs
//   relay-pipe     a plain Node relay: accept, dial the receiver, a.pipe(b) and b.pipe(a)
//   receiver       B: listens (or dials the EPS relay with its pass), echoes PING_COUNT pings,
//                  then counts the stream and answers one byte when it is all in
//   sender         A: dials, times the pings, then on "go" sends the stream and waits for the byte
// Every socket has Nagle off, as every socket on the project's path does.

export const PING_BYTES = 64;

export type ToChild =
  | { type: 'open' }
  | { type: 'dial'; host: string; port: number; pass?: Pass }
  | { type: 'go' };
export type FromChild =
  | { type: 'listening'; port: number }
  | { type: 'pass'; leg: Leg; pass: Pass }
  | { type: 'pinged'; rttsUs: number[] }
  | { type: 'streamed'; bytes: number; ms: number }
  | { type: 'failed'; detail: string };

/** What a leg's dialer gets from the relay: as the bus messages carry it in production. */
export interface Pass {
  sessionId: string;
  token: string;
  challenge: string;
}

const send = (m: FromChild): void => void process.send!(m);
const nextMessage = (): Promise<ToChild> => once(process, 'message').then(([m]) => m as ToChild);
const fail = (detail: string): never => {
  send({ type: 'failed', detail });
  process.exit(1);
};

/** `bare` leaves out the metrics hook and the idle timeout, to measure what they cost. */
async function relayEps(bare: boolean): Promise<void> {
  const log = pino({ level: 'silent' });
  const registry = new SessionRegistry({
    log,
    operator: BENCH_PROXY,
    certificateOf: listedBenchOperators(),
    ...(bare ? {} : { spliceIdleMs: DEFAULT_SPLICE_IDLE_TIMEOUT_MS, ...registryMetricHooks(createProxyMetrics()) }),
  });
  const endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, route: (p, s, r) => registry.route(p, s, r) });
  const { port } = await endpoint.listen();
  const passOf = (sessionId: string, token: Buffer, challenge: Buffer): Pass => ({ sessionId, token: token.toString('base64'), challenge: challenge.toString('base64') });
  process.on('message', (m: ToChild) => {
    if (m.type !== 'open') return;
    registry.open(
      { a: BENCH_OPERATORS.a, b: BENCH_OPERATORS.b, endpoint: `127.0.0.1:${port}` },
      {
        messengers: {
          notifyB: async (s, pass) => {
            send({ type: 'pass', leg: 'b', pass: passOf(s.sessionId, pass.token, pass.challenge) });
            return { accepted: true };
          },
          confirmToA: async (s, pass) => send({ type: 'pass', leg: 'a', pass: passOf(s.sessionId, pass.token, pass.challenge) }),
        },
      },
    );
  });
  send({ type: 'listening', port });
}

async function relayPipe(targetPort: number): Promise<void> {
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (a) => {
    const b = connect({ host: '127.0.0.1', port: targetPort, noDelay: true, allowHalfOpen: true });
    a.pipe(b);
    b.pipe(a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  send({ type: 'listening', port: (server.address() as AddressInfo).port });
}

// Experiment: read into one buffer per direction (net's onread), as haproxy reads into its own.
async function relayOnread(targetPort: number, size: number): Promise<void> {
  const syms = (s: Socket) => Object.fromEntries(Object.getOwnPropertySymbols(s).map((k) => [k.description, k])) as Record<string, symbol>;
  const wire = (src: Socket, dst: Socket) => {
    const k = syms(src);
    const buf = Buffer.allocUnsafeSlow(size);
    let paused = false;
    const written = (): void => {
      if (paused && dst.writableLength === 0) {
        paused = false;
        src.resume();
      }
    };
    (src as any)[k.kBuffer!] = buf;
    (src as any)[k.kBufferCb!] = (n: number, b: Buffer) => {
      dst.write(b.subarray(0, n), written);
      if (dst.writableLength > 0) {
        paused = true;
        return false;
      }
      return true;
    };
    (src as any)._handle.useUserBuffer(buf);
    src.on('end', () => dst.end());
  };
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (a) => {
    const b = connect({ host: '127.0.0.1', port: targetPort, noDelay: true, allowHalfOpen: true });
    wire(a, b);
    wire(b, a);
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  send({ type: 'listening', port: (server.address() as AddressInfo).port });
}

async function dial(host: string, port: number, leg: Leg, pass: Pass | undefined): Promise<Socket> {
  const socket = connect({ host, port, noDelay: true });
  socket.on('error', (err) => fail(`${leg}: ${err.message}`));
  await once(socket, 'connect');
  if (pass) {
    const token = Buffer.from(pass.token, 'base64');
    const proof = signProof(benchKeyOf(leg), { proxy: BENCH_PROXY, sessionId: pass.sessionId, leg, token, challenge: Buffer.from(pass.challenge, 'base64') });
    socket.write(encodePreamble(token, proof));
  }
  return socket;
}

/** Echoes `pingBytes`, then counts `streamBytes` and answers one byte. */
function serve(socket: Socket, pingBytes: number, streamBytes: number): void {
  let echoed = 0;
  let counted = 0;
  socket.setNoDelay(true);
  socket.on('error', (err) => fail(`receiver: ${err.message}`));
  socket.on('data', (chunk: Buffer) => {
    if (echoed < pingBytes) {
      const echo = chunk.subarray(0, pingBytes - echoed);
      echoed += echo.length;
      socket.write(echo);
      chunk = chunk.subarray(echo.length);
    }
    counted += chunk.length;
    if (counted >= streamBytes && chunk.length > 0) socket.end(Buffer.of(1));
  });
}

async function receiver(pingBytes: number, streamBytes: number): Promise<void> {
  const server = createServer({ noDelay: true }, (socket) => {
    server.close();
    serve(socket, pingBytes, streamBytes);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  send({ type: 'listening', port: (server.address() as AddressInfo).port });
  const m = await nextMessage();
  if (m.type === 'dial') {
    // The EPS relay: B dials out with its pass instead.
    server.close();
    serve(await dial(m.host, m.port, 'b', m.pass), pingBytes, streamBytes);
  }
}

async function sender(pings: number, warmup: number, streamBytes: number): Promise<void> {
  const m = await nextMessage();
  if (m.type !== 'dial') return fail(`sender: expected dial, got ${m.type}`);
  const socket = await dial(m.host, m.port, 'a', m.pass);
  const payload = Buffer.alloc(PING_BYTES, 1);
  const rttsUs: number[] = [];
  let got = 0;
  let pong: (() => void) | undefined;
  socket.on('data', (c: Buffer) => {
    got += c.length;
    if (got >= PING_BYTES) pong?.();
  });
  for (let i = 0; i < warmup + pings; i++) {
    got = 0;
    const answered = new Promise<void>((r) => (pong = r));
    const started = process.hrtime.bigint();
    socket.write(payload);
    await answered;
    if (i >= warmup) rttsUs.push(Number(process.hrtime.bigint() - started) / 1e3);
  }
  send({ type: 'pinged', rttsUs });
  const go = await nextMessage();
  if (go.type !== 'go') return fail(`sender: expected go, got ${go.type}`);

  got = 0;
  const acked = new Promise<void>((r) => (pong = r));
  const chunk = Buffer.alloc(64 * 1024, 7);
  const started = process.hrtime.bigint();
  let sent = 0;
  const pump = (): void => {
    while (sent < streamBytes) {
      const n = Math.min(chunk.length, streamBytes - sent);
      sent += n;
      if (!socket.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        socket.once('drain', pump);
        return;
      }
    }
  };
  // The ack is one byte, so the pong threshold must not wait for PING_BYTES of it.
  socket.removeAllListeners('data');
  socket.on('data', () => pong?.());
  pump();
  await acked;
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  send({ type: 'streamed', bytes: sent, ms });
}

const [role, ...args] = process.argv.slice(2);
const num = (i: number): number => Number(args[i]);
// Imported by bench/relay.ts for its types and constants: only a forked child plays a role.
const main = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main) process.on('SIGTERM', () => process.exit(0));
if (main) switch (role) {
  case 'relay-eps':
    await relayEps(args[0] === 'bare');
    break;
  case 'relay-pipe':
    await relayPipe(num(0));
    break;
  case 'relay-onread':
    await relayOnread(num(0), num(1));
    break;
  case 'receiver':
    await receiver(num(0), num(1));
    break;
  case 'sender':
    await sender(num(0), num(1), num(2));
    break;
  default:
    fail(`unknown role ${role}`);
}
