import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gamesSettingsSchema } from '../../src/settings/games-schema.js';
import { loadSettings } from '../../src/settings/load.js';
import { proxySettingsSchema } from '../../src/settings/schemas.js';

const PROXY_ROLE = 'settings/dev/roles/public-proxy-1';

function override(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'eps-inspector-settings-'));
  writeFileSync(join(dir, '90-inspector.yml'), text);
  return dir;
}

describe('inspector settings', () => {
  it('inspector settings - off by default, loopback only, bounded', () => {
    const defaults = { enabled: false, allowRemote: false, maxFinished: 200, maxTimeline: 100 };
    const proxy = loadSettings(['PROXY_SETTINGS'], proxySettingsSchema, { PROXY_SETTINGS: `${PROXY_ROLE}:${override('inspector: { enabled: false }\n')}` });
    expect(proxy.inspector).toEqual(defaults);
    const games = gamesSettingsSchema.parse({ name: 'g', tls: { ca: 'c', cert: 'c', key: 'k' }, http: { port: 8000 } });
    expect(games.inspector).toEqual(defaults);
  });

  it('inspector settings - the dev roles enable it', () => {
    expect(loadSettings(['PROXY_SETTINGS'], proxySettingsSchema, { PROXY_SETTINGS: PROXY_ROLE }).inspector.enabled).toBe(true);
    expect(loadSettings(['GAMES_SETTINGS'], gamesSettingsSchema, { GAMES_SETTINGS: 'settings/dev/roles/games-1' }).inspector).toMatchObject({ enabled: true, allowRemote: false });
  });

  it('inspector settings - the proxy refuses an inspector without the metrics listener that serves it', () => {
    const parsed = proxySettingsSchema.safeParse({
      name: 'p',
      operator: 'o',
      tls: { ca: 'a', cert: 'b', key: 'c' },
      directory: { url: 'https://127.0.0.1:1/jsonrpc' },
      splice: { listen: { port: 1 }, endpoint: '127.0.0.1:1' },
      inspector: { enabled: true },
    });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues[0]).toMatchObject({ path: ['inspector', 'enabled'], message: expect.stringMatching(/metrics/) });
  });

  it('inspector settings - unknown keys under inspector are refused with their file', () => {
    const dir = override('inspector: { enabeld: true }\n');
    expect(() => loadSettings(['PROXY_SETTINGS'], proxySettingsSchema, { PROXY_SETTINGS: `${PROXY_ROLE}:${dir}` })).toThrowError(/90-inspector\.yml.*enabeld/s);
  });
});
