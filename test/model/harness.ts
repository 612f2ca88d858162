import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import { connect as tcpConnect, createServer, type Server, type Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import type { InspectionEvent } from 'xstate';
import { Bus } from '../../src/bus/bus.js';
import { connectBus } from '../../src/core/nats.js';
import { BUS_ADMIN, devMaterial } from '../helpers/nats-server.js';
import { createSigner } from '../../src/bus/envelope.js';
import { encodePreamble, signProof, type Leg } from '../../src/core/splice-wire.js';
import { readTlsMaterial, type TlsMaterial } from '../../src/core/tls-material.js';
import type { DirectoryEntry } from '../../src/directory/types.js';
import { ConnectionRequests } from '../../src/proxy/connection-requests.js';
import { countRejections, createProxyMetrics, registryMetricHooks, type ProxyMetrics } from '../../src/proxy/metrics.js';
import { SessionRegistry, type OpenedSession } from '../../src/proxy/session-registry.js';
import { SpliceEndpoint, type RejectReason } from '../../src/proxy/splice-endpoint.js';

// Real pieces on real sockets for the model tests: a nats-server (started per file), signed buses,
// the proxy wired as src/proxy/public-proxy.ts wires it (minus the signed directory service,
// replaced by an in-memory view per party), and the network oddities the paths need.

export const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });
export const CERTS = 'settings/dev/certs';
export const PROXY = 'public-proxy-eps-1';
export const A = 'hd-1';
export const B = 'hd-2';

const material = (name: string): TlsMaterial =>
  readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/${name}.crt`, key: `${CERTS}/${name}.key` });
export const TLS: Record<string, TlsMaterial> = { [A]: material(A), [B]: material(B), [PROXY]: material(PROXY) };

/** One party's view of the service directory; each party gets its own so a path can skew one. */
export class Directory {
  readonly entries = new Map<string, DirectoryEntry>();
  permit: (caller: string, target: string, method: string) => boolean = () => true;

  constructor() {
    for (const [name, tls] of Object.entries(TLS)) {
      this.entries.set(name, {
        name,
        certificate: tls.cert.toString(),
        fingerprint: tls.fingerprint,
        channels: name === B ? [{ type: 'grpc_server', proxy: PROXY }] : [],
        groups: [],
        services: [],
      });
    }
  }

  entry(name: string): DirectoryEntry | undefined {
    return this.entries.get(name);
  }

  isPermitted(caller: string, target: string, method: string): boolean {
    return this.permit(caller, target, method);
  }

  /** Replaces `name`'s gRPC channel (or removes it with `undefined`). */
  setChannel(name: string, channel: { address?: string; proxy?: string } | undefined): void {
    const entry = this.entries.get(name)!;
    entry.channels = channel ? [{ type: 'grpc_server', ...channel }] : [];
  }
}

/**
 * Each party connects as its own principal on the secured bus, so the paths run under the rights
 * the generated configuration gives them. BUS_ADMIN stands in where a path needs a party the bus
 * itself would refuse, to reach the check behind it.
 */
export function connectNats(url: string, principal: string): Promise<NatsConnection> {
  return connectBus({ url, name: `model-test:${principal}`, tls: devMaterial(principal) }, log);
}
export { BUS_ADMIN };

export function makeBus(nc: NatsConnection, operator: string, directory: Directory, requestTimeoutMs = 5_000): Bus {
  return new Bus({
    nc,
    signer: createSigner(operator, TLS[operator]!.key),
    directory,
    log,
    maxAgeMs: 30_000,
    maxBytes: 256 * 1024,
    requestTimeoutMs,
  });
}

interface TraceEntry {
  event: string;
  leaf: string;
  status: string;
  output: unknown;
}

export function leafOf(value: unknown): string {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value as Record<string, unknown>)[0]!;
  return `${key}.${leafOf(child)}`;
}

/**
 * What one real actor did, from xstate's inspection hook: every event it processed and the state
 * it was in afterwards. Paths are checked against this, so a step only passes when the REAL
 * machine took that transition, not merely when the outside looked right.
 */
export class Trace {
  readonly entries: TraceEntry[] = [];
  #root: string | undefined;
  #cursor = 0;
  current: string;

  constructor(initial: string) {
    this.current = initial;
  }

  inspect = (ev: InspectionEvent): void => {
    if (ev.type !== '@xstate.snapshot' || ev.actorRef.sessionId !== ev.rootId) return;
    // One actor per case; a second root (a retry, a second session) would be a different story.
    // Followed by its id, not its xstate session: a parked brokering actor is revived under the
    // same id (src/proxy/session-registry.ts) and goes on with the same session.
    const id = (ev.actorRef as unknown as { id: string }).id;
    this.#root ??= id;
    if (id !== this.#root) return;
    const snap = ev.snapshot as unknown as { value: unknown; status: string; output?: unknown };
    this.entries.push({ event: ev.event.type, leaf: leafOf(snap.value), status: snap.status, output: snap.output });
  };

  get last(): TraceEntry | undefined {
    return this.entries.at(-1);
  }

  dump(): string {
    return this.entries.map((e, i) => `${i === this.#cursor ? '>' : ' '} ${e.event} → ${e.leaf}`).join('\n');
  }

  /** Waits for the actor to process `eventType` and land in `leaf`, with no other state change first. */
  async expect(eventType: string, leaf: string, ms = 3_000): Promise<TraceEntry> {
    const until = Date.now() + ms;
    for (;;) {
      while (this.#cursor < this.entries.length) {
        const e = this.entries[this.#cursor++]!;
        if (e.event === eventType) {
          if (e.leaf !== leaf) throw new Error(`${eventType} led to ${e.leaf}, the model says ${leaf}\n${this.dump()}`);
          this.current = leaf;
          return e;
        }
        if (e.leaf !== this.current) throw new Error(`unexpected ${e.event} → ${e.leaf} while waiting for ${eventType}\n${this.dump()}`);
      }
      if (Date.now() > until) throw new Error(`no ${eventType} → ${leaf} within ${ms} ms\n${this.dump()}`);
      await sleep(5);
    }
  }

  /** For stimuli src stops before the machine: nothing may reach the actor. */
  async expectNothing(ms = 50): Promise<void> {
    await sleep(ms);
    if (this.#cursor < this.entries.length) throw new Error(`the machine saw an event it should not have\n${this.dump()}`);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitUntil(check: () => boolean, what: string, ms = 3_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}

export function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Settles to a value either way, so a test can look at a rejection without racing it. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: { code?: number; message: string } };
export function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: { code?: number; message: string }) => ({ ok: false as const, error }),
  );
}

/** What a leg's real dialer sends: its token and its proof, signed with `signer`'s operator key. */
export function legPreamble(
  pass: { sessionId: string; token: Buffer; challenge: Buffer },
  leg: Leg,
  opts: { signer?: string; proxy?: string; sessionId?: string; proofLeg?: Leg; challenge?: Buffer } = {},
): Buffer {
  const signer = opts.signer ?? (leg === 'a' ? A : B);
  const proof = signProof(createPrivateKey(TLS[signer]!.key), {
    proxy: opts.proxy ?? PROXY,
    sessionId: opts.sessionId ?? pass.sessionId,
    leg: opts.proofLeg ?? leg,
    token: pass.token,
    challenge: opts.challenge ?? pass.challenge,
  });
  return encodePreamble(pass.token, proof);
}

/** A leg's pass as the registry opened it (what B and A are sent, or what a thief might hold). */
export const passOf = (opened: Pick<OpenedSession, 'sessionId' | 'tokens' | 'challenge'>, leg: Leg) => ({
  sessionId: opened.sessionId,
  token: opened.tokens[leg],
  challenge: opened.challenge,
});

/** A client socket, tracked so a case can assert the far side closed it. */
export class Dialer {
  readonly sockets: Socket[] = [];

  async dial(port: number, bytes: Buffer): Promise<Socket> {
    const socket = tcpConnect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    socket.on('error', () => {});
    this.sockets.push(socket);
    await once(socket, 'connect');
    socket.write(bytes);
    return socket;
  }

  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }
}

/** Resolves once the far side closed (FIN or RST) a half-open client socket. */
export function closedByFarSide(socket: Socket): Promise<void> {
  if (socket.closed || socket.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    socket.once('end', resolve);
    socket.once('close', resolve);
    socket.resume();
  });
}



/**
 * A port whose TCP handshake never completes: a listener with a full accept queue drops further
 * SYNs, so a connect hangs until its own timeout, which is what a black-holed route looks like.
 * Node always accepts, hence the small Python listener. release() lets the hung connects
 * through (at their next SYN retransmission), so a test can see what a late dial does.
 */
export class Blackhole {
  accepted = 0;
  ended = 0;
  private constructor(
    readonly port: number,
    private readonly child: ChildProcess,
    private readonly filler: Socket,
  ) {}

  static async start(): Promise<Blackhole> {
    const script = [
      'import socket,sys,threading',
      's=socket.socket()',
      's.bind(("127.0.0.1",0))',
      's.listen(0)',
      'print(s.getsockname()[1],flush=True)',
      'sys.stdin.readline()',
      'def watch(c):',
      '  while c.recv(4096): pass',
      '  print("ended",flush=True)',
      'while True:',
      '  c,_=s.accept()',
      '  print("accepted",flush=True)',
      '  threading.Thread(target=watch,args=(c,),daemon=True).start()',
    ].join('\n');
    const child = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
    const filler = tcpConnect({ host: '127.0.0.1', port });
    filler.on('error', () => {});
    await once(filler, 'connect');
    const hole = new Blackhole(port, child, filler);
    child.stdout!.on('data', (d) => {
      for (const line of String(d).split('\n')) {
        if (line === 'accepted') hole.accepted++;
        if (line === 'ended') hole.ended++;
      }
    });
    return hole;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Drains the queue (the filler ends at once), so dials still retrying get through. */
  release(): void {
    this.filler.destroy();
    this.child.stdin!.write('go\n');
  }

  /**
   * Until the dialer's SYN is out (the kernel holds it in SYN-SENT, retrying): a path that cancels
   * the dial must cancel one that really started, not one still on its way to connect().
   */
  async dialInFlight(): Promise<void> {
    const synSent = () => {
      try {
        return execFileSync('ss', ['-Htn', 'state', 'syn-sent', 'dst', `127.0.0.1:${this.port}`]).toString().trim() !== '';
      } catch {
        return false;
      }
    };
    await waitUntil(synSent, 'the dial to the black hole started', 5_000);
  }

  /** After the dialer gave up: its late connection must be closed by the dialer, not kept. */
  async lateDialClosed(): Promise<void> {
    this.release();
    // The filler plus the one dial the path made. SYN retries back off (1, 2, 4, 8 s apart), so a
    // slow machine that releases the queue late may wait up to 8 s for the next retry.
    await waitUntil(() => this.accepted >= 2, 'the late dial got through', 20_000);
    await waitUntil(() => this.ended === this.accepted, 'the late connection was closed by its dialer', 2_000);
  }

  async stop(): Promise<void> {
    this.filler.destroy();
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGKILL');
    await exited;
  }
}

/** A TCP server with a hook per accepted socket; its sockets are tracked for the final checks. */
export class TcpServer {
  readonly sockets: Socket[] = [];
  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(onSocket: (s: Socket) => void): Promise<TcpServer> {
    let self!: TcpServer;
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
      s.on('error', () => {});
      self.sockets.push(s);
      onSocket(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new TcpServer(server, (server.address() as { port: number }).port);
    return self;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** Pipes to `target`; cut() is the network dropping the connection mid-flight. */
export async function startRelay(target: number): Promise<TcpServer & { cut(): void }> {
  const upstream: Socket[] = [];
  const relay = await TcpServer.start((s) => {
    const up = tcpConnect({ host: '127.0.0.1', port: target, noDelay: true });
    up.on('error', () => s.destroy());
    upstream.push(up);
    s.pipe(up).pipe(s);
    s.once('close', () => up.destroy());
    up.once('close', () => s.destroy());
  });
  return Object.assign(relay, {
    cut() {
      for (const s of [...relay.sockets, ...upstream]) s.destroy();
    },
  });
}

/** A port nobody listens on (connects are refused). */
export async function closedPort(): Promise<string> {
  const srv = await TcpServer.start(() => {});
  await srv.stop();
  return srv.address;
}

export interface ProxyOptions {
  nc: NatsConnection;
  directory: Directory;
  bDialMs: number;
  aDialMs: number;
  busRequestMs: number;
  trace: Trace;
}

/**
 * P as src/proxy/public-proxy.ts wires it: session registry, splice endpoint, connection
 * requests on the bus, metrics. `confirmGate` lets a path hold a session in bConnected: the
 * confirmation to A waits until the path says it is delivered (or fails).
 */
export class ProxyHarness {
  readonly rejections: RejectReason[] = [];
  readonly sessions: OpenedSession[] = [];
  readonly metrics: ProxyMetrics;
  readonly registry: SessionRegistry;
  readonly bus: Bus;
  endpoint!: SpliceEndpoint;
  requests!: ConnectionRequests;
  port = 0;
  readonly gate = { hold: false, pending: deferred() };
  #closed = false;

  private constructor(readonly opts: ProxyOptions) {
    this.bus = makeBus(opts.nc, PROXY, opts.directory, opts.busRequestMs);
    this.metrics = createProxyMetrics({ liveSessions: () => this.registry.liveCount() });
    this.registry = new SessionRegistry({
      log,
      operator: PROXY,
      certificateOf: (operator) => opts.directory.entry(operator),
      timeouts: { bDialMs: opts.bDialMs, aDialMs: opts.aDialMs },
      inspect: opts.trace.inspect,
      ...registryMetricHooks(this.metrics),
    });
  }

  static async start(opts: ProxyOptions): Promise<ProxyHarness> {
    const p = new ProxyHarness(opts);
    p.endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, preambleTimeoutMs: 1_000, route: (pre, s, r) => p.registry.route(pre, s, r) });
    countRejections(p.metrics, p.endpoint);
    p.endpoint.on('rejected', (r) => p.rejections.push(r));
    p.port = (await p.endpoint.listen()).port;
    // The announced endpoint is only known once the endpoint listens on its free port.
    p.requests = new ConnectionRequests({
      operator: PROXY,
      endpoint: `127.0.0.1:${p.port}`,
      bDialMs: opts.bDialMs,
      bus: p.bus,
      directory: opts.directory,
      log,
      // ConnectionRequests' own messengers, with the gate in front of the confirmation.
      open: (r, via) => {
        const s = p.registry.open(r, {
          ...via,
          messengers: {
            notifyB: via.messengers.notifyB,
            confirmToA: async (session, pass) => {
              if (p.gate.hold) await p.gate.pending.promise;
              return via.messengers.confirmToA(session, pass);
            },
          },
        });
        p.sessions.push(s);
        return s;
      },
    });
    p.bus.serve('connectionRequest', p.requests.handle);
    return p;
  }

  async sessionCount(outcome: string): Promise<number> {
    return (await this.metrics.sessions.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  }

  async splicedCount(): Promise<number> {
    return (await this.metrics.spliced.get()).values[0]?.value ?? 0;
  }

  /** public-proxy's close order: stop taking requests, end every session, then the endpoint. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.bus.close();
    await this.registry.shutdown();
    await this.endpoint.close();
  }
}
