import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { recordDataSchema } from '../../src/directory/types.js';
import { freePort } from './ports.js';
import { waitForPort } from '../../src/devstack/stack.js';
import { connectBus } from '../../src/core/nats.js';
import { packageRoot } from '../../src/core/package-root.js';
import { readTlsMaterial, type TlsMaterial } from '../../src/core/tls-material.js';
import { DEFAULT_BUS_ADMIN, DEFAULT_GAMES_ADMIN, writeNatsConfig } from '../../src/natsconf/generate.js';
import type { BusPrincipal } from '../../src/natsconf/policy.js';

export const NATS_SERVER_BIN = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => existsSync(p)) ?? 'nats-server';
export const DEV_SETTINGS = join(packageRoot, 'settings/dev');
export const DEV_CERTS = join(DEV_SETTINGS, 'certs');
/** The bus admins of the dev PKI: every right in their account (OPS, GAMES), for test setup and inspection. */
export const BUS_ADMIN = DEFAULT_BUS_ADMIN;
export const GAMES_ADMIN = DEFAULT_GAMES_ADMIN;

const silent = pino({ level: 'silent' });

/** The dev certificate of a principal (settings/dev/certs/<name>.crt), as its processes hold it. */
export function devMaterial(principal: string): TlsMaterial {
  return readTlsMaterial({ ca: join(DEV_CERTS, 'root.crt'), cert: join(DEV_CERTS, `${principal}.crt`), key: join(DEV_CERTS, `${principal}.key`) });
}

export interface TestNatsOptions {
  /** Directory streams and games buckets this file uses besides the dev roles' (EPS_SD_RECORDS, EPS_GAMES). */
  streams?: string[];
  buckets?: string[];
  /** Directory records (YAML, as sd-setup reads them) a test submits besides the dev ones: the
   *  bus's rights follow the directory, so the server must know them too. */
  records?: string;
  /** Default true; false runs the server without JetStream, as `nats-server` without `-js` (a newcomer's mistake). */
  jetstream?: boolean;
}

/**
 * Writes `<dir>/nats.conf` as `make nats-config` does for the dev settings, on `port` with its
 * JetStream store in `<dir>/store`; returns the file and the principals it configures.
 */
export function writeTestNatsConfig(dir: string, port: number, opts: TestNatsOptions = {}): { configFile: string; storeDir: string; principals: BusPrincipal[] } {
  const storeDir = join(dir, 'store');
  const configFile = join(dir, 'nats.conf');
  const principals = writeNatsConfig(configFile, {
    settings: DEV_SETTINGS,
    host: '127.0.0.1',
    port,
    storeDir,
    admins: [BUS_ADMIN],
    gamesAdmins: [GAMES_ADMIN],
    extraStreams: opts.streams ?? [],
    extraBuckets: opts.buckets ?? [],
    extraRecords: opts.records ? z.array(recordDataSchema).parse(parseYaml(opts.records)) : [],
  });
  return { configFile, storeDir, principals };
}

/**
 * A real nats-server on a free port with the configuration `make nats-config` generates from the
 * dev directory and roles (TLS, client certificates mapped to principals, least privilege), its
 * own JetStream store, owned by one test file so it can be killed and restarted (same port, same
 * store) to test what a bus outage does.
 */
export class TestNatsServer {
  readonly port: number;
  readonly storeDir: string;
  readonly configFile: string;
  /** The principals and rights the server was configured with. */
  readonly principals: BusPrincipal[];
  private child: ChildProcess | undefined;
  private readonly dir: string;

  private constructor(port: number, dir: string, opts: TestNatsOptions) {
    this.port = port;
    this.dir = dir;
    ({ configFile: this.configFile, storeDir: this.storeDir, principals: this.principals } = writeTestNatsConfig(dir, port, opts));
    if (opts.jetstream === false) {
      const config = readFileSync(this.configFile, 'utf8').replace(/^jetstream \{[^}]*\}\n/m, '').replace(/^\s*jetstream: enabled\n/gm, '');
      writeFileSync(this.configFile, config);
    }
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  static async start(opts: TestNatsOptions = {}): Promise<TestNatsServer> {
    const server = new TestNatsServer(await freePort(), mkdtempSync(join(tmpdir(), 'eps-nats-')), opts);
    await server.restart();
    return server;
  }

  principal(name: string): BusPrincipal | undefined {
    return this.principals.find((p) => p.name === name);
  }

  /** Connects as `principal` with its dev certificate, exactly as its processes do (connectBus). */
  connectAs(principal: string, name = `test:${principal}`): Promise<NatsConnection> {
    return connectBus({ url: this.url, name, tls: devMaterial(principal) }, silent);
  }

  /**
   * A bus admin, for setup and for looking at what the others did: OPS's (the directory stream,
   * every operator's subjects) or GAMES's (the games bucket). Each sees only its own account.
   */
  admin(account: 'ops' | 'games' = 'ops'): Promise<NatsConnection> {
    return this.connectAs(account === 'games' ? GAMES_ADMIN : BUS_ADMIN);
  }

  /** A client as an attacker makes it: whatever credentials it has, no retries. */
  connectRaw(opts: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
    return connect({ servers: this.url, maxReconnectAttempts: 0, timeout: 3000, ...opts });
  }

  async restart(): Promise<void> {
    if (this.child) await this.kill();
    this.child = spawn(NATS_SERVER_BIN, ['-c', this.configFile], { stdio: 'ignore' });
    await waitForPort(this.port, 10_000);
  }

  /** SIGSTOP: the server holds its connections open and answers nothing, like a hung host. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  /** SIGKILL, like a crash: clients see the connection drop without a goodbye. */
  async kill(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
