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

  it('dev roles - hd-2 opens no listening port for peers', () => {
    const s = loadSettings(['EPS_SETTINGS'], epsSettingsSchema, { EPS_SETTINGS: 'settings/dev/roles/hd-2' });
    expect(s.jsonrpc).toBeUndefined();
    expect(s.grpc.listen).toBeUndefined();
  });
});
