import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevStack } from '../../src/devstack/stack.js';
import { TestNatsServer } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';
import { freePorts } from '../helpers/stack.js';

// A newcomer's mistakes, each made with the real CLI as a user types it: the process must say
// what is wrong (and what to change) instead of a stack trace or a silent minute.

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a bin from dist/ to its end (or kills it after `killAfterMs`, for processes that wait). */
function runBin(bin: string, args: string[], env: Record<string, string> = {}, opts: { killAfterMs?: number; until?: RegExp } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`dist/src/cli/${bin}.js`, ...args], {
      env: { ...process.env, LOG_FORMAT: 'json', SD_SETTINGS: '', PROXY_SETTINGS: '', EPS_SETTINGS: '', HYPER_SETTINGS: '', GAMES_SETTINGS: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const check = () => {
      if (opts.until?.test(stdout + stderr)) child.kill('SIGKILL');
    };
    child.stdout.on('data', (d) => ((stdout += d), check()));
    child.stderr.on('data', (d) => ((stderr += d), check()));
    const timer = opts.killAfterMs ? setTimeout(() => child.kill('SIGKILL'), opts.killAfterMs) : undefined;
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const BINS_WITH_SETTINGS = [
  { bin: 'sd', args: ['run'], env: 'SD_SETTINGS' },
  { bin: 'proxy', args: ['run', 'public'], env: 'PROXY_SETTINGS' },
  { bin: 'eps', args: ['server', 'run'], env: 'EPS_SETTINGS' },
  { bin: 'games', args: ['run'], env: 'GAMES_SETTINGS' },
];

describe('first hour - the command line', () => {
  const helps: [string, string[], RegExp][] = [
    ['sd', ['--help'], /SD_SETTINGS/],
    ['sd', ['run', '--help'], /SD_SETTINGS/],
    ['sd', ['repair', '--help'], /--admin-cert/],
    ['proxy', ['--help'], /PROXY_SETTINGS/],
    ['proxy', ['run', '--help'], /PROXY_SETTINGS/],
    ['proxy', ['run', 'public', '-h'], /NATS_URL/],
    ['eps', ['--help'], /EPS_SETTINGS[\s\S]*HYPER_SETTINGS/],
    ['eps', ['server', 'run', '--help'], /EPS_SETTINGS/],
    ['games', ['--help'], /GAMES_SETTINGS/],
    ['games', ['host', '--help'], /--server/],
    ['games', ['guest', '--help'], /--server/],
    ['games', ['run', '--help'], /GAMES_SETTINGS/],
    ['sd-setup', ['--help'], /SD_URL/],
    ['nats-config', ['--help'], /--settings/],
    ['demo', ['--help'], /NATS_URL/],
    ['demo-cluster', ['-h'], /--once/],
  ];
  it.each(helps)('cli - %s %s prints its help on stdout and exits 0', async (bin, args, mentions) => {
    const r = await runBin(bin, args);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: /);
    expect(r.stdout).toMatch(mentions);
    expect(r.stderr).toBe('');
  });

  const wrong: [string, string[], string][] = [
    ['demo', ['--bogus'], 'demo: unknown argument "--bogus"'],
    ['sd', [], 'sd: missing command: expected "run" or "repair"'],
    ['sd', ['start'], 'sd: unknown command "start": expected "run" or "repair"'],
    ['proxy', ['run'], 'proxy run: missing mode: expected "public"'],
    ['proxy', ['run', 'private'], 'proxy run: unknown mode "private": expected "public"'],
    ['eps', ['server', 'start'], 'eps server: unknown subcommand "start": expected "run"'],
    ['games', ['play'], 'games: unknown command "play": expected "run" or "host" or "guest"'],
    ['games', ['host', '--server', 'http://127.0.0.1:1', '--name', 'g', '--stun', 'nohost:x'], 'games: --stun expects HOST:PORT'],
    ['games', ['host', '--colour', 'red'], "games host: Unknown option '--colour'"],
    ['sd-setup', ['--bogus'], "sd-setup: Unknown option '--bogus'"],
  ];
  it.each(wrong)('cli - %s %s names what is wrong and exits 2', async (bin, args, says) => {
    const r = await runBin(bin, args);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toContain(says);
    expect(r.stderr).toContain('usage: ');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it.each(BINS_WITH_SETTINGS)('cli - $bin with no settings says which variable to set and exits 2', async ({ bin, args, env }) => {
    const r = await runBin(bin, args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`no settings: set ${env}`);
  });

  it('cli - an empty role folder is named as such, and a missing key says "missing"', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eps-empty-role-'));
    const empty = await runBin('eps', ['server', 'run'], { EPS_SETTINGS: dir });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain(`no settings in ${dir}`);
    writeFileSync(join(dir, 'role.yml'), 'name: hd-9\n');
    const partial = await runBin('eps', ['server', 'run'], { EPS_SETTINGS: dir });
    expect(partial.code).toBe(2);
    expect(partial.stderr).toContain('tls: missing: required');
    expect(partial.stderr).not.toContain('received undefined');
  });

  it('cli - a certificate file that is not there is named, without a stack trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eps-role-'));
    writeFileSync(join(dir, 'role.yml'), `tls: { ca: ${dir}/root.crt, cert: ${dir}/sd-1.crt, key: ${dir}/sd-1.key }\nlisten: { port: 0 }\n`);
    const r = await runBin('sd', ['run'], { SD_SETTINGS: `settings/dev/roles/sd-1:${dir}`, NATS_URL: 'nats://127.0.0.1:1' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`sd: cannot start: cannot read ${dir}/(root|sd-1)\\.(crt|key): no such file`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('first hour - waiting and start-up failures', () => {
  let nats: TestNatsServer;
  let noJetStream: TestNatsServer;
  beforeAll(async () => {
    [nats, noJetStream] = await Promise.all([TestNatsServer.start(), TestNatsServer.start({ jetstream: false })]);
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), noJetStream?.stop()]);
  });

  it.each(BINS_WITH_SETTINGS)('cli - $bin says within a few seconds that the bus is unreachable, and where', async ({ bin, args, env }) => {
    const port = await freePort();
    const role = bin === 'sd' ? 'sd-1' : bin === 'proxy' ? 'public-proxy-1' : bin === 'eps' ? 'hd-2' : 'games-1';
    const started = Date.now();
    const r = await runBin(bin, args, { [env]: `settings/dev/roles/${role}`, NATS_URL: `nats://127.0.0.1:${port}` }, { killAfterMs: 15_000, until: /waiting for the bus/ });
    const line = r.stdout.split('\n').find((l) => l.includes('waiting for the bus'));
    expect(line, r.stdout + r.stderr).toBeDefined();
    const entry = JSON.parse(line!) as { waitingFor: string; url: string; why: string; time: number };
    expect(entry.waitingFor).toBe('bus');
    expect(entry.why).toContain(`nothing listens on 127.0.0.1:${port}`);
    // Said one second after the first attempt; the rest is node starting on a busy machine.
    expect(entry.time - started).toBeLessThan(10_000);
  });

  it.each([
    { bin: 'sd', args: ['run'], env: 'SD_SETTINGS', role: 'sd-1' },
    { bin: 'games', args: ['run'], env: 'GAMES_SETTINGS', role: 'games-1' },
  ])('cli - $bin on a bus without JetStream says to start nats-server with -js, and exits 1', async ({ bin, args, env, role }) => {
    const ports = await freePorts();
    const override = mkdtempSync(join(tmpdir(), 'eps-ports-'));
    writeFileSync(join(override, 'ports.yml'), bin === 'sd' ? `listen: { port: ${ports.sd} }\n` : `http: { port: ${ports.games} }\nstun: { port: ${ports.stun} }\n`);
    const r = await runBin(bin, args, { [env]: `settings/dev/roles/${role}:${override}`, NATS_URL: noJetStream.url }, { killAfterMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${bin}: cannot start: JetStream is not enabled on the bus at ${noJetStream.url}: start nats-server with -js`);
  });

  it('cli - a busy port is named with the setting to change, and the stack reports the child that died', async () => {
    const ports = await freePorts();
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(ports.sd, '127.0.0.1', resolve));
    const stack = new DevStack({ natsUrl: nats.url, ports });
    try {
      stack.start('sd-1');
      // The squatter answers on ports.sd: wait on a port nobody listens on, so only the exit ends the wait.
      const failure = await stack.waitUntilListening('sd-1', 1, 20_000).catch((err: Error) => err);
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).toContain('sd-1 exited (code 1)');
      expect((failure as Error).message).toMatch(new RegExp(`port 127\\.0\\.0\\.1:${ports.sd} is already in use by another process: stop it, or change listen\\.port in `));
    } finally {
      await stack.stop();
      squatter.close();
    }
  });
});
