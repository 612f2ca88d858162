import { describe, expect, it } from 'vitest';
import type { NatsConnection } from '../../src/core/nats.js';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore, StoreUnavailableError } from '../../src/games/game-store.js';
import { buildGamesApi } from '../../src/games/http-api.js';
import { RequestLimiter } from '../../src/games/request-limit.js';
import { answerWhileStoreAway } from '../../src/games/store-outage.js';
import { MemoryLobby } from '../../src/games/lobby.js';
import { MemorySharedCounters } from '../../src/games/shared-limits.js';

/** A store whose every read fails as the KV does when its request was lost with the bus. */
class LostStore extends MemoryGameStore {
  failing = false;
  override async get(name: string) {
    if (this.failing) throw new StoreUnavailableError('game store: get failed: TIMEOUT');
    return super.get(name);
  }
}

async function build() {
  const store = new LostStore();
  const service = new GameService({ store, lobby: new MemoryLobby(), counters: new MemorySharedCounters(), now: () => 1_000_000, hostPollTimeoutMs: 30_000, maxGuests: 2 });
  const app = await buildGamesApi({ service, bodyLimit: 4096, requests: new RequestLimiter({ max: 1000, windowMs: 60_000, maxAddresses: 1000 }, Date.now()) });
  // Only isClosed is read for a connection connectBus did not make: it stands for "not connected".
  const bus = { closed: false, isClosed() { return this.closed; } };
  answerWhileStoreAway(app, bus as unknown as NatsConnection);
  return { app, store, bus };
}

describe('games run while its store is away', () => {
  it('games store outage - with the bus down, store routes answer 503 with Retry-After at once and the store is not asked', async () => {
    const { app, store, bus } = await build();
    expect((await app.inject({ method: 'POST', url: '/games/register', payload: { name: 'chess', peerId: 'h' } })).statusCode).toBe(201);
    bus.closed = true;
    store.failing = true; // would throw if asked: the hook must answer first
    for (const [method, url] of [['GET', '/games/chess'], ['GET', '/games'], ['POST', '/games/poll']] as const) {
      const r = await app.inject({ method, url, ...(method === 'POST' ? { payload: { name: 'chess', peerId: 'h', addresses: [] } } : {}) });
      expect(r.statusCode, `${method} ${url}`).toBe(503);
      expect(r.headers['retry-after']).toBe('1');
      expect(r.json()).toMatchObject({ type: '/problems/storage-unavailable', detail: expect.stringContaining('bus is reconnecting') });
    }
    // What needs no store keeps answering.
    expect((await app.inject({ method: 'GET', url: '/openapi.json' })).statusCode).toBe(200);
    bus.closed = false;
    store.failing = false;
    expect((await app.inject({ method: 'GET', url: '/games/chess' })).statusCode).toBe(200);
    await app.close();
  });

  it('games store outage - a store call that fails while the bus is up (lost in flight) is a 503 with the same Retry-After', async () => {
    const { app, store } = await build();
    store.failing = true;
    const r = await app.inject({ method: 'GET', url: '/games/chess' });
    expect(r.statusCode).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.json()).toMatchObject({ type: '/problems/storage-unavailable' });
    // Other refusals are not touched.
    store.failing = false;
    const missing = await app.inject({ method: 'GET', url: '/games/none' });
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['retry-after']).toBeUndefined();
    await app.close();
  });
});
