import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { connectBus, type NatsConnection } from '../core/nats.js';
import { packageRoot } from '../core/package-root.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { clusterUrls, writeClusterConfigs, type ClusterNode } from '../natsconf/cluster.js';
import { DEFAULT_BUS_ADMIN } from '../natsconf/generate.js';
import { distinctFreePorts } from './free-port.js';
import { waitForJetStream } from './jetstream-ready.js';
import { waitForPort } from './stack.js';

// The cluster profile's bus for a run that kills its nodes (the chaos run): N nats-servers with
// the configuration `nats-config --cluster N` generates from the dev settings, on free ports, each
// with its own store in a temporary folder, so a node killed like a crash restarts on its own
// JetStream state and rejoins, as a node of a real deployment does.

export class NatsNodes {
  private readonly children = new Map<number, ChildProcess>();

  private constructor(
    readonly nodes: ClusterNode[],
    private readonly dir: string,
    private readonly bin: string,
    private readonly logDir: string,
    private readonly certs: string,
  ) {}

  /** Writes the configurations, starts every node and waits until JetStream has a meta leader. */
  static async start(opts: { size?: number; settings?: string; logDir: string; taken?: number[] }): Promise<NatsNodes> {
    const size = opts.size ?? 3;
    const settings = opts.settings ?? join(packageRoot, 'settings/dev');
    const dir = mkdtempSync(join(tmpdir(), 'eps-nats-nodes-'));
    const free = await distinctFreePorts(2 * size, opts.taken);
    const ports = Array.from({ length: size }, (_, i) => ({ client: free[2 * i]!, route: free[2 * i + 1]! }));
    const { nodes } = writeClusterConfigs({ size, hosts: ['127.0.0.1'], clientPort: 0, routePort: 0, ports, storeRoot: join(dir, 'store'), outDir: dir }, { settings });
    const bin = execFileSync('bash', [join(packageRoot, 'scripts/ensure-nats-server.sh')], { encoding: 'utf8' }).trim();
    mkdirSync(opts.logDir, { recursive: true });
    const bus = new NatsNodes(nodes, dir, bin, opts.logDir, join(settings, 'certs'));
    try {
      await Promise.all(nodes.map((_, i) => bus.startNode(i)));
      const admin = await bus.connectAs(DEFAULT_BUS_ADMIN);
      try {
        await waitForJetStream(admin);
      } finally {
        await admin.close();
      }
    } catch (err) {
      await bus.stop();
      throw err;
    }
    return bus;
  }

  /** Every node's client URL, node `home` first: what a process of the profile is given. */
  urls(home = 0): string {
    const urls = clusterUrls(this.nodes);
    return [urls[home]!, ...urls.filter((_, i) => i !== home)].join(',');
  }

  pid(i: number): number | undefined {
    return this.children.get(i)?.pid;
  }

  isRunning(i: number): boolean {
    const child = this.children.get(i);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  async startNode(i: number): Promise<void> {
    const node = this.nodes[i]!;
    const child = spawn(this.bin, ['-c', node.file], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out = createWriteStream(join(this.logDir, `${node.name}.log`), { flags: 'a' });
    child.stdout.pipe(out);
    child.stderr.pipe(out);
    this.children.set(i, child);
    await waitForPort(node.clientPort, 10_000);
  }

  /** SIGKILL, like a crash: its clients see the connection drop without a goodbye. */
  async killNode(i: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.children.get(i);
    this.children.delete(i);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  /** Connects as `principal` with its dev certificate, node `home` first. */
  connectAs(principal: string, home = 0): Promise<NatsConnection> {
    const tls = readTlsMaterial({ ca: join(this.certs, 'root.crt'), cert: join(this.certs, `${principal}.crt`), key: join(this.certs, `${principal}.key`) });
    return connectBus({ url: this.urls(home), randomize: false, name: `chaos:${principal}`, tls }, pino({ level: 'silent' }));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.children.keys()].map((i) => this.killNode(i, 'SIGTERM')));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
