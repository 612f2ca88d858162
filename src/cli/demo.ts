#!/usr/bin/env node
// `make demo`: the seed's five shells in one command. Starts the secured nats-server (generated
// configuration, its own port 4333) unless ours already answers there, then
// sd, the proxy and the three EPS servers, runs sd-setup, pings hd-2 through the proxy from
// hd-1's gateway, prints the answer and the curl command to try; then starts the games
// rendezvous and has a host and a guest meet through it twice (punched, then relayed by the
// proxy), and runs until Ctrl-C.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { duel } from '../devstack/duel.js';
import { pingHd2 } from '../devstack/gateway-ping.js';
import { join } from 'node:path';
import { connect } from 'node:net';
import { DEFAULT_NATS_URL } from '../core/constants.js';
import { parseHostPort } from '../core/splice-wire.js';
import { packageRoot } from '../core/package-root.js';
import { busyPorts, DEV_PORTS, DevStack, waitForPort } from '../devstack/stack.js';
import { devStoreDir, writeNatsConfig } from '../natsconf/generate.js';
import { probeSecuredBus } from '../natsconf/probe.js';
import { exitWithHelpIfAsked, usageError } from './command-line.js';

const HELP = `usage: make demo   (or: node dist/src/cli/demo.js)
The whole dev stack on this machine.
Starts the secured nats-server on 4333 (generated configuration), sd, the proxy and the three
EPS servers; submits the directory; pings hd-2 through the proxy from hd-1's gateway and prints
the answer and a curl to try; starts the games rendezvous and runs a punched and a relayed duel;
then runs until Ctrl-C. Logs in .demo/logs (the previous run's in .demo/logs.1).

Options:
  -h, --help  this text

Environment:
  NATS_URL    the bus to use instead of starting one (default ${DEFAULT_NATS_URL})`;

const cliArgs = process.argv.slice(2);
exitWithHelpIfAsked(cliArgs, HELP);
if (cliArgs.length > 0) usageError(`demo: unknown argument "${cliArgs[0]}"`, HELP);

/** The demo's rendezvous, for both peers of a duel. */
const games = { server: `http://127.0.0.1:${DEV_PORTS.games}`, stun: `127.0.0.1:${DEV_PORTS.stun}` };

const natsUrl = process.env.NATS_URL || DEFAULT_NATS_URL;
const certs = join(packageRoot, 'settings/dev/certs');
const logDir = join(packageRoot, '.demo/logs');

function answers(hostPort: string): Promise<boolean> {
  const { host, port } = parseHostPort(hostPort);
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

// Every port the stack needs must be free: a squatter would answer in its place and the demo would
// fail later, far from the cause.
const busy = await busyPorts(DEV_PORTS);
if (busy.length > 0) {
  console.error(`demo: cannot start:\n  ${busy.join('\n  ')}\nStop what holds them (\`ss -ltnup\` shows it), or change those settings.`);
  process.exit(1);
}

let nats: ChildProcess | undefined;
const natsHostPort = new URL(natsUrl.replace(/^(nats|tls):/, 'http:')).host;
if (await answers(natsHostPort)) {
  const check = await probeSecuredBus(natsUrl, certs);
  if (!check.ours) {
    console.error(
      `demo: ${natsHostPort} is taken by something that is not the secured dev nats-server (${check.why}).\n` +
        'The demo runs its own nats-server with TLS, client certificates and the generated permissions ' +
        '(settings/dev/nats/nats.conf); it does not fall back to an open bus. Stop what listens there, ' +
        'or point NATS_URL at a free port (the demo starts its server there).',
    );
    process.exit(1);
  }
  console.log(`using the secured nats-server that answers at ${natsUrl}`);
} else {
  const bin = execFileSync('bash', [join(packageRoot, 'scripts/ensure-nats-server.sh')], { encoding: 'utf8' }).trim();
  const { host, port } = parseHostPort(natsHostPort);
  // Generated for this URL (make nats-config writes the same file for the default one).
  const config = join(packageRoot, 'settings/dev/nats/nats.conf');
  const store = devStoreDir(join(packageRoot, '.demo/nats'), join(packageRoot, 'settings/dev'));
  writeNatsConfig(config, { settings: join(packageRoot, 'settings/dev'), host, port, storeDir: store });
  // Its own process group, like the stack's children: stopped last, by us, with one signal.
  nats = spawn(bin, ['-c', config], { stdio: 'ignore', detached: true });
  await waitForPort(port, 10_000, host);
  console.log(`started nats-server (${bin}) at ${natsUrl} with ${config} (TLS, client certificates, store in ${store})`);
}

// Each run's logs start empty; the previous run's stay in .demo/logs.1.
const stack = new DevStack({ natsUrl, ports: DEV_PORTS, logDir, rotateLogs: true, ownProcessGroups: true });
// Should the demo die without its shutdown (an uncaught error), its children must not outlive it.
process.on('exit', () => {
  stack.killAll();
  nats?.kill('SIGTERM');
});
let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    console.log('\nstopping the demo…');
    await stack.stop();
    if (nats && nats.exitCode === null) {
      const exited = new Promise((resolve) => nats!.once('exit', resolve));
      nats.kill('SIGTERM');
      await exited;
    }
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

try {
  await stack.startAll();
  console.log(`started sd, proxy, hd-1, hd-2 and public-proxy-eps-1 (logs in ${logDir})`);
  await stack.sdSetup();
  console.log('sd-setup: directory records submitted');
  await stack.waitUntilListening('hd-1', DEV_PORTS.jsonrpc, 20_000);

  const result = await pingHd2(DEV_PORTS.jsonrpc, certs);
  console.log('\nhd-2._ping through the proxy answered:');
  console.log(JSON.stringify({ jsonrpc: '2.0', id: '1', result }, null, 2));
  console.log(`
Try it yourself:
  curl --cert settings/dev/certs/hd-1.crt --key settings/dev/certs/hd-1.key --cacert settings/dev/certs/root.crt --resolve hd-1:5555:127.0.0.1 https://hd-1:5555/jsonrpc --header "Content-Type: application/json" --data '{"method": "hd-2._ping", "id": "1", "params": {}, "jsonrpc": "2.0"}' | jq .
  curl -s http://127.0.0.1:${DEV_PORTS.metrics}/metrics | grep eps_proxy_

Watch the sessions live (state, diagram, timeline): open http://127.0.0.1:${DEV_PORTS.metrics}/inspect`);

  stack.start('games-1');
  await stack.waitUntilListening('games-1', DEV_PORTS.games, 20_000);
  console.log(`\nstarted games run (REST on ${DEV_PORTS.games}, STUN on ${DEV_PORTS.stun}/udp); a host and a guest meet through it:`);
  for (const line of await duel('demo duel', games, games)) console.log(`  ${line}`);
  console.log('and again, relayed through the proxy as when their NATs defeat punching (--relay always):');
  for (const line of await duel('demo relay', games, games, ['--relay', 'always'])) console.log(`  ${line}`);
  console.log(`
Try it yourself, in two shells:
  npx games host  --server http://127.0.0.1:${DEV_PORTS.games} --name mine --verbose
  npx games guest --server http://127.0.0.1:${DEV_PORTS.games} --name mine --verbose
The games' sessions are at http://127.0.0.1:${DEV_PORTS.games}/inspect

Running until Ctrl-C.`);
} catch (err) {
  console.error(`demo failed: ${(err as Error).message}\n(the logs are in ${logDir}; README "Troubleshooting" lists the usual causes)`);
  await shutdown(1);
}
