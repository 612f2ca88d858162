import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { fingerprintOf, readTlsMaterial } from '../src/core/tls-material.js';
import { connectPeerClientDirect } from '../src/grpc/peer-client.js';
import { callJsonRpc } from '../src/jsonrpc/client.js';
import { nativeSplicer, stopReading } from '../src/proxy/native-splice.js';
import { start as startEps, untilAnswered, type Target } from './brokering-latency.js';

// The floor of the brokering protocol on this machine (issue 10): a skeleton that makes exactly
// the hops of one brokered call and nothing else, so that brokered ÷ direct fresh here is the
// best ratio any implementation of this design can reach on the same box. No EPS code runs on
// the brokered path (no machines, directory, gateway, schemas, logging): only
//   client --HTTPS keep-alive POST--> A (the JSON-RPC gateway's hop)
//   A --NATS request--> P (connectionRequest)      P --NATS request--> B (connectionForward)
//   B replies to P, dials P's splice port and writes its preamble (token | len | proof)
//   P, once it holds B's socket and B's reply, replies to A (A's token)
//   A dials P, writes its preamble, P splices (the project's native relay, or JS pipes with
//   FLOOR_RELAY=js), A runs TLS 1.3 mTLS to B through it (hd-1 client, hd-2 server, root CA,
//   resuming B's last session ticket), then node:http2, one POST and its answer; A answers the client.
// Each role is a node process of its own (this file forked with a role), and each contender
// stack has its own nats-server (/usr/sbin/nats-server, free port). Contenders (FLOOR_VARIANTS):
//   plain     NATS without TLS, no signatures
//   tls       NATS with mTLS (the bus's setup: every client presents a certificate)
//   tls+sign  as tls, and every bus message and preamble proof is ECDSA P-256 signed by its
//             sender and verified by its receiver (6 signs + 6 verifies per brokering, as EPS)
// Anchors, from the client process, each a fresh connection: node:http2 over TLS 1.3 mTLS to a
// bare server process with hd-2's key (full handshake, and resumed), and grpc-js (the project's
// connectPeerClientDirect to bench/peer-server-child.ts, the anchor of bench/brokering.ts).
// Every contender's turn follows FLOOR_IDLE_MS (60) of idleness, turns rotate round by round,
// as bench/brokering.ts spaces them (every process is idle before a brokering). Each process
// stamps its steps with the monotonic clock (process.hrtime, one clock for all processes), which
// gives the per-hop breakdown of the brokered path.
//
// FLOOR_WITH_EPS=1 adds the real thing as a contender in the same run: this build's stack (sd,
// proxy, hd-1, hd-2, as bench/brokering.ts starts it, hd-1's channelIdleMs 50) and hd-2._ping
// through hd-1's gateway on a kept-alive HTTPS connection, each call brokering a new channel
// (after it the driver waits 100 ms, untimed, so the channel has idled out).
//
//   node dist/bench/brokering-floor.js [rounds=200]

const CERTS = 'settings/dev/certs';
const IDLE_MS = Number(process.env['FLOOR_IDLE_MS'] ?? 60);
const WARMUP = 30;
const TOKEN_BYTES = 32;

type Variant = 'plain' | 'tls' | 'tls+sign';
interface RoleConfig {
  natsPort: number;
  natsTls: boolean;
  sign: boolean;
  relay: 'native' | 'js';
}
type Mark = [round: number, step: string, ms: number];

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const marks: Mark[] = [];
const mark = (round: number, step: string, at = nowMs()): void => void marks.push([round, step, at]);

const pem = (name: string): Buffer => readFileSync(`${CERTS}/${name}`);
const keys = new Map<string, KeyObject>();
const keyOf = (principal: string): KeyObject => keys.get(principal) ?? keys.set(principal, createPrivateKey(pem(`${principal}.key`))).get(principal)!;
const publicKeyOf = (principal: string): KeyObject => new X509Certificate(pem(`${principal}.crt`)).publicKey;
const PRINCIPAL = { A: 'hd-1', P: 'public-proxy-eps-1', B: 'hd-2' } as const;

// --- the bus envelope: JSON, signed or not ----------------------------------------------------

function encoder(cfg: RoleConfig, principal: string): (body: object) => Uint8Array {
  if (!cfg.sign) return (body) => Buffer.from(JSON.stringify(body));
  const key = keyOf(principal);
  return (body) => {
    const text = JSON.stringify(body);
    return Buffer.from(JSON.stringify({ body: text, sig: sign('sha256', Buffer.from(text), key).toString('base64') }));
  };
}

function decoder(cfg: RoleConfig, principal: string): (data: Uint8Array) => Record<string, unknown> {
  if (!cfg.sign) return (data) => JSON.parse(Buffer.from(data).toString()) as Record<string, unknown>;
  const pub = publicKeyOf(principal);
  return (data) => {
    const env = JSON.parse(Buffer.from(data).toString()) as { body: string; sig: string };
    if (!verify('sha256', Buffer.from(env.body), pub, Buffer.from(env.sig, 'base64'))) throw new Error(`bad signature from ${principal}`);
    return JSON.parse(env.body) as Record<string, unknown>;
  };
}

function preamble(cfg: RoleConfig, principal: string, token: Buffer, challenge: Buffer): Buffer {
  const proof = cfg.sign ? sign('sha256', Buffer.concat([token, challenge]), keyOf(principal)) : Buffer.alloc(0);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(proof.length);
  return Buffer.concat([token, len, proof]);
}

async function bus(cfg: RoleConfig, principal: string): Promise<NatsConnection> {
  const servers = `127.0.0.1:${cfg.natsPort}`;
  if (!cfg.natsTls) return natsConnect({ servers });
  return natsConnect({ servers, tls: { certFile: `${CERTS}/${principal}.crt`, keyFile: `${CERTS}/${principal}.key`, caFile: `${CERTS}/root.crt` } });
}

function h2Server(): http2.Http2SecureServer {
  const server = http2.createSecureServer({
    key: pem('hd-2.key'),
    cert: pem('hd-2.crt'),
    ca: pem('root.crt'),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
  });
  server.on('stream', (stream, headers) => {
    const round = Number(headers['x-round'] ?? -1);
    mark(round, 'b.h2Stream');
    stream.on('data', () => {});
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end('{"result":{"pong":"hd-2"}}');
      mark(round, 'b.h2Responded');
    });
  });
  return server;
}

/** TLS 1.3 mTLS as hd-1 to hd-2 over `socket`, then one HTTP/2 POST; resolves with its answer. */
async function h2Call(socket: net.Socket, ctx: tls.SecureContext, session: Buffer | undefined, round: number, onSession: (s: Buffer) => void): Promise<void> {
  const t = tls.connect({ socket, secureContext: ctx, servername: 'hd-2', ALPNProtocols: ['h2'], minVersion: 'TLSv1.3', ...(session ? { session } : {}) });
  t.on('session', onSession);
  t.once('secureConnect', () => {
    mark(round, 'a.tlsSecure');
    if (t.isSessionReused()) mark(round, 'a.resumed');
  });
  const client = http2.connect('https://hd-2', { createConnection: () => t });
  client.on('error', () => {});
  try {
    const req = client.request({ ':method': 'POST', ':path': '/eps.Peer/Call', 'content-type': 'application/json', 'x-round': String(round) });
    req.end('{"method":"_ping","params":{}}');
    req.on('data', () => {});
    await once(req, 'end');
    mark(round, 'a.h2Response');
  } finally {
    client.close();
    t.end();
  }
}

function dial(port: number): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port, noDelay: true });
  return once(s, 'connect').then(() => s);
}

const clientContext = (): tls.SecureContext => tls.createSecureContext({ key: pem('hd-1.key'), cert: pem('hd-1.crt'), ca: pem('root.crt') });

// --- roles ------------------------------------------------------------------------------------

async function roleA(cfg: RoleConfig): Promise<number> {
  const nc = await bus(cfg, PRINCIPAL.A);
  const encode = encoder(cfg, PRINCIPAL.A);
  const decodeP = decoder(cfg, PRINCIPAL.P);
  const ctx = clientContext();
  let session: Buffer | undefined;
  const broker = async (round: number): Promise<void> => {
    const request = encode({ op: 'connectionRequest', round, from: 'hd-1', to: 'hd-2' });
    mark(round, 'a.natsReqSent');
    const reply = decodeP((await nc.request('floor.P.connectionRequest', request, { timeout: 5_000 })).data) as { port: number; token: string; challenge: string };
    mark(round, 'a.natsReply');
    const socket = await dial(reply.port);
    mark(round, 'a.dialed');
    socket.write(preamble(cfg, PRINCIPAL.A, Buffer.from(reply.token, 'base64'), Buffer.from(reply.challenge, 'base64')));
    await h2Call(socket, ctx, session, round, (s) => (session = s));
  };
  const server = https.createServer({ key: pem('hd-1.key'), cert: pem('hd-1.crt'), ca: pem('root.crt'), requestCert: true, keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const { id } = JSON.parse(Buffer.concat(chunks).toString()) as { id: number };
      mark(id, 'a.httpReq');
      broker(id).then(
        () => {
          const body = `{"jsonrpc":"2.0","id":${id},"result":{"pong":"hd-2"}}`;
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
          mark(id, 'a.httpResp');
        },
        (err: Error) => {
          res.writeHead(500);
          res.end(err.message);
        },
      );
    });
  });
  server.on('connection', (s: net.Socket) => s.setNoDelay(true));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

interface Session {
  round: number;
  challenge: Buffer;
  b?: { socket: net.Socket; rest: Buffer };
  bHeld: () => void;
}

async function roleP(cfg: RoleConfig): Promise<number> {
  const nc = await bus(cfg, PRINCIPAL.P);
  const encode = encoder(cfg, PRINCIPAL.P);
  const decodeA = decoder(cfg, PRINCIPAL.A);
  const decodeB = decoder(cfg, PRINCIPAL.B);
  const pubA = publicKeyOf(PRINCIPAL.A);
  const pubB = publicKeyOf(PRINCIPAL.B);
  const tokens = new Map<string, { leg: 'a' | 'b'; s: Session }>();
  const native = cfg.relay === 'native' ? nativeSplicer().splicer : undefined;
  if (cfg.relay === 'native' && !native) throw new Error(`native relay unavailable: ${nativeSplicer().why}`);

  const splice = (a: net.Socket, aRest: Buffer, b: net.Socket, bRest: Buffer): void => {
    if (!native) {
      if (aRest.length) b.write(aRest);
      if (bRest.length) a.write(bRest);
      a.pipe(b);
      b.pipe(a);
      a.on('error', () => b.destroy());
      b.on('error', () => a.destroy());
      a.resume();
      b.resume();
      return;
    }
    stopReading(a);
    stopReading(b);
    if (aRest.length) b.write(aRest);
    if (bRest.length) a.write(bRest);
    const go = (): void => {
      if (a.writableLength > 0 || b.writableLength > 0) return;
      native.add(a, b, { bytesAToB: 0, bytesBToA: 0, onEnded: () => {} });
      for (const s of [a, b]) {
        s.removeAllListeners();
        s.on('error', () => {});
        s.destroy();
      }
    };
    a.on('drain', go);
    b.on('drain', go);
    go();
  };

  const server = net.createServer({ noDelay: true }, (socket) => {
    const acceptedAt = nowMs();
    let buf: Buffer = Buffer.alloc(0);
    socket.on('error', () => {});
    const onData = (chunk: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (buf.length < TOKEN_BYTES + 2) return;
      const proofLen = buf.readUInt16BE(TOKEN_BYTES);
      if (buf.length < TOKEN_BYTES + 2 + proofLen) return;
      socket.off('data', onData);
      socket.pause();
      const token = buf.subarray(0, TOKEN_BYTES);
      const rest = buf.subarray(TOKEN_BYTES + 2 + proofLen);
      const found = tokens.get(token.toString('base64'));
      if (!found) return void socket.destroy();
      tokens.delete(token.toString('base64'));
      const { leg, s } = found;
      if (cfg.sign && !verify('sha256', Buffer.concat([token, s.challenge]), leg === 'a' ? pubA : pubB, buf.subarray(TOKEN_BYTES + 2, TOKEN_BYTES + 2 + proofLen))) {
        return void socket.destroy();
      }
      mark(s.round, `p.${leg}Accepted`, acceptedAt);
      mark(s.round, `p.${leg}Preamble`);
      if (leg === 'b') {
        s.b = { socket, rest };
        s.bHeld();
        return;
      }
      splice(socket, rest, s.b!.socket, s.b!.rest);
      mark(s.round, 'p.spliced');
    };
    socket.on('data', onData);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;

  nc.subscribe('floor.P.connectionRequest', {
    callback: (_err, m) => {
      const req = decodeA(m.data) as { round: number };
      const round = req.round;
      mark(round, 'p.reqRecv');
      const tokenA = randomBytes(TOKEN_BYTES);
      const tokenB = randomBytes(TOKEN_BYTES);
      const challenge = randomBytes(TOKEN_BYTES);
      let bHeld!: () => void;
      const held = new Promise<void>((r) => (bHeld = r));
      const s: Session = { round, challenge, bHeld };
      tokens.set(tokenA.toString('base64'), { leg: 'a', s });
      tokens.set(tokenB.toString('base64'), { leg: 'b', s });
      const forward = encode({ op: 'connectionForward', round, port, token: tokenB.toString('base64'), challenge: challenge.toString('base64') });
      mark(round, 'p.fwdSent');
      const answered = nc.request('floor.B.connectionForward', forward, { timeout: 5_000 }).then((r) => {
        decodeB(r.data);
        mark(round, 'p.fwdReply');
      });
      void Promise.all([answered, held]).then(() => {
        m.respond(encode({ round, port, token: tokenA.toString('base64'), challenge: challenge.toString('base64') }));
        mark(round, 'p.replyToA');
      });
    },
  });
  await nc.flush();
  return port;
}

async function roleB(cfg: RoleConfig): Promise<number> {
  const nc = await bus(cfg, PRINCIPAL.B);
  const encode = encoder(cfg, PRINCIPAL.B);
  const decodeP = decoder(cfg, PRINCIPAL.P);
  const server = h2Server();
  let current = -1;
  server.on('secureConnection', () => mark(current, 'b.tlsSecure'));
  nc.subscribe('floor.B.connectionForward', {
    callback: (_err, m) => {
      const fwd = decodeP(m.data) as { round: number; port: number; token: string; challenge: string };
      current = fwd.round;
      mark(fwd.round, 'b.fwdRecv');
      // As EPS: B's reply to P is its answer (accepted); dialing happens after it.
      m.respond(encode({ round: fwd.round, accepted: true }));
      mark(fwd.round, 'b.replied');
      void dial(fwd.port).then((socket) => {
        mark(fwd.round, 'b.dialed');
        socket.write(preamble(cfg, PRINCIPAL.B, Buffer.from(fwd.token, 'base64'), Buffer.from(fwd.challenge, 'base64')));
        server.emit('connection', socket);
      });
    },
  });
  await nc.flush();
  return 0;
}

async function roleDirect(): Promise<number> {
  const server = h2Server();
  server.on('connection', (s: net.Socket) => s.setNoDelay(true));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

async function child(role: string): Promise<void> {
  const cfg = JSON.parse(process.env['FLOOR_CFG'] ?? '{}') as RoleConfig;
  const port = role === 'A' ? await roleA(cfg) : role === 'P' ? await roleP(cfg) : role === 'B' ? await roleB(cfg) : await roleDirect();
  process.on('message', (msg) => {
    if (msg === 'dump') {
      process.send!({ marks });
      marks.length = 0;
    }
  });
  process.send!({ port });
}

// --- driver: the client ------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => res(port));
    });
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nats-server did not listen on ${port}`);
}

async function startNats(dir: string, natsTls: boolean): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const conf = join(dir, `nats-${port}.conf`);
  const tlsBlock = natsTls
    ? `tls {\n  cert_file: "${resolve(CERTS, 'nats-server.crt')}"\n  key_file: "${resolve(CERTS, 'nats-server.key')}"\n  ca_file: "${resolve(CERTS, 'root.crt')}"\n  verify: true\n}\n`
    : '';
  writeFileSync(conf, `listen: "127.0.0.1:${port}"\n${tlsBlock}`);
  const proc = spawn('/usr/sbin/nats-server', ['-c', conf], { stdio: 'ignore' });
  await waitForPort(port);
  return { proc, port };
}

function forkRole(role: string, cfg?: RoleConfig): Promise<{ proc: ChildProcess; port: number }> {
  const proc = fork(fileURLToPath(import.meta.url), [role], { env: { ...process.env, FLOOR_CFG: JSON.stringify(cfg ?? {}) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((res, rej) => {
    proc.once('error', rej);
    proc.once('exit', (code) => rej(new Error(`role ${role} exited with ${code}`)));
    proc.once('message', (m) => res({ proc, port: (m as { port: number }).port }));
  });
}

function dump(proc: ChildProcess): Promise<Mark[]> {
  return new Promise((res) => {
    proc.once('message', (m) => res((m as { marks: Mark[] }).marks));
    proc.send('dump');
  });
}

interface Stack {
  variant: Variant;
  nats: ChildProcess;
  roles: ChildProcess[];
  aPort: number;
  agent: https.Agent;
}

function postJson(agent: https.Agent, port: number, id: number): Promise<void> {
  return new Promise((res, rej) => {
    const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'hd-2._ping', params: {} });
    const req = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/jsonrpc', agent, servername: 'hd-1', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (r) => {
        r.on('data', () => {});
        r.on('end', () => (r.statusCode === 200 ? res() : rej(new Error(`HTTP ${r.statusCode}`))));
      },
    );
    req.on('error', rej);
    req.end(body);
  });
}

const pct = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const r2 = (x: number): number => Math.round(x * 100) / 100;
function stats(xs: number[]): { p50: number; p90: number; p99: number; mean: number; n: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: r2(pct(s, 0.5)), p90: r2(pct(s, 0.9)), p99: r2(pct(s, 0.99)), mean: r2(s.reduce((a, b) => a + b, 0) / (s.length || 1)), n: s.length };
}

// The brokered call's critical path, in order; each segment is the time between two stamps.
const PATH = [
  'c.send', 'a.httpReq', 'a.natsReqSent', 'p.reqRecv', 'p.fwdSent', 'b.fwdRecv', 'b.replied', 'b.dialed', 'p.bAccepted', 'p.bPreamble',
  'p.replyToA', 'a.natsReply', 'a.dialed', 'p.aAccepted', 'p.aPreamble', 'p.spliced', 'a.tlsSecure', 'a.h2Response', 'a.httpResp', 'c.done',
];
// Off the path, or overlapping it, measured from the stamp named second.
const SIDE: Array<[string, string]> = [['p.fwdReply', 'p.fwdSent'], ['b.tlsSecure', 'a.dialed'], ['b.h2Stream', 'a.tlsSecure'], ['b.h2Responded', 'b.h2Stream'], ['a.tlsSecure', 'a.dialed']];

async function driver(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 200);
  const variants = (process.env['FLOOR_VARIANTS'] ?? 'plain,tls,tls+sign').split(',') as Variant[];
  const relay = (process.env['FLOOR_RELAY'] ?? 'native') as 'native' | 'js';
  const dir = mkdtempSync(join(tmpdir(), 'floor-'));
  const stacks: Stack[] = [];
  const others: ChildProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  const ca = pem('root.crt');
  const clientOpts = { key: pem('hd-1.key'), cert: pem('hd-1.crt'), ca };
  try {
    for (const variant of variants) {
      const nats = await startNats(dir, variant !== 'plain');
      const cfg: RoleConfig = { natsPort: nats.port, natsTls: variant !== 'plain', sign: variant === 'tls+sign', relay };
      const p = await forkRole('P', cfg);
      const b = await forkRole('B', cfg);
      const a = await forkRole('A', cfg);
      stacks.push({ variant, nats: nats.proc, roles: [a.proc, p.proc, b.proc], aPort: a.port, agent: new https.Agent({ keepAlive: true, maxSockets: 1, ...clientOpts }) });
    }
    const direct = await forkRole('D');
    others.push(direct.proc);
    const anchor = await new Promise<{ child: ChildProcess; port: number }>((res, rej) => {
      const c = spawn(process.execPath, ['dist/bench/peer-server-child.js'], { stdio: ['ignore', 'pipe', 'inherit'] });
      c.once('error', rej);
      c.stdout!.once('data', (d: Buffer) => res({ child: c, port: Number(String(d).trim()) }));
    });
    others.push(anchor.child);

    const hd1 = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-1.crt`, key: `${CERTS}/hd-1.key` });
    const expectedPeer = { name: 'hd-2', fingerprint: fingerprintOf(pem('hd-2.crt')) };
    const ctx = clientContext();
    let directSession: Buffer | undefined;
    const h2Fresh = async (resume: boolean): Promise<void> => {
      const socket = await dial(direct.port);
      await h2Call(socket, ctx, resume ? directSession : undefined, -1, (s) => (directSession = s));
    };
    const grpcFresh = async (): Promise<void> => {
      const c = await connectPeerClientDirect({ tls: hd1, expectedPeer, address: `127.0.0.1:${anchor.port}` });
      try {
        await c.call('_ping', {});
      } finally {
        c.close();
      }
    };

    let eps: Target | undefined;
    const epsTurns: Array<{ name: string; run: () => Promise<void>; settleMs?: number }> = [];
    if (process.env['FLOOR_WITH_EPS']) {
      eps = await startEps('.');
      const target = eps;
      const epsAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      const gw = (): Promise<unknown> =>
        callJsonRpc({ url: `https://127.0.0.1:${target.jsonrpcPort}/jsonrpc`, serverName: 'hd-1', tls: hd1, timeoutMs: 10_000, agent: epsAgent }, 'hd-2._ping', {});
      await untilAnswered('eps (real)', gw);
      epsTurns.push({ name: 'eps brokered (real)', run: async () => void (await gw()), settleMs: 100 });
      cleanups.push(async () => {
        epsAgent.destroy();
        await target.stack.stop().catch(() => {});
        target.nats.kill('SIGTERM');
        rmSync(target.storeDir, { recursive: true, force: true });
      });
    }
    const samples: Record<string, number[]> = {};
    const sent = new Map<string, Mark[]>();
    let id = 0;
    const turns: Array<{ name: string; run: () => Promise<void>; settleMs?: number }> = [
      ...epsTurns,
      ...stacks.map((s) => ({
        name: `floor ${s.variant}`,
        run: async () => {
          const round = ++id;
          const m = sent.get(s.variant) ?? [];
          sent.set(s.variant, m);
          m.push([round, 'c.send', nowMs()]);
          await postJson(s.agent, s.aPort, round);
          m.push([round, 'c.done', nowMs()]);
        },
      })),
      { name: 'h2 fresh (full handshake)', run: () => h2Fresh(false) },
      { name: 'h2 fresh (resumed)', run: () => h2Fresh(true) },
      { name: 'grpc-js fresh', run: grpcFresh },
    ];
    for (let i = 0; i < WARMUP; i++) {
      for (const t of turns) {
        await t.run();
        if (t.settleMs) await sleep(t.settleMs);
      }
    }
    for (const s of stacks) for (const r of s.roles) await dump(r);
    sent.clear();
    const load = loadavg().map(r2);
    const t0 = Date.now();
    for (let i = 0; i < rounds; i++) {
      for (let j = 0; j < turns.length; j++) {
        const t = turns[(i + j) % turns.length]!;
        await sleep(IDLE_MS);
        const start = nowMs();
        await t.run();
        (samples[t.name] ??= []).push(nowMs() - start);
        if (t.settleMs) await sleep(t.settleMs);
      }
    }
    const loadAfter = loadavg().map(r2);

    const out: Record<string, unknown> = { rounds, idleMs: IDLE_MS, relay, loadBefore: load, loadAfter, seconds: (Date.now() - t0) / 1000 };
    console.log(`brokering floor, ${rounds} rounds, ${IDLE_MS} ms idle before each turn, relay ${relay}; load ${load.join(' ')} -> ${loadAfter.join(' ')}`);
    const st = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v)]));
    out['stats'] = st;
    for (const [k, s] of Object.entries(st)) console.log(`  ${k.padEnd(26)} p50 ${s.p50}  p90 ${s.p90}  p99 ${s.p99}  mean ${s.mean}  (n ${s.n})`);
    const grpc = st['grpc-js fresh']!;
    const h2 = st['h2 fresh (full handshake)']!;
    const real = st['eps brokered (real)'];
    if (real) console.log(`  eps brokered (real): ÷ grpc-js fresh p50 ${r2(real.p50 / grpc.p50)}× p90 ${r2(real.p90 / grpc.p90)}× p99 ${r2(real.p99 / grpc.p99)}×`);
    for (const s of stacks) {
      const f = st[`floor ${s.variant}`]!;
      console.log(
        `  floor ${s.variant}: ÷ grpc-js fresh p50 ${r2(f.p50 / grpc.p50)}× p90 ${r2(f.p90 / grpc.p90)}× p99 ${r2(f.p99 / grpc.p99)}×; ÷ h2 fresh p50 ${r2(f.p50 / h2.p50)}× p90 ${r2(f.p90 / h2.p90)}× p99 ${r2(f.p99 / h2.p99)}×`,
      );
    }

    // Per-hop breakdown of each floor variant.
    const breakdowns: Record<string, unknown> = {};
    for (const s of stacks) {
      const all: Mark[] = [...(sent.get(s.variant) ?? [])];
      for (const r of s.roles) all.push(...(await dump(r)));
      const byRound = new Map<number, Map<string, number>>();
      for (const [round, step, at] of all) {
        const m = byRound.get(round) ?? new Map<string, number>();
        byRound.set(round, m);
        if (!m.has(step)) m.set(step, at);
      }
      const segs: Record<string, number[]> = {};
      for (const m of byRound.values()) {
        if (!m.has('c.send') || !m.has('c.done')) continue;
        for (let i = 1; i < PATH.length; i++) {
          const a = m.get(PATH[i - 1]!);
          const b = m.get(PATH[i]!);
          if (a !== undefined && b !== undefined) (segs[`${PATH[i - 1]} → ${PATH[i]}`] ??= []).push(b - a);
        }
        for (const [x, from] of SIDE) {
          const a = m.get(from);
          const b = m.get(x);
          if (a !== undefined && b !== undefined) (segs[`(side) ${from} → ${x}`] ??= []).push(b - a);
        }
      }
      const resumed = [...byRound.values()].filter((m) => m.has('a.resumed')).length;
      console.log(`  floor ${s.variant}: ${resumed} of ${byRound.size} brokered TLS sessions resumed`);
      const bd = Object.fromEntries(Object.entries(segs).map(([k, v]) => [k, stats(v)]));
      breakdowns[s.variant] = bd;
      console.log(`  per-hop, floor ${s.variant} (ms: p50 / mean / p90)`);
      for (const [k, v] of Object.entries(bd)) console.log(`    ${k.padEnd(40)} ${v.p50} / ${v.mean} / ${v.p90}`);
    }
    out['breakdowns'] = breakdowns;
    out['samples'] = samples;
    mkdirSync('bench/results', { recursive: true });
    const file = `bench/results/brokering-floor-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, JSON.stringify(out, null, 1));
    console.log(`wrote ${file}`);
  } finally {
    for (const s of stacks) {
      s.agent.destroy();
      for (const r of s.roles) r.kill('SIGTERM');
      s.nats.kill('SIGTERM');
    }
    for (const o of others) o.kill('SIGTERM');
    for (const c of cleanups) await c();
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === 'A' || role === 'P' || role === 'B' || role === 'D') {
  child(role).catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  driver().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
