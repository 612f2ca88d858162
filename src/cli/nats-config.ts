#!/usr/bin/env node
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT, parseCommandLine, usageError } from './command-line.js';
import { packageRoot } from '../core/package-root.js';
import { DEFAULT_BUS_ADMIN, DEFAULT_GAMES_ADMIN, devStoreDir, writeNatsConfig } from '../natsconf/generate.js';
import { clusterUrls, DEFAULT_CLUSTER_CLIENT_PORT, DEFAULT_CLUSTER_ROUTE_PORT, writeClusterConfigs } from '../natsconf/cluster.js';

// `make nats-config`: the dev bus's nats-server configuration, generated from the directory's
// record files and the role folders. The output holds absolute paths and is gitignored, like the
// certificates it names.

const USAGE = `usage: nats-config [--settings DIR] [--out FILE] [--host HOST] [--port PORT] [--store DIR] [--admin NAME]... [--games-admin NAME]...
       nats-config --cluster N [--hosts H1,...,HN] [--port PORT] [--route-port PORT] [--out DIR] [--store DIR] ...

  Reads DIR/directory/*.yml and DIR/roles/*/ (default settings/dev) and writes nats-server's
  configuration to FILE (default DIR/nats/nats.conf): TLS with client certificates of
  DIR/certs/root.crt mapped to one user per principal, each with the least rights its roles and
  the directory's service permissions need. Listens on HOST:PORT (default 127.0.0.1:4333), keeps
  JetStream in --store (default .demo/nats/root-<fingerprint of DIR/certs/root.crt>, so new
  certificates start a new directory). Two accounts: GAMES holds the games principals and their
  bucket, OPS everyone else and the directory stream. --admin names principals with every right
  in OPS (default nats-admin), --games-admin in GAMES (default nats-admin-games).

  --cluster N writes one file per node of an N-node cluster to DIR (default DIR/nats/cluster):
  <cluster>-<n>.conf, each with the same users and permissions, its server_name and routes to
  every other node over mutual TLS with DIR/certs/nats-route.crt (the only certificate a route
  may present). With one --host the nodes share it and their ports count up from --port (default
  4341) and --route-port (default 6241): \`make demo-cluster\`. --hosts names one host per node
  (one node per machine, the same ports on each): deploy/. Each node keeps JetStream in
  --store/<cluster>-<n> (default .demo/nats-cluster/root-<fingerprint>).`;

const { values, positionals } = parseCommandLine(() =>
  parseArgs({
    options: {
      settings: { type: 'string', default: join(packageRoot, 'settings/dev') },
      out: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      cluster: { type: 'string' },
      hosts: { type: 'string' },
      'route-port': { type: 'string', default: String(DEFAULT_CLUSTER_ROUTE_PORT) },
      store: { type: 'string' },
      admin: { type: 'string', multiple: true, default: [DEFAULT_BUS_ADMIN] },
      'games-admin': { type: 'string', multiple: true, default: [DEFAULT_GAMES_ADMIN] },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  }),
  'nats-config',
  USAGE,
);
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(EXIT.ok);
}
if (positionals.length > 0) usageError(`nats-config: unexpected argument "${positionals[0]}"`, USAGE);
const cluster = values.cluster === undefined ? undefined : Number(values.cluster);
if (cluster !== undefined && !(Number.isInteger(cluster) && cluster >= 1)) usageError(`nats-config: --cluster takes a number of nodes (1 or more), not "${values.cluster}"`, USAGE);
if (values.hosts !== undefined && cluster === undefined) usageError('nats-config: --hosts is for --cluster N', USAGE);
try {
  if (cluster !== undefined) {
    const { nodes, principals } = writeClusterConfigs(
      {
        size: cluster,
        hosts: values.hosts ? values.hosts.split(',').map((h) => h.trim()) : [values.host],
        clientPort: Number(values.port ?? DEFAULT_CLUSTER_CLIENT_PORT),
        routePort: Number(values['route-port']),
        storeRoot: values.store ?? devStoreDir(join(packageRoot, '.demo/nats-cluster'), values.settings),
        outDir: resolve(values.out ?? join(values.settings, 'nats/cluster')),
      },
      { settings: values.settings, admins: values.admin, gamesAdmins: values['games-admin'] },
    );
    process.stdout.write(`nats-server cluster of ${nodes.length} for ${principals.map((p) => p.name).join(', ')}:\n`);
    for (const n of nodes) process.stdout.write(`  ${n.file}  (clients ${n.host}:${n.clientPort}, routes ${n.host}:${n.routePort}, store ${n.storeDir})\n`);
    process.stdout.write(`every process's nats.url: [${clusterUrls(nodes).join(', ')}]\n`);
    process.exit(EXIT.ok);
  }
  const out = resolve(values.out ?? join(values.settings, 'nats/nats.conf'));
  const principals = writeNatsConfig(out, {
    settings: values.settings,
    host: values.host,
    port: Number(values.port ?? 4333),
    storeDir: values.store ?? devStoreDir(join(packageRoot, '.demo/nats'), values.settings),
    admins: values.admin,
    gamesAdmins: values['games-admin'],
  });
  process.stdout.write(`nats-server configuration for ${principals.map((p) => p.name).join(', ')} in ${out}\n`);
} catch (err) {
  process.stderr.write(`nats-config: ${(err as Error).message}\n`);
  process.exit(1);
}
