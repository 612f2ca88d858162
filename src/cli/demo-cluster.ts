#!/usr/bin/env node
// `make demo-cluster`: the cluster profile on one machine. Three nats-servers (the configuration
// `nats-config --cluster 3` generates: routes over mutual TLS, JetStream clustered) on their own
// ports, sd with the directory stream at R3, two proxies of one operator in one queue group, the
// three EPS servers, two `games run` on their own ports over the R3 buckets. Pings hd-2 until
// each proxy has brokered a ping, runs a game duel across both games instances and a relayed
// one through each, prints what runs where, and runs until Ctrl-C (--once: stops there).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pino } from 'pino';
import { connectBus } from '../core/nats.js';
import { packageRoot } from '../core/package-root.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { duel, type DuelSide } from '../devstack/duel.js';
import { pingHd2 } from '../devstack/gateway-ping.js';
import { waitForJetStream } from '../devstack/jetstream-ready.js';
import { busyPorts, DEV_PORTS, DevStack, portTaken, waitForPort, type RoleName, type StackPorts } from '../devstack/stack.js';
import { clusterUrls, DEFAULT_CLUSTER_CLIENT_PORT, DEFAULT_CLUSTER_ROUTE_PORT, writeClusterConfigs, type ClusterNode } from '../natsconf/cluster.js';
import { DEFAULT_BUS_ADMIN, devStoreDir } from '../natsconf/generate.js';
import { exitWithHelpIfAsked, usageError } from './command-line.js';

const HELP = `usage: make demo-cluster [ONCE=--once]   (or: node dist/src/cli/demo-cluster.js [--once])
The cluster profile on this machine.
Starts 3 nats-servers (JetStream, R3), sd, two proxies of one operator, two games instances and
the EPS servers; pings hd-2 through each proxy, runs duels across both games instances and
through each proxy, prints what runs where, and runs until Ctrl-C.

Options:
  --once      stop after the checks
  -h, --help  this text`;

const cliArgs = process.argv.slice(2);
exitWithHelpIfAsked(cliArgs, HELP);
const unknownArg = cliArgs.find((a) => a !== '--once');
if (unknownArg !== undefined) usageError(`demo-cluster: unknown argument "${unknownArg}"`, HELP);
const once = cliArgs.includes('--once');
const settings = join(packageRoot, 'settings/dev');
const certs = join(settings, 'certs');
const logDir = join(packageRoot, '.demo/cluster-logs');
/** The single-node demo's ports, and the second proxy's and games instance's (settings/cluster/roles/*-2). */
const PORTS: StackPorts = { ...DEV_PORTS, second: { splice: 9998, metrics: 9192, games: 8001, stun: 3479 } };
/** Each process's own node (index), as settings/cluster/roles says: no proxy where hd-1 is, so either may take its requests. */
const HOME: Record<RoleName, number> = {
  'sd-1': 0,
  'public-proxy-1': 0,
  'games-1': 0,
  'public-proxy-2': 1,
  'games-2': 1,
  'hd-2': 1,
  'hd-1': 2,
  'public-proxy-eps-1': 2,
  'public-proxy-hyper-1': 2,
};
const PROXIES = { 'public-proxy-1': PORTS.metrics, 'public-proxy-2': PORTS.second!.metrics } as const;
/** hd-1 keeps a brokered channel this long: short, so that successive pings are brokered anew. */
const CHANNEL_IDLE_MS = 1000;
const MAX_PINGS = 12;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const { nodes } = writeClusterConfigs(
  {
    size: 3,
    hosts: ['127.0.0.1'],
    clientPort: DEFAULT_CLUSTER_CLIENT_PORT,
    routePort: DEFAULT_CLUSTER_ROUTE_PORT,
    storeRoot: devStoreDir(join(packageRoot, '.demo/nats-cluster'), settings),
    outDir: join(settings, 'nats/cluster'),
  },
  { settings },
);
const urls = clusterUrls(nodes);
/** Node `home`'s URL first: how each process of the profile lists the bus. */
const urlsFrom = (home: number) => [urls[home]!, ...urls.filter((_, i) => i !== home)].join(',');

const busy = await busyPorts(PORTS);
for (const n of nodes) {
  for (const [port, what] of [
    [n.clientPort, 'clients'],
    [n.routePort, 'routes'],
  ] as const) {
    if (await portTaken(port, 'tcp')) busy.push(`port ${port}/tcp (nats-server ${n.name}, ${what}: nats-config --cluster 3) is in use by another process`);
  }
}
if (busy.length > 0) {
  console.error(`demo-cluster: cannot start:\n  ${busy.join('\n  ')}\nStop what holds them (\`make demo\` uses the same ports for sd, hd-1, the first proxy and games; \`ss -ltnup\` shows who).`);
  process.exit(1);
}

mkdirSync(logDir, { recursive: true });
const bin = execFileSync('bash', [join(packageRoot, 'scripts/ensure-nats-server.sh')], { encoding: 'utf8' }).trim();
const servers: ChildProcess[] = [];
const stack = new DevStack({
  natsUrl: urls.join(','),
  natsUrlOf: (role) => urlsFrom(HOME[role]),
  profile: join(packageRoot, 'settings/cluster'),
  ports: PORTS,
  logDir,
  rotateLogs: true,
  ownProcessGroups: true,
  overrides: { 'hd-1': `timeouts: { channelIdleMs: ${CHANNEL_IDLE_MS} }\n` },
});

process.on('exit', () => {
  stack.killAll();
  for (const s of servers) if (s.exitCode === null) s.kill('SIGTERM');
});
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    console.log('\nstopping the cluster demo…');
    await stack.stop();
    await Promise.all(
      servers.map((s) =>
        s.exitCode === null
          ? new Promise((resolve) => {
              s.once('exit', resolve);
              s.kill('SIGTERM');
            })
          : undefined,
      ),
    );
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

function startNode(node: ClusterNode): ChildProcess {
  // Its own process group, like the stack's children: stopped by us, with one signal.
  const child = spawn(bin, ['-c', node.file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const out = createWriteStream(join(logDir, `${node.name}.log`), { flags: 'a' });
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  return child;
}

/** The node a role's process connected to, from its 'bus connected' log line. */
function nodeOf(role: RoleName): string {
  let text = '';
  try {
    text = readFileSync(join(logDir, `${role}.log`), 'utf8');
  } catch {
    return '?';
  }
  for (const line of text.split('\n')) {
    if (!line.includes('"bus connected"')) continue;
    try {
      const server = (JSON.parse(line) as { server?: string }).server ?? '';
      const node = nodes.find((n) => server.endsWith(`:${n.clientPort}`));
      return node ? node.name : server;
    } catch {
      // not a JSON line
    }
  }
  return '?';
}

async function splicedBy(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('eps_proxy_spliced_total '));
  return line ? Number(line.split(' ').pop()) : 0;
}
const splicedCounts = async () => Object.fromEntries(await Promise.all(Object.entries(PROXIES).map(async ([p, port]) => [p, await splicedBy(port)] as const)));

const logged = (role: RoleName, text: string) => {
  try {
    return readFileSync(join(logDir, `${role}.log`), 'utf8').includes(text);
  } catch {
    return false;
  }
};

try {
  for (const n of nodes) servers.push(startNode(n));
  await Promise.all(nodes.map((n) => waitForPort(n.clientPort, 10_000)));
  const admin = await connectBus(
    { url: urls.join(','), name: 'demo-cluster', tls: readTlsMaterial({ ca: join(certs, 'root.crt'), cert: join(certs, `${DEFAULT_BUS_ADMIN}.crt`), key: join(certs, `${DEFAULT_BUS_ADMIN}.key`) }) },
    pino({ level: 'silent' }),
  );
  await waitForJetStream(admin);
  await admin.close();
  console.log(`started 3 nats-servers, a cluster with JetStream (${nodes.map((n) => `${n.name} on ${n.clientPort}`).join(', ')}; configurations in ${relative(packageRoot, join(settings, 'nats/cluster'))})`);

  await stack.startAll(['sd-1', 'public-proxy-1', 'public-proxy-2', 'hd-1', 'hd-2', 'public-proxy-eps-1']);
  await stack.sdSetup();
  console.log(`started sd, two proxies of public-proxy-eps-1, hd-1, hd-2 and public-proxy-eps-1; directory records submitted (logs in ${relative(packageRoot, logDir)})`);
  await stack.waitUntilListening('hd-1', PORTS.jsonrpc, 20_000);
  for (const deadline = Date.now() + 30_000; !(logged('public-proxy-1', 'public proxy brokering') && logged('public-proxy-2', 'public proxy brokering')); ) {
    if (Date.now() > deadline) throw new Error('the proxies did not start brokering within 30 s');
    await sleep(200);
  }

  console.log(`\nhd-2._ping from hd-1's gateway, a new brokering each time (hd-1 on ${nodeOf('hd-1')}, where no proxy is: the queue group hands each request to either):`);
  const served = new Set<string>();
  for (let i = 1; i <= MAX_PINGS && served.size < 2; i++) {
    const before = await splicedCounts();
    const result = await pingHd2(PORTS.jsonrpc, certs);
    const after = await splicedCounts();
    const by = Object.keys(PROXIES).find((p) => after[p]! > before[p]!) ?? '?';
    served.add(by);
    const info = (result as { serverInfo?: { name?: string } }).serverInfo;
    console.log(`  ping ${i}: ${info?.name ?? 'hd-2'} answered, brokered and spliced by ${by}`);
    await sleep(CHANNEL_IDLE_MS + 500);
  }
  if (served.size < 2) console.log(`  (only ${[...served].join(', ')} took a request in ${MAX_PINGS} pings: the queue group picks at random)`);

  stack.start('games-1');
  stack.start('games-2');
  await Promise.all([stack.waitUntilListening('games-1', PORTS.games, 20_000), stack.waitUntilListening('games-2', PORTS.second!.games, 20_000)]);
  const g1: DuelSide = { server: `http://127.0.0.1:${PORTS.games}`, stun: `127.0.0.1:${PORTS.stun}` };
  const g2: DuelSide = { server: `http://127.0.0.1:${PORTS.second!.games}`, stun: `127.0.0.1:${PORTS.second!.stun}` };
  console.log(`\nstarted two games run over the R3 buckets (games-1: REST ${PORTS.games}, games-2: REST ${PORTS.second!.games}); a host on one meets a guest on the other:`);
  for (const line of await duel('cluster duel', g1, g2)) console.log(`  ${line}`);
  for (const line of await duel('cluster duel back', g2, g1)) console.log(`  ${line}`);
  // A relay request crosses from the games account into the operators' (a service import), and
  // either proxy of the queue group may take it: relay again until each proxy has relayed one.
  const endpoints: Record<string, string> = { [`127.0.0.1:${PORTS.splice}`]: 'public-proxy-1', [`127.0.0.1:${PORTS.second!.splice}`]: 'public-proxy-2' };
  console.log('relayed (--relay always), asked of games-1 and games-2 in turn, until each proxy has relayed one (peer is the proxy endpoint):');
  const relayedBy = new Set<string>();
  for (let i = 1; i <= 6 && relayedBy.size < 2; i++) {
    const side = i % 2 ? g1 : g2;
    const lines = await duel(`cluster relay ${i}`, side, side, ['--relay', 'always']);
    const proxy = Object.entries(endpoints).find(([e]) => lines[0]!.includes(`"peer":"${e}"`))?.[1] ?? '?';
    relayedBy.add(proxy);
    console.log(`  via ${i % 2 ? 'games-1' : 'games-2'}, relayed by ${proxy}:`);
    for (const line of lines) console.log(`    ${line}`);
  }

  const rows: [string, string, string, string][] = [
    ...nodes.map((n): [string, string, string, string] => [`nats-server ${n.name}`, n.name, `clients ${n.clientPort}, routes ${n.routePort}`, relative(packageRoot, n.file)]),
    ...(
      [
        ['sd run', 'sd-1', `https ${PORTS.sd}`],
        ['proxy run public', 'public-proxy-1', `splice ${PORTS.splice}, metrics+inspect ${PORTS.metrics}`],
        ['proxy run public', 'public-proxy-2', `splice ${PORTS.second!.splice}, metrics+inspect ${PORTS.second!.metrics}`],
        ['eps server run', 'hd-1', `JSON-RPC ${PORTS.jsonrpc}`],
        ['eps server run', 'hd-2', '(no listener)'],
        ['eps server run', 'public-proxy-eps-1', '(no listener)'],
        ['games run', 'games-1', `REST ${PORTS.games}, STUN ${PORTS.stun}/udp`],
        ['games run', 'games-2', `REST ${PORTS.second!.games}, STUN ${PORTS.second!.stun}/udp`],
      ] as [string, RoleName, string][]
    ).map(([cmd, role, ports]): [string, string, string, string] => [`${cmd} (${role})`, nodeOf(role), ports, stack.settingsOf(role)]),
  ];
  const width = (i: number) => Math.max(...rows.map((r) => r[i]!.length));
  console.log('\nwhat runs where (process, bus node it is connected to, ports, settings):');
  for (const r of rows) console.log(`  ${r.map((c, i) => (i < 3 ? c.padEnd(width(i)) : c)).join('  ')}`);
  console.log(`
Try it: kill a node (its processes move to another), or drain a proxy (it finishes its sessions, the other takes the new ones):
  kill ${servers[2]!.pid}    # nats-server ${nodes[2]!.name}: hd-1 moves to another node and pings on
  kill ${stack.child('public-proxy-1')?.pid}   # public-proxy-1 drains (timeouts.drainMs) and exits; public-proxy-2 brokers every new request
  curl --cert settings/dev/certs/hd-1.crt --key settings/dev/certs/hd-1.key --cacert settings/dev/certs/root.crt --resolve hd-1:${PORTS.jsonrpc}:127.0.0.1 https://hd-1:${PORTS.jsonrpc}/jsonrpc --header "Content-Type: application/json" --data '{"method": "hd-2._ping", "id": "1", "params": {}, "jsonrpc": "2.0"}'
Inspectors: http://127.0.0.1:${PORTS.metrics}/inspect and http://127.0.0.1:${PORTS.second!.metrics}/inspect`);
  if (once) await shutdown(0);
  console.log('\nRunning until Ctrl-C.');
} catch (err) {
  console.error(`demo-cluster failed: ${(err as Error).message}\n(the logs are in ${relative(packageRoot, logDir)})`);
  await shutdown(1);
}
