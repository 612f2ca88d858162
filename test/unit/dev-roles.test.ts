import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import type { z } from 'zod';
import { loadSettings } from '../../src/settings/load.js';
import { epsSettingsSchema, proxySettingsSchema, sdSettingsSchema } from '../../src/settings/schemas.js';
import { gamesSettingsSchema } from '../../src/settings/games-schema.js';

// Every committed role folder loads with the schema of the process that reads it, so a typo in
// settings/dev fails here instead of when an operator starts the demo.
const roles: Record<string, { envVar: string; schema: z.ZodType }> = {
  'sd-1': { envVar: 'SD_SETTINGS', schema: sdSettingsSchema },
  'public-proxy-1': { envVar: 'PROXY_SETTINGS', schema: proxySettingsSchema },
  'hd-1': { envVar: 'EPS_SETTINGS', schema: epsSettingsSchema },
  'hd-2': { envVar: 'EPS_SETTINGS', schema: epsSettingsSchema },
  'public-proxy-eps-1': { envVar: 'EPS_SETTINGS', schema: epsSettingsSchema },
  'public-proxy-hyper-1': { envVar: 'HYPER_SETTINGS', schema: epsSettingsSchema },
  'games-1': { envVar: 'GAMES_SETTINGS', schema: gamesSettingsSchema },
};

describe('dev roles', () => {
  it('dev roles - every folder under settings/dev/roles has a known process', () => {
    expect(readdirSync('settings/dev/roles').sort()).toEqual(Object.keys(roles).sort());
  });

  for (const [role, { envVar, schema }] of Object.entries(roles)) {
    it(`dev roles - ${role} loads with its schema`, () => {
      const s = loadSettings([envVar], schema, { [envVar]: `settings/dev/roles/${role}` }) as unknown as { name: string };
      expect(s.name).toBe(role);
    });
  }

  // The cluster profile: each folder of settings/cluster/roles is merged after a dev role (a second
  // instance's after the first instance's), as `make demo-cluster` and deploy/ run them.
  const base: Record<string, string> = { 'public-proxy-2': 'public-proxy-1', 'games-2': 'games-1' };
  for (const role of readdirSync('settings/cluster/roles')) {
    it(`dev roles - ${role} of the cluster profile loads over its dev role and lists the three nodes, its own first`, () => {
      const dev = base[role] ?? role;
      const { envVar, schema } = roles[dev]!;
      const s = loadSettings([envVar], schema, { [envVar]: `settings/dev/roles/${dev}:settings/cluster/roles/${role}` }) as unknown as {
        name: string;
        nats: { url: string; randomize: boolean };
      };
      expect(s.name).toBe(role);
      expect(s.nats.url.split(',').sort()).toEqual(['nats://127.0.0.1:4341', 'nats://127.0.0.1:4342', 'nats://127.0.0.1:4343']);
      expect(s.nats.randomize).toBe(false);
    });
  }

  it('dev roles - the cluster profile replicates the directory and the games buckets 3 times, and the second proxy announces its own endpoint', () => {
    expect(loadSettings(['SD_SETTINGS'], sdSettingsSchema, { SD_SETTINGS: 'settings/dev/roles/sd-1:settings/cluster/roles/sd-1' }).replicas).toBe(3);
    for (const g of ['games-1', 'games-2']) {
      expect(loadSettings(['GAMES_SETTINGS'], gamesSettingsSchema, { GAMES_SETTINGS: `settings/dev/roles/games-1:settings/cluster/roles/${g}` }).games.replicas).toBe(3);
    }
    const p1 = loadSettings(['PROXY_SETTINGS'], proxySettingsSchema, { PROXY_SETTINGS: 'settings/dev/roles/public-proxy-1:settings/cluster/roles/public-proxy-1' });
    const p2 = loadSettings(['PROXY_SETTINGS'], proxySettingsSchema, { PROXY_SETTINGS: 'settings/dev/roles/public-proxy-1:settings/cluster/roles/public-proxy-2' });
    expect(p2.operator).toBe(p1.operator);
    expect(p2.queueGroup).toBe(p1.queueGroup);
    expect(p2.splice.endpoint).not.toBe(p1.splice.endpoint);
    expect(p2.splice.endpoint).toBe(`127.0.0.1:${p2.splice.listen.port}`);
    expect(p2.metrics!.port).not.toBe(p1.metrics!.port);
    // The single-node dev roles stay as they were: one URL, R1.
    expect(loadSettings(['SD_SETTINGS'], sdSettingsSchema, { SD_SETTINGS: 'settings/dev/roles/sd-1' }).replicas).toBe(1);
    expect(loadSettings(['SD_SETTINGS'], sdSettingsSchema, { SD_SETTINGS: 'settings/dev/roles/sd-1' }).nats).toEqual({ url: 'nats://127.0.0.1:4333', randomize: true });
  });

  it('dev roles - hd-2 opens no listening port for peers', () => {
    const s = loadSettings(['EPS_SETTINGS'], epsSettingsSchema, { EPS_SETTINGS: 'settings/dev/roles/hd-2' });
    expect(s.jsonrpc).toBeUndefined();
    expect(s.grpc.listen).toBeUndefined();
  });
});
