import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { connect, createServer } from 'node:net';
import { createSocket as createUdpSocket } from 'node:dgram';
import { packageRoot } from '../core/package-root.js';
import { PROXY_NODE_FLAGS } from '../proxy/node-flags.js';

// Starts the demo's processes exactly as the seed's five shells do (`sd run`, `proxy run public`,
// `eps server run`, then sd-setup), each a child process with its settings variable. `make demo`
// uses it on the dev ports; tests use it on free ports by adding an override folder after each
// role folder, which the settings loader merges last.

export interface StackPorts {
  sd: number;
  jsonrpc: number;
  splice: number;
  metrics: number;
  /** games run: its REST port, and STUN on UDP. */
  games: number;
  stun: number;
  /** The second proxy and games instance of the cluster profile (make demo-cluster), when they run. */
  second?: { splice: number; metrics: number; games: number; stun: number };
}

export const DEV_PORTS: StackPorts = { sd: 3322, jsonrpc: 5555, splice: 9999, metrics: 9191, games: 8000, stun: 3478 };

/** Who listens on each of the stack's ports, and the setting that moves it (README "Ports"). */
export const PORT_OWNERS: Record<Exclude<keyof StackPorts, 'second'>, { process: string; setting: string; role: RoleName; protocol: 'tcp' | 'udp' }> = {
  sd: { process: 'sd run', setting: 'listen.port', role: 'sd-1', protocol: 'tcp' },
  jsonrpc: { process: 'eps server run (hd-1)', setting: 'jsonrpc.listen.port', role: 'hd-1', protocol: 'tcp' },
  splice: { process: 'proxy run public', setting: 'splice.listen.port', role: 'public-proxy-1', protocol: 'tcp' },
  metrics: { process: 'proxy run public', setting: 'metrics.port', role: 'public-proxy-1', protocol: 'tcp' },
  games: { process: 'games run', setting: 'http.port', role: 'games-1', protocol: 'tcp' },
  stun: { process: 'games run', setting: 'stun.port', role: 'games-1', protocol: 'udp' },
};

/** The second instances' ports and who holds them (settings/cluster/roles/<role>). */
export const SECOND_PORT_OWNERS: Record<keyof NonNullable<StackPorts['second']>, { process: string; setting: string; role: RoleName; protocol: 'tcp' | 'udp' }> = {
  splice: { process: 'proxy run public (public-proxy-2)', setting: 'splice.listen.port', role: 'public-proxy-2', protocol: 'tcp' },
  metrics: { process: 'proxy run public (public-proxy-2)', setting: 'metrics.port', role: 'public-proxy-2', protocol: 'tcp' },
  games: { process: 'games run (games-2)', setting: 'http.port', role: 'games-2', protocol: 'tcp' },
  stun: { process: 'games run (games-2)', setting: 'stun.port', role: 'games-2', protocol: 'udp' },
};

/** The stack's ports that something else already holds, each described for the user. */
export async function busyPorts(ports: StackPorts): Promise<string[]> {
  const busy: string[] = [];
  for (const [key, port] of Object.entries(ports.second ?? {}) as [keyof typeof SECOND_PORT_OWNERS, number][]) {
    const owner = SECOND_PORT_OWNERS[key];
    if (await portTaken(port, owner.protocol)) {
      busy.push(`port ${port}/${owner.protocol} (${owner.process}: ${owner.setting} in settings/cluster/roles/${owner.role}) is in use by another process`);
    }
  }
  for (const key of Object.keys(ports).filter((k) => k !== 'second') as Exclude<keyof StackPorts, 'second'>[]) {
    const owner = PORT_OWNERS[key];
    if (await portTaken(ports[key], owner.protocol)) {
      busy.push(`port ${ports[key]}/${owner.protocol} (${owner.process}: ${owner.setting} in settings/dev/roles/${owner.role}) is in use by another process`);
    }
  }
  return busy;
}

export function portTaken(port: number, protocol: 'tcp' | 'udp'): Promise<boolean> {
  return new Promise((resolve) => {
    if (protocol === 'udp') {
      const socket = createUdpSocket('udp4');
      socket.once('error', () => resolve(true));
      socket.bind(port, '0.0.0.0', () => socket.close(() => resolve(false)));
      return;
    }
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(false)));
  });
}

export interface StackOptions {
  /** NATS_URL of every child: one URL, or a cluster's, comma-separated. */
  natsUrl: string;
  /** A role's own NATS_URL instead (the cluster profile: its home node first). */
  natsUrlOf?: (role: RoleName) => string;
  /**
   * A settings folder whose `roles/<role>/` is merged after the dev role and before the stack's
   * ports: `settings/cluster` (replicas, the nodes of the bus, the second instances' own ports).
   */
  profile?: string;
  ports: StackPorts;
  /** Where each process's output goes (one file per process); defaults to a temp folder. */
  logDir?: string;
  /** Extra settings merged into every role, e.g. short timeouts for tests. */
  overrides?: Partial<Record<RoleName, string>>;
  /** Inherit stdio instead of writing log files (the demo in a terminal). */
  inheritOutput?: boolean;
  /** Options for node itself, per role (benches: `--cpu-prof`, which NODE_OPTIONS refuses). */
  nodeArgs?: Partial<Record<RoleName, string[]>>;
  /** Keep the previous run's logDir as `<logDir>.1` and start empty (the demo). */
  rotateLogs?: boolean;
  /**
   * Each child in a process group of its own (the demo): Ctrl-C in the terminal then reaches the
   * demo alone, which stops each child with one SIGTERM. Tests leave it off, so that children
   * of a test process killed outright go with its group rather than linger.
   */
  ownProcessGroups?: boolean;
}

/** What a child wrote last on stderr, kept to explain an early exit. */
const STDERR_TAIL_LINES = 5;

export type RoleName = 'sd-1' | 'public-proxy-1' | 'hd-1' | 'hd-2' | 'public-proxy-eps-1' | 'public-proxy-hyper-1' | 'games-1' | 'public-proxy-2' | 'games-2';

/**
 * A second instance of a process runs the first one's dev role (the same operator, certificate
 * and bus rights) with the cluster profile's folder of its own on top: its name and ports.
 */
const BASE_ROLE: Partial<Record<RoleName, RoleName>> = { 'public-proxy-2': 'public-proxy-1', 'games-2': 'games-1' };

/** `node` lists the Node flags a role's process is started with in production too. */
const COMMANDS: Record<RoleName, { bin: string; args: string[]; env: string; node?: readonly string[] }> = {
  'sd-1': { bin: 'sd', args: ['run'], env: 'SD_SETTINGS' },
  'public-proxy-1': { bin: 'proxy', args: ['run', 'public'], env: 'PROXY_SETTINGS', node: PROXY_NODE_FLAGS },
  'hd-1': { bin: 'eps', args: ['server', 'run'], env: 'EPS_SETTINGS' },
  'hd-2': { bin: 'eps', args: ['server', 'run'], env: 'EPS_SETTINGS' },
  'public-proxy-eps-1': { bin: 'eps', args: ['server', 'run'], env: 'EPS_SETTINGS' },
  // The Hyper edition of the seed: same server, its own bin and settings variable.
  'public-proxy-hyper-1': { bin: 'hyper', args: ['server', 'run'], env: 'HYPER_SETTINGS' },
  'games-1': { bin: 'games', args: ['run'], env: 'GAMES_SETTINGS' },
  'public-proxy-2': { bin: 'proxy', args: ['run', 'public'], env: 'PROXY_SETTINGS', node: PROXY_NODE_FLAGS },
  'games-2': { bin: 'games', args: ['run'], env: 'GAMES_SETTINGS' },
};

/** The file a bin names in package.json: what `npx <bin>` runs. */
function binPath(bin: string): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const file = pkg.bin[bin];
  if (!file) throw new Error(`package.json has no bin ${bin}`);
  return join(packageRoot, file);
}

export class DevStack {
  readonly logDir: string;
  private readonly ownsLogDir: boolean;
  private readonly overrideDir: string;
  private readonly children = new Map<RoleName, ChildProcess>();
  private readonly stderrTails = new Map<RoleName, string[]>();

  constructor(readonly opts: StackOptions) {
    this.ownsLogDir = opts.logDir === undefined;
    this.logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'eps-stack-'));
    if (opts.rotateLogs && existsSync(this.logDir)) {
      rmSync(`${this.logDir}.1`, { recursive: true, force: true });
      renameSync(this.logDir, `${this.logDir}.1`);
    }
    mkdirSync(this.logDir, { recursive: true });
    this.overrideDir = mkdtempSync(join(tmpdir(), 'eps-overrides-'));
  }

  get sdUrl(): string {
    return `https://127.0.0.1:${this.opts.ports.sd}/jsonrpc`;
  }

  /** The settings folders for a role: the dev role, then this stack's port overrides. */
  roleFolders(role: RoleName): string {
    const { ports } = this.opts;
    const dir = join(this.overrideDir, role);
    mkdirSync(dir, { recursive: true });
    const directory = `directory: { url: "${this.sdUrl}", serverName: sd-1 }\n`;
    const second = ports.second;
    const byRole: Record<RoleName, string> = {
      'sd-1': `listen: { host: 127.0.0.1, port: ${ports.sd} }\n`,
      'public-proxy-1':
        directory +
        `splice: { listen: { host: 127.0.0.1, port: ${ports.splice} }, endpoint: "127.0.0.1:${ports.splice}" }\n` +
        `metrics: { host: 127.0.0.1, port: ${ports.metrics} }\n`,
      'hd-1': directory + `jsonrpc: { listen: { host: 127.0.0.1, port: ${ports.jsonrpc} } }\n`,
      'hd-2': directory,
      'public-proxy-eps-1': directory,
      'public-proxy-hyper-1': directory,
      // Ports only: the dev role's hosts (every interface) stay, as a rendezvous faces peers.
      'games-1': directory + `http: { port: ${ports.games} }\nstun: { port: ${ports.stun} }\n`,
      'public-proxy-2':
        directory +
        (second
          ? `splice: { listen: { host: 127.0.0.1, port: ${second.splice} }, endpoint: "127.0.0.1:${second.splice}" }\n` +
            `metrics: { host: 127.0.0.1, port: ${second.metrics} }\n`
          : ''),
      'games-2': directory + (second ? `http: { port: ${second.games} }\nstun: { port: ${second.stun} }\n` : ''),
    };
    writeFileSync(join(dir, '50-ports.yml'), byRole[role]);
    writeFileSync(join(dir, '60-overrides.yml'), this.opts.overrides?.[role] ?? '');
    return [...this.settingsOf(role).split(':').map((f) => join(packageRoot, f)), dir].join(':');
  }

  start(role: RoleName): ChildProcess {
    const cmd = COMMANDS[role];
    const child = spawn(process.execPath, [...(cmd.node ?? []), ...(this.opts.nodeArgs?.[role] ?? []), binPath(cmd.bin), ...cmd.args], {
      cwd: packageRoot,
      env: { ...process.env, NATS_URL: this.opts.natsUrlOf?.(role) ?? this.opts.natsUrl, [cmd.env]: this.roleFolders(role), LOG_FORMAT: 'json' },
      stdio: this.opts.inheritOutput ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
      detached: this.opts.ownProcessGroups ?? false,
    });
    const tail: string[] = [];
    this.stderrTails.set(role, tail);
    if (!this.opts.inheritOutput) {
      const out = createWriteStream(join(this.logDir, `${role}.log`), { flags: 'a' });
      child.stdout!.pipe(out);
      child.stderr!.pipe(out);
      child.stderr!.on('data', (chunk: Buffer) => {
        tail.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        tail.splice(0, Math.max(0, tail.length - STDERR_TAIL_LINES));
      });
    }
    this.children.set(role, child);
    return child;
  }

  /**
   * Waits until `role` listens on `port`; fails at once, with what the child said on stderr, if
   * it exits first (a busy port, a bus without JetStream), rather than at the timeout.
   */
  async waitUntilListening(role: RoleName, port: number, timeoutMs: number): Promise<void> {
    const child = this.children.get(role);
    const exited = new Promise<never>((_, reject) => {
      const explain = (code: number | null, signal: NodeJS.Signals | null) => {
        const said = this.stderrTails.get(role)?.join('\n') || '(nothing on stderr)';
        reject(new Error(`${role} exited (${signal ?? `code ${code}`}) before listening on ${port}:\n${said}`));
      };
      if (!child) return reject(new Error(`${role} was not started`));
      if (child.exitCode !== null || child.signalCode !== null) explain(child.exitCode, child.signalCode);
      else child.once('exit', explain);
    });
    exited.catch(() => undefined);
    await Promise.race([waitForPort(port, timeoutMs), exited]);
  }

  /** Signs and submits the dev directory records, as `make sd-setup` does. */
  async sdSetup(): Promise<void> {
    const child = spawn(process.execPath, [join(packageRoot, 'dist/src/cli/sd-setup.js')], {
      cwd: packageRoot,
      env: { ...process.env, SD_URL: this.sdUrl },
      stdio: this.opts.inheritOutput ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (d) => (output += d));
    child.stderr?.on('data', (d) => (output += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`sd-setup exited with ${code}: ${output}`);
  }

  /** The role folders a role runs with, as a user would type them (without the stack's port overrides). */
  settingsOf(role: RoleName): string {
    const profile = this.opts.profile ? join(this.opts.profile, 'roles', role) : undefined;
    const base = join(packageRoot, 'settings/dev/roles', BASE_ROLE[role] ?? role);
    return [base, ...(profile && existsSync(profile) ? [profile] : [])].map((f) => relative(packageRoot, f)).join(':');
  }

  async startAll(order: RoleName[] = ['sd-1', 'public-proxy-1', 'hd-1', 'hd-2', 'public-proxy-eps-1']): Promise<void> {
    for (const role of order) this.start(role);
    await this.waitUntilListening('sd-1', this.opts.ports.sd, 20_000);
  }

  child(role: RoleName): ChildProcess | undefined {
    return this.children.get(role);
  }

  /** Stops one process the way Ctrl-C does, or kills it outright (a crash). */
  async stopRole(role: RoleName, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.children.get(role);
    this.children.delete(role);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => child.kill('SIGKILL'), 6000);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill(signal);
    });
  }

  /** Stops every process and removes the stack's temporary folders (its logs too, unless given). */
  async stop(): Promise<void> {
    await Promise.all([...this.children.keys()].map((role) => this.stopRole(role)));
    rmSync(this.overrideDir, { recursive: true, force: true });
    if (this.ownsLogDir) rmSync(this.logDir, { recursive: true, force: true });
  }

  /** Last resort when the owner exits without stop(): the children are in their own groups. */
  killAll(): void {
    for (const child of this.children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  }
}

export async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
