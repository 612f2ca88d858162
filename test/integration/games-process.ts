// Shared by the games integration tests: the real `games run` CLI from dist/, as a user starts it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { freePort } from '../helpers/ports.js';
import { DEV_CERTS, TestNatsServer } from '../helpers/nats-server.js';


export interface GamesProcessOptions {
  natsUrl: string;
  bucket: string;
  /** Serve the live inspector at /inspect. */
  inspector?: boolean;
  httpPort?: number;
  stunPort?: number;
  hostPollTimeoutMs?: number;
  sweepIntervalMs?: number;
  /** The proxy operator that relays peers which cannot punch; no relay section without it. */
  relayProxy?: string;
  /** The sd's JSON-RPC URL: with relayProxy, the rendezvous checks the proxy's grants against it. */
  directoryUrl?: string;
  /** The operator the rendezvous signs relay requests as (its certificate in settings/dev/certs). */
  operator?: string;
  /** games.maxGuests, games.maxGames and the per-window limits, when a test needs other limits. */
  limits?: {
    maxGuests?: number;
    maxGames?: number;
    registerLimit?: { max: number; windowMs: number };
    secretLimit?: { max: number; windowMs: number };
    badSecretLimit?: { max: number; windowMs: number };
    /** games.replicas: the copies JetStream keeps of each bucket (3 on a cluster). */
    replicas?: number;
  };
  /** How long start() waits for the REST port (10 s unless the test expects a slow start). */
  listenTimeoutMs?: number;
  /** More http settings (rateLimit), merged over host and port. */
  http?: Record<string, unknown>;
  /** More stun settings (rateLimit, software), merged over host and port. */
  stun?: Record<string, unknown>;
  /** relay.maxPerClient and relay.maxPerGame, when a test needs small caps. */
  relayCaps?: { maxPerClient: number; maxPerGame: number };
}

class PortTakenError extends Error {}

export class GamesProcess {
  private output = '';
  private constructor(
    readonly child: ChildProcess,
    readonly httpPort: number,
    readonly stunPort: number,
    readonly roleFolder: string,
  ) {
    child.stdout?.on('data', (d) => (this.output += d));
    child.stderr?.on('data', (d) => (this.output += d));
  }

  get log(): string {
    return this.output;
  }

  /**
   * Writes a role folder on free ports and starts `games run` with GAMES_SETTINGS and NATS_URL.
   * A port found free can be taken by another test file's process before games binds it (a
   * nats-server once answered a games test's requests): then games exits, and it is started
   * again on other ports, unless the test chose the ports.
   */
  static async start(opts: GamesProcessOptions, roleFolder?: string): Promise<GamesProcess> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await GamesProcess.startOnce(opts, roleFolder);
      } catch (err) {
        const taken = err instanceof PortTakenError && opts.httpPort === undefined && opts.stunPort === undefined;
        if (!taken || attempt >= 3) throw err;
      }
    }
  }

  private static async startOnce(opts: GamesProcessOptions, roleFolder?: string): Promise<GamesProcess> {
    const p = await GamesProcess.launch(opts, roleFolder);
    await p.listening(opts.listenTimeoutMs ?? 10_000);
    return p;
  }

  /**
   * Starts `games run` without waiting for it to serve: for a test that must see what a starting
   * instance says (and act on it) before it listens. `listening()` then waits for the port.
   */
  static async launch(opts: GamesProcessOptions, roleFolder?: string): Promise<GamesProcess> {
    const httpPort = opts.httpPort ?? (await freePort());
    const stunPort = opts.stunPort ?? (await freePort());
    const folder = roleFolder ?? mkdtempSync(join(tmpdir(), 'games-role-'));
    writeFileSync(
      join(folder, 'games.yml'),
      [
        `name: games-${httpPort}`,
        ...(opts.inspector ? ['inspector: { enabled: true }'] : []),
        `http: ${JSON.stringify({ host: '127.0.0.1', port: httpPort, ...opts.http })}`,
        `stun: ${JSON.stringify({ host: '127.0.0.1', port: stunPort, ...opts.stun })}`,
        // Deliberately wrong: NATS_URL must win, as for every process.
        'nats: { url: nats://127.0.0.1:1 }',
        // The games principal's certificate (or the operator a test signs relay requests as); the
        // test's nats-server must allow opts.bucket.
        `tls: { ca: ${DEV_CERTS}/root.crt, cert: ${DEV_CERTS}/${opts.operator ?? 'games-1'}.crt, key: ${DEV_CERTS}/${opts.operator ?? 'games-1'}.key }`,
        `games: ${JSON.stringify({ bucket: opts.bucket, hostPollTimeoutMs: opts.hostPollTimeoutMs ?? 30_000, sweepIntervalMs: opts.sweepIntervalMs ?? 5_000, ...opts.limits })}`,
        ...(opts.relayProxy
          ? [
              `relay: { proxy: ${opts.relayProxy}, timeoutMs: 2000${opts.relayCaps ? `, maxPerClient: ${opts.relayCaps.maxPerClient}, maxPerGame: ${opts.relayCaps.maxPerGame}` : ''} }`,
              `directory: { url: "${opts.directoryUrl ?? 'https://127.0.0.1:1/jsonrpc'}", serverName: sd-1 }`,
            ]
          : []),
      ].join('\n'),
    );
    const child = spawn(process.execPath, ['dist/src/cli/games.js', 'run'], {
      env: { ...process.env, GAMES_SETTINGS: folder, NATS_URL: opts.natsUrl, LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new GamesProcess(child, httpPort, stunPort, folder);
  }

  /** Waits for its own log line, not an open port: whoever else holds the port would pass a port check. */
  async listening(timeoutMs: number): Promise<void> {
    await this.untilLogged('"games http listening"', timeoutMs, `games run did not listen on ${this.httpPort}`);
  }

  /** Waits until the process has printed `text`; kills it and throws if it exits or the time runs out. */
  async untilLogged(text: string, timeoutMs: number, what = `games run did not print ${text}`): Promise<void> {
    const child = this.child;
    const deadline = Date.now() + timeoutMs;
    while (!this.log.includes(text)) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        const why = `${what}\n${this.log}`;
        throw this.log.includes('EADDRINUSE') ? new PortTakenError(why) : new Error(why);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    return new Promise((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.kill(signal);
    });
  }

  /** A request from another loopback source address (127.0.0.2, ...): the API sees another client. */
  requestFrom(
    localAddress: string,
    method: string,
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: Record<string, any> | undefined }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers = payload ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...extraHeaders } : extraHeaders;
      const req = httpRequest(
        { host: '127.0.0.1', port: this.httpPort, method, path, localAddress, headers },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, any>) : undefined }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(`http://127.0.0.1:${this.httpPort}${path}`, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
  }
}

/**
 * A test file's nats-server and its `games run` processes: the server starts before the file's
 * tests and allows `maxBuckets` buckets (one per test: `bucket()`), the processes a test started
 * stop after it.
 */
export function gamesBed(label: string, maxBuckets: number) {
  let nats: TestNatsServer | undefined;
  const running: GamesProcess[] = [];
  let seq = 0;
  const bucketName = (n: number) => `GAMES_${label}${process.pid}_${n}`;
  beforeAll(async () => {
    nats = await TestNatsServer.start({ buckets: Array.from({ length: maxBuckets }, (_, i) => bucketName(i + 1)) });
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop()));
  });
  afterAll(async () => {
    await nats?.stop();
  });
  const server = () => {
    if (!nats) throw new Error('the nats-server starts in beforeAll');
    return nats;
  };
  return {
    get nats() {
      return server();
    },
    bucket(): string {
      if (seq >= maxBuckets) throw new Error('raise maxBuckets: the nats-server allows only that many buckets');
      return bucketName(++seq);
    },
    async start(opts: Omit<GamesProcessOptions, 'natsUrl'>, folder?: string): Promise<GamesProcess> {
      const p = await GamesProcess.start({ natsUrl: server().url, ...opts }, folder);
      running.push(p);
      return p;
    },
  };
}
