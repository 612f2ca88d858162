// Hole punching through two real NATs built from network namespaces, veth links and nftables
// masquerade. Only documentation ranges (203.0.113.0/24) and 10.x live on links created here,
// inside namespaces: nothing is routed to a real external address.
//
//   [eps-h-*] 10.1.0.2 ── 10.1.0.1 [eps-nat1-*] 203.0.113.11 ─┐
//                                                            br0 203.0.113.1 [eps-pub-*]: nats-server, games run
//   [eps-g-*] 10.2.0.2 ── 10.2.0.1 [eps-nat2-*] 203.0.113.12 ─┤   and proxy run public (splice 203.0.113.1:9999)
//   [eps-h2-*] 10.3.0.2 ── 10.3.0.1 [eps-nat3-*] 203.0.113.13 ─┤   (symmetric NAT)
//   [eps-g2-*] 10.4.0.2 ── 10.4.0.1 [eps-nat4-*] 203.0.113.14 ─┘   (symmetric NAT)
//
// Each NAT masquerades lan → wan (endpoint-independent mapping: masquerade keeps the source port
// when it can) and forwards wan → lan only for established flows, so a peer is reachable only
// through a hole it punched itself. Like any home router, a NAT drops unsolicited packets to its
// own WAN address (input, ct state new): without that, a probe arriving before the local peer's
// first one leaves a conntrack entry whose tuple clashes with the mapping the local peer needs,
// masquerade picks another port, and the NAT behaves as a symmetric one (a relay case).
//
// nat3 and nat4 are symmetric on purpose: `masquerade fully-random` gives every new flow (every
// destination) a random port, so the mapping STUN reports is not the one the other peer's probes
// would have to reach. Punching fails there and the peers fall back to the proxy's relay.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_CERTS, NATS_SERVER_BIN, writeTestNatsConfig } from '../helpers/nats-server.js';
import { resultOf, runPeer } from './games-peer-cli.js';

const run = (cmd: string, args: string[], input?: string) =>
  execFileSync(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000, ...(input ? { input } : {}) }).toString();

function hasCommand(cmd: string): boolean {
  try {
    run('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** Why this file cannot run here, or undefined when it can. */
function skipReason(): string | undefined {
  if (process.platform !== 'linux') return 'not Linux: no network namespaces';
  if (process.getuid?.() !== 0) return 'not root: creating network namespaces needs root';
  const probe = `eps-probe-${randomBytes(3).toString('hex')}`;
  try {
    run('ip', ['netns', 'add', probe]);
    run('ip', ['netns', 'del', probe]);
  } catch (err) {
    return `"ip netns" is unavailable: ${(err as Error).message.split('\n')[0]}`;
  }
  if (!hasCommand('nft')) {
    try {
      execFileSync('apt-get', ['install', '-y', 'nftables'], { stdio: 'ignore', timeout: 120_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    } catch {
      // Reported below.
    }
    if (!hasCommand('nft')) return '"nft" is missing and "apt-get install -y nftables" failed';
  }
  return undefined;
}

const reason = skipReason();
if (reason) console.warn(`games-nat: SKIPPED: ${reason}`);

const sfx = randomBytes(3).toString('hex');
const NS = {
  pub: `eps-pub-${sfx}`,
  nat1: `eps-nat1-${sfx}`,
  nat2: `eps-nat2-${sfx}`,
  nat3: `eps-nat3-${sfx}`,
  nat4: `eps-nat4-${sfx}`,
  h: `eps-h-${sfx}`,
  g: `eps-g-${sfx}`,
  h2: `eps-h2-${sfx}`,
  g2: `eps-g2-${sfx}`,
};
const created: string[] = [];
const children: ChildProcess[] = [];
const dirs: string[] = [];
const exec = (ns: string, ...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
const PUBLIC = '203.0.113.1';

/** Runs a short-lived process inside a namespace to its end; rejects on a non-zero exit. */
function runIn(ns: string, argv: string[]): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  return new Promise((resolve, reject) => child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv[0]} in ${ns} exited ${code}: ${err}`)))));
}

/** Starts a long-lived process inside a namespace and waits for a line saying it is ready. */
function startIn(ns: string, argv: string[], ready: string, env: NodeJS.ProcessEnv = process.env): Promise<{ output: () => string }> {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv[0]} in ${ns} not ready in 10 s:\n${output}`)), 10_000);
    const onData = (d: Buffer) => {
      output += d;
      if (output.includes(ready)) {
        clearTimeout(timer);
        resolve({ output: () => output });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${argv[0]} in ${ns} exited ${code}:\n${output}`));
    });
  });
}

function buildNat(nat: string, inner: string, wanIp: string, lan: string, mapping: 'endpoint-independent' | 'symmetric' = 'endpoint-independent'): void {
  // Both ends are created straight in their namespaces, so names never clash in the root one.
  run('ip', ['link', 'add', 'wan', 'netns', nat, 'type', 'veth', 'peer', 'name', `p-${nat.slice(4, 8)}`, 'netns', NS.pub]);
  exec(NS.pub, 'ip', 'link', 'set', `p-${nat.slice(4, 8)}`, 'master', 'br0', 'up');
  run('ip', ['link', 'add', 'lan', 'netns', nat, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', inner]);
  exec(nat, 'ip', 'addr', 'add', `${wanIp}/24`, 'dev', 'wan');
  exec(nat, 'ip', 'addr', 'add', `${lan}.1/24`, 'dev', 'lan');
  for (const dev of ['lo', 'wan', 'lan']) exec(nat, 'ip', 'link', 'set', dev, 'up');
  exec(nat, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
  run(
    'ip',
    ['netns', 'exec', nat, 'nft', '-f', '-'],
    `table ip nat {
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "wan" masquerade${mapping === 'symmetric' ? ' fully-random' : ''}; }
}
table ip filter {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }
}
`,
  );
  exec(inner, 'ip', 'addr', 'add', `${lan}.2/24`, 'dev', 'eth0');
  for (const dev of ['lo', 'eth0']) exec(inner, 'ip', 'link', 'set', dev, 'up');
  exec(inner, 'ip', 'route', 'add', 'default', 'via', `${lan}.1`);
}

const CERTS = resolve('settings/dev/certs');

/**
 * A client written from the seed's request models: it learns its mapping by STUN, swaps
 * addresses through /games/start under a peer id of its own choosing, then says hello over UDP in
 * its own words. It never speaks the punching protocol: the host must report it, not drop it.
 */
const SEED_GUEST = `
import { createSocket } from 'node:dgram';
import { stunBinding } from './dist/src/games/stun-client.js';
const [server, stun, name, peerId] = process.argv.slice(1);
const socket = createSocket('udp4');
await new Promise((r) => socket.bind(0, '0.0.0.0', r));
const { mapped } = await stunBinding({ host: stun, port: 3478 }, { socket });
const start = () => fetch(server + '/games/start', { method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ name, peerId, addresses: [mapped.address + ':' + mapped.port] }) }).then((r) => r.json());
let answer = await start();
while (answer.status !== 1) { await new Promise((r) => setTimeout(r, 300)); answer = await start(); }
for (let i = 0; i < 40; i++) {
  for (const a of answer.addresses) { const [h, p] = a.split(':'); socket.send('hello from ' + peerId, Number(p), h); }
  await new Promise((r) => setTimeout(r, 200));
}
socket.close();
`;

describe.skipIf(reason !== undefined)('games host / guest behind two NATs (ip netns + nftables masquerade)', () => {
  beforeAll(async () => {
    for (const ns of Object.values(NS)) {
      run('ip', ['netns', 'add', ns]);
      created.push(ns);
    }
    exec(NS.pub, 'ip', 'link', 'set', 'lo', 'up');
    exec(NS.pub, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
    exec(NS.pub, 'ip', 'addr', 'add', `${PUBLIC}/24`, 'dev', 'br0');
    exec(NS.pub, 'ip', 'link', 'set', 'br0', 'up');
    buildNat(NS.nat1, NS.h, '203.0.113.11', '10.1.0');
    buildNat(NS.nat2, NS.g, '203.0.113.12', '10.2.0');
    buildNat(NS.nat3, NS.h2, '203.0.113.13', '10.3.0', 'symmetric');
    buildNat(NS.nat4, NS.g2, '203.0.113.14', '10.4.0', 'symmetric');

    const store = mkdtempSync(join(tmpdir(), 'eps-nats-ns-'));
    const role = mkdtempSync(join(tmpdir(), 'games-role-ns-'));
    dirs.push(store, role);
    // The generated configuration, on the namespace's own loopback.
    const { configFile } = writeTestNatsConfig(store, 4222, { buckets: [`GAMES_NS_${sfx}`] });
    await startIn(NS.pub, [NATS_SERVER_BIN, '-c', configFile], 'Server is ready');
    writeFileSync(
      join(role, 'games.yml'),
      [
        'name: games-ns',
        'http: { host: 0.0.0.0, port: 8000 }',
        'stun: { host: 0.0.0.0, port: 3478 }',
        'nats: { url: nats://127.0.0.1:4222 }',
        `tls: { ca: ${DEV_CERTS}/root.crt, cert: ${DEV_CERTS}/games-1.crt, key: ${DEV_CERTS}/games-1.key }`,
        `games: { bucket: GAMES_NS_${sfx} }`,
        // The rendezvous signs relay requests as games-1 (the tls above) and checks the proxy's grants.
        'relay: { proxy: public-proxy-eps-1 }',
        'directory: { url: "https://127.0.0.1:3322/jsonrpc", serverName: sd-1 }',
      ].join('\n'),
    );
    // Relay requests are signed envelopes checked against the directory: the dev sd and its records.
    await startIn(NS.pub, [process.execPath, 'dist/src/cli/sd.js', 'run'], 'sd listening', {
      ...process.env,
      SD_SETTINGS: 'settings/dev/roles/sd-1',
      NATS_URL: 'nats://127.0.0.1:4222',
      LOG_FORMAT: 'json',
    });
    exec(NS.pub, process.execPath, 'dist/src/cli/sd-setup.js');
    // The dev proxy, listening on the public segment.
    const proxyRole = mkdtempSync(join(tmpdir(), 'proxy-role-ns-'));
    dirs.push(proxyRole);
    writeFileSync(join(proxyRole, 'proxy.yml'), `splice: { listen: { host: 0.0.0.0, port: 9999 }, endpoint: "${PUBLIC}:9999" }\n`);
    await startIn(NS.pub, [process.execPath, 'dist/src/cli/proxy.js', 'run', 'public'], 'relaying game peers', {
      ...process.env,
      PROXY_SETTINGS: `settings/dev/roles/public-proxy-1:${proxyRole}`,
      NATS_URL: 'nats://127.0.0.1:4222',
      LOG_FORMAT: 'json',
    });
    await startIn(NS.pub, [process.execPath, 'dist/src/cli/games.js', 'run'], 'stun listening', {
      ...process.env,
      GAMES_SETTINGS: role,
      NATS_URL: 'nats://127.0.0.1:4222',
      LOG_FORMAT: 'json',
    });
  });

  afterAll(async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGKILL');
          }),
      ),
    );
    for (const ns of created) {
      try {
        run('ip', ['netns', 'del', ns]);
      } catch (err) {
        console.warn(`games-nat: could not delete namespace ${ns}: ${(err as Error).message}`);
      }
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('games nat - host and guest behind separate masquerading NATs punch through and report direct', async () => {
    // The peers really are private: neither can be reached on its own address from the other side.
    expect(exec(NS.h, 'ip', '-4', 'addr', 'show', 'eth0')).toContain('10.1.0.2');
    const common = ['--server', `http://${PUBLIC}:8000`, '--name', 'nat-duel'];
    // No --stun: the default, the rendezvous host on 3478, is what the peers use.
    const host = runPeer('host', [...common, '--max-guests', '1'], ['ip', 'netns', 'exec', NS.h]);
    const guest = runPeer('guest', common, ['ip', 'netns', 'exec', NS.g]);
    const [h, g] = await Promise.all([host, guest]);
    const hr = resultOf(h);
    const gr = resultOf(g);
    console.log(`through NATs: host ${JSON.stringify(hr)} guest ${JSON.stringify(gr)}`);
    expect(hr.result).toBe('direct');
    expect(gr.result).toBe('direct');
    // Each saw the other at its NAT's public address, not at a private one.
    expect(hr.peer).toMatch(/^203\.0\.113\.12:\d+$/);
    expect(gr.peer).toMatch(/^203\.0\.113\.11:\d+$/);
    // Both learned their mapping by STUN and announced it along with their private address.
    expect(h.stderr).toMatch(/candidates 10\.1\.0\.2:\d+ 203\.0\.113\.11:\d+/);
    expect(g.stderr).toMatch(/candidates 10\.2\.0\.2:\d+ 203\.0\.113\.12:\d+/);
  });

  it('games nat - behind NATs that map each destination to a new port, punching fails and both peers report relayed through the proxy', async () => {
    const common = ['--server', `http://${PUBLIC}:8000`, '--name', 'symmetric-duel'];
    const [h, g] = await Promise.all([runPeer('host', [...common, '--max-guests', '1'], ['ip', 'netns', 'exec', NS.h2]), runPeer('guest', common, ['ip', 'netns', 'exec', NS.g2])]);
    const hr = resultOf(h);
    const gr = resultOf(g);
    console.log(`through symmetric NATs: host ${JSON.stringify(hr)} guest ${JSON.stringify(gr)}`);
    // Both tried the direct path first, and it failed: the NATs are really symmetric.
    expect(h.stderr).toMatch(/candidates 10\.3\.0\.2:\d+ 203\.0\.113\.13:\d+/);
    expect(g.stderr).toMatch(/candidates 10\.4\.0\.2:\d+ 203\.0\.113\.14:\d+/);
    expect(h.stderr).toContain('punching failed');
    expect(g.stderr).toContain('punching failed');
    expect(hr).toMatchObject({ result: 'relayed', peer: `${PUBLIC}:9999` });
    expect(gr).toMatchObject({ result: 'relayed', peer: `${PUBLIC}:9999` });
    expect(hr.rttMs).toBeGreaterThan(0);
  });
  it('games nat - one host, 10 guests: direct behind a masquerading NAT, relayed behind a symmetric one, any peer id, and a seed-style guest reported as incompatible', async () => {
    const server = `http://${PUBLIC}:8000`;
    const common = ['--server', server, '--name', 'lobby'];
    const inNs = (ns: string) => ['ip', 'netns', 'exec', ns];
    const host = runPeer('host', [...common, '--max-guests', '10'], inNs(NS.h), 60_000);
    // 6 guests behind the masquerading NAT (one with an id of another form, as a seed client would
    // send), 3 behind the symmetric one, and one client that only swaps addresses.
    const anyId = '3b241101-e2bb-4255-8caf-4136c566a962';
    const direct = Array.from({ length: 6 }, (_, i) => runPeer('guest', [...common, ...(i === 0 ? ['--peer-id', anyId] : [])], inNs(NS.g), 60_000));
    const relayed = Array.from({ length: 3 }, () => runPeer('guest', common, inNs(NS.g2), 60_000));
    const seed = runIn(NS.g, [process.execPath, '--input-type=module', '-e', SEED_GUEST, server, PUBLIC, 'lobby', 'player-7']);
    const [h, ...guests] = await Promise.all([host, ...direct, ...relayed]);
    await seed;
    const lines = h.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { result: string; peer: string | null; peerId: string; rttMs: number | null; detail?: string });
    console.log(`one host, 10 guests:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    expect(lines, h.stderr).toHaveLength(10);
    const byId = new Map(lines.map((l) => [l.peerId, l]));
    // Each guest's own line matches the host's line about it.
    const guestResults = guests.map((g) => resultOf(g));
    expect(guestResults.slice(0, 6).map((r) => r.result)).toEqual(Array(6).fill('direct'));
    expect(guestResults.slice(6).map((r) => r.result)).toEqual(Array(3).fill('relayed'));
    expect(lines.filter((l) => l.result === 'direct')).toHaveLength(6);
    expect(lines.filter((l) => l.result === 'relayed')).toHaveLength(3);
    for (const l of lines.filter((x) => x.result === 'direct')) expect(l.peer).toMatch(/^203\.0\.113\.12:\d+$/);
    for (const l of lines.filter((x) => x.result === 'relayed')) expect(l).toMatchObject({ peer: `${PUBLIC}:9999`, rttMs: expect.any(Number) });
    expect(byId.get(anyId)).toMatchObject({ result: 'direct' });
    expect(byId.get('player-7')).toMatchObject({ result: 'incompatible', peer: expect.stringMatching(/^203\.0\.113\.12:\d+$/), rttMs: null });
    expect(byId.get('player-7')!.detail).toContain('does not speak this punching protocol');
    // Not every guest got a path, so the host says so with its exit code.
    expect(h.code).toBe(1);
  }, 90_000);
});
