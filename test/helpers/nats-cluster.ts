import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { waitForPort } from '../../src/devstack/stack.js';
import { waitForJetStream } from '../../src/devstack/jetstream-ready.js';
import { connectBus, type NatsConnection } from '../../src/core/nats.js';
import { writeClusterConfigs, type ClusterNode } from '../../src/natsconf/cluster.js';
import { BUS_ADMIN, DEV_SETTINGS, GAMES_ADMIN, NATS_SERVER_BIN, devMaterial } from './nats-server.js';
import { distinctFreePorts } from './ports.js';

const silent = pino({ level: 'silent' });

/**
 * A real nats-server cluster on free ports, each node with the configuration `nats-config
 * --cluster N` generates from the dev directory and roles (routes over mutual TLS, JetStream
 * clustered), its own store; any node can be killed like a crash and started again.
 */
export class TestNatsCluster {
  private readonly children = new Map<number, ChildProcess>();

  private constructor(
    readonly nodes: ClusterNode[],
    private readonly dir: string,
  ) {}

  /** Every port the cluster holds, for a test picking more ports beside it. */
  get ports(): number[] {
    return this.nodes.flatMap((n) => [n.clientPort, n.routePort]);
  }

  static async start(size = 3, opts: { streams?: string[]; buckets?: string[] } = {}): Promise<TestNatsCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'eps-nats-cluster-'));
    const free = await distinctFreePorts(2 * size);
    const ports = Array.from({ length: size }, (_, i) => ({ client: free[2 * i]!, route: free[2 * i + 1]! }));
    const { nodes } = writeClusterConfigs(
      { size, hosts: ['127.0.0.1'], clientPort: 0, routePort: 0, ports, storeRoot: join(dir, 'store'), outDir: dir },
      { settings: DEV_SETTINGS, admins: [BUS_ADMIN], gamesAdmins: [GAMES_ADMIN], extraStreams: opts.streams ?? [], extraBuckets: opts.buckets ?? [] },
    );
    const cluster = new TestNatsCluster(nodes, dir);
    await Promise.all(nodes.map((_, i) => cluster.startNode(i)));
    await cluster.jetStreamReady();
    return cluster;
  }

  /** Every node's client URL, node `home` first: a process of the cluster profile is given this list. */
  urls(home = 0): string {
    const urls = this.nodes.map((n) => `nats://127.0.0.1:${n.clientPort}`);
    return [urls[home]!, ...urls.filter((_, i) => i !== home)].join(',');
  }

  async startNode(i: number): Promise<void> {
    const node = this.nodes[i]!;
    this.children.set(i, spawn(NATS_SERVER_BIN, ['-c', node.file], { stdio: 'ignore' }));
    await waitForPort(node.clientPort, 10_000);
  }

  /** SIGKILL, like a crash: its clients see the connection drop without a goodbye. */
  async killNode(i: number): Promise<void> {
    const child = this.children.get(i);
    this.children.delete(i);
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }

  /** Connects as `principal`, exactly as its processes do, with node `home` first and no shuffling. */
  connectAs(principal: string, home = 0): Promise<NatsConnection> {
    return connectBus({ url: this.urls(home), randomize: false, name: `test:${principal}`, tls: devMaterial(principal) }, silent);
  }

  /** Waits until the cluster has elected its JetStream meta leader (streams cannot be created before). */
  async jetStreamReady(timeoutMs = 20_000): Promise<void> {
    const nc = await this.connectAs(BUS_ADMIN);
    try {
      await waitForJetStream(nc, timeoutMs);
    } finally {
      await nc.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.children.keys()].map((i) => this.killNode(i)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
