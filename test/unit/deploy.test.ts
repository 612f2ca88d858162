import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { missingNodeFlags, PROXY_NODE_FLAGS } from '../../src/proxy/node-flags.js';

// deploy/ is read by operators, not run by the tests: check that what it names exists and fits
// together (each unit starts a command this repository builds, each instance's variable is the one
// that command reads, each role folder it names is in the repository's settings), and that
// systemd reads the units without a complaint when systemd-analyze is there.

const SYSTEMD = 'deploy/systemd';
const ENV = 'deploy/env';
const unitText = (f: string) => readFileSync(join(SYSTEMD, f), 'utf8');
const VARIABLE: Record<string, string> = { 'sd.js': 'SD_SETTINGS', 'proxy.js': 'PROXY_SETTINGS', 'eps.js': 'EPS_SETTINGS', 'games.js': 'GAMES_SETTINGS' };

describe('deploy', () => {
  it('deploy - every unit but the bus starts a CLI of this repository from /opt/eps/dist, with its instance\'s env file', () => {
    const units = readdirSync(SYSTEMD);
    expect(units.sort()).toEqual(['eps-games@.service', 'eps-nats@.service', 'eps-proxy@.service', 'eps-sd@.service', 'eps-server@.service']);
    for (const unit of units.filter((u) => u !== 'eps-nats@.service')) {
      const exec = /^ExecStart=\/usr\/bin\/node (?:--[a-z-]+=\S+ )*\/opt\/eps\/(dist\/src\/cli\/[a-z-]+)\.js /m.exec(unitText(unit));
      expect(exec, unit).not.toBeNull();
      expect(existsSync(`${exec![1]!.replace(/^dist\//, '')}.ts`), unit).toBe(true);
      expect(unitText(unit)).toContain('EnvironmentFile=/etc/eps/env/%i.env');
    }
  });

  it('deploy - each instance\'s env file sets the variable of its command to a role folder and a cluster profile folder that exist here', () => {
    const commandOf: Record<string, string> = { sd: 'sd.js', 'public-proxy': 'proxy.js', games: 'games.js' };
    for (const file of readdirSync(ENV)) {
      const instance = file.replace(/\.env$/, '');
      const command = Object.entries(commandOf).find(([prefix]) => instance.startsWith(`${prefix}-`) && !instance.startsWith('public-proxy-eps'))?.[1] ?? 'eps.js';
      const line = readFileSync(join(ENV, file), 'utf8').split('\n').find((l) => l && !l.startsWith('#'))!;
      const [variable, folders] = line.split('=') as [string, string];
      expect(variable, file).toBe(VARIABLE[command]);
      const [role, profile] = folders.split(':') as [string, string];
      expect(existsSync(role.replace('/etc/eps/settings/', 'settings/dev/')), `${file}: ${role}`).toBe(true);
      expect(existsSync(profile.replace('/etc/eps/cluster/', 'settings/cluster/')), `${file}: ${profile}`).toBe(true);
      expect(profile.endsWith(`/${instance}`)).toBe(true);
    }
  });

  it('deploy - a proxy starts with the heap flags of node-flags.ts, which its start checks for', () => {
    const flags = /^ExecStart=\/usr\/bin\/node ((?:--[a-z-]+=\S+ )*)\/opt\/eps\/dist\/src\/cli\/proxy\.js /m.exec(unitText('eps-proxy@.service'))![1]!.trim().split(' ');
    expect(flags).toEqual(PROXY_NODE_FLAGS);
    expect(missingNodeFlags(flags)).toEqual([]);
    expect(missingNodeFlags(['--max_semi_space_size=4'])).toEqual(['--heap-growing-percent=50']);
  });

  it('deploy - a proxy stops within its drain: systemd waits longer than the default drainMs and 5 s', () => {
    const stop = Number(/^TimeoutStopSec=(\d+)/m.exec(unitText('eps-proxy@.service'))![1]);
    expect(stop * 1000).toBeGreaterThan(30_000 + 5000);
  });

  it.skipIf(!existsSync('/usr/bin/systemd-analyze'))('deploy - systemd-analyze verify finds nothing to say about the units', () => {
    const dir = mkdtempSync(join(tmpdir(), 'eps-units-'));
    try {
      const instances = readdirSync(SYSTEMD).map((u) => {
        const target = join(dir, u.replace('@', '@x'));
        symlinkSync(resolve(SYSTEMD, u), target);
        return target;
      });
      const run = spawnSync('systemd-analyze', ['verify', ...instances], { encoding: 'utf8' });
      // It warns on stderr (an unknown key, a bad value) and may still exit 0; only what it says
      // about our files counts (it may also speak of the host's own units).
      const ours = `${run.stdout}\n${run.stderr}`.split('\n').filter((l) => l.includes('eps-'));
      expect(ours).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
