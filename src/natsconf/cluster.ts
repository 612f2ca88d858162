import { join, resolve } from 'node:path';
import type { BusPrincipal } from './policy.js';
import { writeNatsConfig, type NatsConfigOptions } from './generate.js';

// The configuration of an N-node nats-server cluster: one file per node, each the single server's
// configuration (same users, permissions and client TLS, from the same directory and roles) plus
// its server_name and a cluster block whose routes reach every other node over mutual TLS.
// JetStream clusters itself over those routes; the system replicates nothing on its own.

/** The cluster's name: every node of one bus carries it. */
export const DEFAULT_CLUSTER_NAME = 'eps';
/** The principal the route certificate (settings/dev/certs/nats-route.crt) maps to. */
export const DEFAULT_ROUTE_PRINCIPAL = 'nats-route';
/** The client ports of `make demo-cluster`'s nodes start here (4333 stays the single dev server's). */
export const DEFAULT_CLUSTER_CLIENT_PORT = 4341;
/** Their route ports start here. */
export const DEFAULT_CLUSTER_ROUTE_PORT = 6241;

export interface ClusterNode {
  /** server_name, `<cluster>-<n>` from 1. */
  name: string;
  host: string;
  clientPort: number;
  routePort: number;
  storeDir: string;
  /** Its configuration file. */
  file: string;
}

export interface ClusterLayout {
  size: number;
  /** One host per node (a node per machine, same ports on each), or one host for all (ports count up). */
  hosts: string[];
  clientPort: number;
  routePort: number;
  /** Each node's ports instead (tests: free ports picked one by one). */
  ports?: { client: number; route: number }[];
  /** Each node keeps JetStream in `<storeRoot>/<node name>`. */
  storeRoot: string;
  /** Each node's file is `<outDir>/<node name>.conf`. */
  outDir: string;
  name?: string;
}

/** Where each node listens: on one host the ports count up from the first, on N hosts they are the same. */
export function clusterNodes(layout: ClusterLayout): ClusterNode[] {
  const { size, hosts } = layout;
  if (!Number.isInteger(size) || size < 1) throw new Error(`a cluster has at least one node, not ${size}`);
  if (hosts.length !== 1 && hosts.length !== size) throw new Error(`${hosts.length} hosts for ${size} nodes: give one host, or one per node`);
  const shared = hosts.length === 1 && size > 1;
  const name = layout.name ?? DEFAULT_CLUSTER_NAME;
  return Array.from({ length: size }, (_, i) => {
    const node = `${name}-${i + 1}`;
    return {
      name: node,
      host: hosts[shared ? 0 : i]!,
      clientPort: layout.ports?.[i]?.client ?? layout.clientPort + (shared ? i : 0),
      routePort: layout.ports?.[i]?.route ?? layout.routePort + (shared ? i : 0),
      storeDir: join(resolve(layout.storeRoot), node),
      file: join(resolve(layout.outDir), `${node}.conf`),
    };
  });
}

/** The bus's client URLs, the list every process of the cluster profile is given. */
export function clusterUrls(nodes: ClusterNode[]): string[] {
  return nodes.map((n) => `nats://${n.host}:${n.clientPort}`);
}

/**
 * Writes every node's configuration. A cluster of 2 has no JetStream majority once one node is
 * gone, so replicated streams want 3 or more (R3 on 3 nodes survives the loss of one).
 */
export function writeClusterConfigs(
  layout: ClusterLayout,
  base: Omit<NatsConfigOptions, 'host' | 'port' | 'storeDir' | 'cluster'>,
): { nodes: ClusterNode[]; principals: BusPrincipal[] } {
  const nodes = clusterNodes(layout);
  const certs = join(resolve(base.settings), 'certs');
  let principals: BusPrincipal[] = [];
  for (const node of nodes) {
    principals = writeNatsConfig(node.file, {
      ...base,
      host: node.host,
      port: node.clientPort,
      storeDir: node.storeDir,
      cluster: {
        name: layout.name ?? DEFAULT_CLUSTER_NAME,
        serverName: node.name,
        host: node.host,
        port: node.routePort,
        routes: nodes.filter((n) => n !== node).map((n) => `${n.host}:${n.routePort}`),
        tls: { cert: join(certs, `${DEFAULT_ROUTE_PRINCIPAL}.crt`), key: join(certs, `${DEFAULT_ROUTE_PRINCIPAL}.key`), ca: join(certs, 'root.crt') },
        routeUser: DEFAULT_ROUTE_PRINCIPAL,
      },
    });
  }
  return { nodes, principals };
}
