import { describe, expect, it } from 'vitest';
import { gamesSettingsSchema } from '../../src/settings/games-schema.js';
import { loadSettings } from '../../src/settings/load.js';
import { natsUrl } from '../../src/settings/schemas.js';

describe('games settings', () => {
  it('games settings - the dev role folder loads: 0.0.0.0, HTTP 8000, STUN 3478', () => {
    const s = loadSettings(['GAMES_SETTINGS'], gamesSettingsSchema, { GAMES_SETTINGS: 'settings/dev/roles/games-1' });
    expect(s.http).toMatchObject({ host: '0.0.0.0', port: 8000, bodyLimit: 16384, rateLimit: { max: 300, windowMs: 60000 } });
    expect(s.stun).toMatchObject({ host: '0.0.0.0', port: 3478, fingerprint: true });
    expect(s.games).toMatchObject({ bucket: 'EPS_GAMES', hostPollTimeoutMs: 30000, maxGuests: 32 });
    expect(natsUrl(s, {})).toBe('nats://127.0.0.1:4333');
    expect(natsUrl(s, { NATS_URL: 'nats://10.0.0.1:4222' })).toBe('nats://10.0.0.1:4222');
  });

  it('games settings - the dev role asks for relays as the operator games-1, with the directory', () => {
    const s = loadSettings(['GAMES_SETTINGS'], gamesSettingsSchema, { GAMES_SETTINGS: 'settings/dev/roles/games-1' });
    expect(s.relay).toMatchObject({ proxy: 'public-proxy-eps-1' });
    expect(s.tls?.cert).toMatch(/\/certs\/games-1\.crt$/);
    expect(s.directory).toMatchObject({ url: 'https://127.0.0.1:3322/jsonrpc', serverName: 'sd-1' });
  });

  it('games settings - tls is required (the bus maps it to the games principal); a relay without the directory is refused, naming what to set', () => {
    const tls = { ca: 'root.crt', cert: 'games-1.crt', key: 'games-1.key' };
    const issuesOf = (settings: object) => {
      const r = gamesSettingsSchema.safeParse(settings);
      expect(r.success).toBe(false);
      return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issuesOf({ name: 'g', http: { port: 8000 } })).toEqual(['tls: Invalid input: expected object, received undefined']);
    expect(issuesOf({ name: 'g', http: { port: 8000 }, tls, relay: { proxy: 'public-proxy-eps-1' } })).toEqual([
      "directory: relay is set: the proxy's grants are checked against the directory, so set directory { url }",
    ]);
    // Without a relay the rendezvous needs no directory.
    expect(gamesSettingsSchema.safeParse({ name: 'g', http: { port: 8000 }, tls }).success).toBe(true);
  });
});
