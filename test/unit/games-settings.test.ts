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
});
