import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore, StoreUnavailableError, type GameStore } from '../../src/games/game-store.js';
import { buildGamesApi } from '../../src/games/http-api.js';
import { RequestLimiter } from '../../src/games/request-limit.js';
import { MemoryLobby } from '../../src/games/lobby.js';
import { MemorySharedCounters } from '../../src/games/shared-limits.js';
import { PROBLEM_CONTENT_TYPE, PROBLEMS } from '../../src/games/problems.js';

const HOST = ['203.0.113.1:4000', '[2001:db8::1]:4000'];
const GUEST = ['198.51.100.7:5000'];

let now = 1_000_000;
let app: FastifyInstance;

async function build(opts: { store?: GameStore; max?: number; bodyLimit?: number; maxGames?: number; registerLimit?: { max: number; windowMs: number } } = {}) {
  const service = new GameService({
    store: opts.store ?? new MemoryGameStore(),
    lobby: new MemoryLobby(),
    counters: new MemorySharedCounters(),
    now: () => now,
    hostPollTimeoutMs: 30_000,
    maxGuests: 2,
    ...(opts.maxGames ? { maxGames: opts.maxGames } : {}),
    ...(opts.registerLimit ? { registerLimit: opts.registerLimit } : {}),
  });
  return buildGamesApi({ service, bodyLimit: opts.bodyLimit ?? 4096, requests: new RequestLimiter({ max: opts.max ?? 1000, windowMs: 60_000, maxAddresses: 1000 }, Date.now()) });
}

const post = (url: string, payload: unknown) => app.inject({ method: 'POST', url, payload: payload as object });
const json = (r: LightMyRequestResponse) => r.json() as Record<string, unknown>;

function expectProblem(r: LightMyRequestResponse, status: number, slug: string, instance?: string) {
  expect(r.statusCode, r.body).toBe(status);
  expect(r.headers['content-type']).toContain(PROBLEM_CONTENT_TYPE);
  const body = json(r);
  expect(body).toMatchObject({ type: `/problems/${slug}`, status });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  if (instance) expect(body.instance).toBe(instance);
  return body;
}

async function register(name = 'chess', peerId = 'host-1') {
  const r = await post('/games/register', { name, peerId });
  expect(r.statusCode, r.body).toBe(201);
  return json(r) as { game: Record<string, unknown>; secret: string };
}

beforeEach(async () => {
  now = 1_000_000;
  app = await build();
});
afterEach(async () => {
  await app.close();
});

describe('games REST API (inject)', () => {
  it('games api - register answers 201 with the game and a secret, once', async () => {
    const { game, secret } = await register();
    expect(game).toEqual({ name: 'chess', state: 'registered', guests: 0, open: true, createdAt: new Date(now).toISOString() });
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expectProblem(await post('/games/register', { name: 'chess', peerId: 'other' }), 409, 'name-taken', '/games/register');
  });

  it('games api - host poll and guest start swap candidates', async () => {
    await register();
    let poll = json(await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST }));
    expect(poll).toEqual({ status: 0, addresses: [], guests: [] });
    const start = json(await post('/games/start', { name: 'chess', peerId: 'guest-1', addresses: GUEST }));
    expect(start).toEqual({ status: 1, addresses: HOST });
    poll = json(await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST }));
    expect(poll).toEqual({ status: 1, addresses: GUEST, guests: [{ peerId: 'guest-1', addresses: GUEST }] });
    expect(json(await app.inject({ method: 'GET', url: '/games/chess' }))).toMatchObject({ state: 'paired', guests: 1 });
  });

  it('games api - a guest before the host polled gets status 0', async () => {
    await register();
    expect(json(await post('/games/start', { name: 'chess', peerId: 'guest-1', addresses: GUEST }))).toEqual({ status: 0, addresses: [] });
  });

  it('games api - many guests, then the game is full (409)', async () => {
    await register();
    await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST });
    for (const g of ['g1', 'g2']) expect((await post('/games/start', { name: 'chess', peerId: g, addresses: GUEST })).statusCode).toBe(200);
    expectProblem(await post('/games/start', { name: 'chess', peerId: 'g3', addresses: GUEST }), 409, 'game-full');
    const poll = json(await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST }));
    expect(poll.guests).toHaveLength(2);
    expect(poll.addresses).toEqual([...GUEST, ...GUEST]);
  });

  it('games api - only the host may poll, and the host may not join as a guest (403)', async () => {
    await register();
    expectProblem(await post('/games/poll', { name: 'chess', peerId: 'intruder', addresses: HOST }), 403, 'forbidden');
    expectProblem(await post('/games/start', { name: 'chess', peerId: 'host-1', addresses: HOST }), 403, 'forbidden');
  });

  it('games api - unknown games are 404 problems', async () => {
    expectProblem(await post('/games/poll', { name: 'nope', peerId: 'h', addresses: [] }), 404, 'game-not-found');
    expectProblem(await post('/games/start', { name: 'nope', peerId: 'g', addresses: [] }), 404, 'game-not-found');
    expectProblem(await app.inject({ method: 'GET', url: '/games/nope' }), 404, 'game-not-found', '/games/nope');
    expectProblem(await app.inject({ method: 'GET', url: '/nowhere' }), 404, 'route-not-found');
  });

  it('games api - GET /games lists open games without secrets or addresses', async () => {
    await register('a', 'h1');
    now += 1;
    await register('b', 'h2');
    await post('/games/poll', { name: 'a', peerId: 'h1', addresses: HOST });
    const r = await app.inject({ method: 'GET', url: '/games' });
    expect(r.statusCode).toBe(200);
    const { games } = json(r) as { games: Record<string, unknown>[] };
    expect(games.map((g) => [g.name, g.state])).toEqual([['a', 'hosting'], ['b', 'registered']]);
    expect(r.body).not.toMatch(/secret|203\.0\.113|h1/);
  });

  it('games api - GET /games pages with limit and an opaque cursor, oldest first', async () => {
    for (const name of ['a', 'b', 'c', 'd', 'e']) await register(name, `h-${name}`);
    const first = json(await app.inject({ method: 'GET', url: '/games?limit=2' })) as { games: { name: string }[]; next: string };
    expect(first.games.map((g) => g.name)).toEqual(['a', 'b']);
    expect(first.next).toMatch(/^[A-Za-z0-9_-]+$/);
    const second = json(await app.inject({ method: 'GET', url: `/games?limit=2&cursor=${first.next}` })) as { games: { name: string }[]; next: string };
    expect(second.games.map((g) => g.name)).toEqual(['c', 'd']);
    const last = json(await app.inject({ method: 'GET', url: `/games?limit=2&cursor=${second.next}` }));
    expect(last).toEqual({ games: [expect.objectContaining({ name: 'e' })] });
    expect((json(await app.inject({ method: 'GET', url: '/games' })).games as unknown[]).length).toBe(5);
    expectProblem(await app.inject({ method: 'GET', url: '/games?limit=101' }), 400, 'malformed-request', '/games');
    expectProblem(await app.inject({ method: 'GET', url: '/games?cursor=bm90LWEtY3Vyc29y' }), 400, 'malformed-request', '/games');
  });

  it('games api - the games cap answers 503 games-limit with Retry-After, the register rate 429 register-rate-limited', async () => {
    await app.close();
    app = await build({ maxGames: 2, registerLimit: { max: 3, windowMs: 60_000 } });
    const a = await register('a', 'h');
    const b = await register('b', 'h');
    const full = await post('/games/register', { name: 'c', peerId: 'h' });
    expect(expectProblem(full, 503, 'games-limit', '/games/register').detail).toContain('games.maxGames');
    expect(full.headers['retry-after']).toBe('30');
    // The cap answered first: that refusal was not counted against the address.
    expect((await app.inject({ method: 'DELETE', url: '/games/a', headers: { authorization: `Bearer ${a.secret}` } })).statusCode).toBe(204);
    expect((await app.inject({ method: 'DELETE', url: '/games/b', headers: { authorization: `Bearer ${b.secret}` } })).statusCode).toBe(204);
    await register('c', 'h');
    const limited = await post('/games/register', { name: 'd', peerId: 'h' });
    expect(expectProblem(limited, 429, 'register-rate-limited', '/games/register').detail).toContain('games.registerLimit');
    // The window (60 s, aligned) ends 20 s after the injected clock's 1,000,000 ms.
    expect(limited.headers['retry-after']).toBe('20');
    now += 20_000;
    await register('d', 'h');
  });

  it('games api - an expired game disappears (injected clock)', async () => {
    await register();
    now += 30_001;
    expectProblem(await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST }), 404, 'game-not-found');
    expect(json(await app.inject({ method: 'GET', url: '/games' }))).toEqual({ games: [] });
    // The name is free again.
    await register();
  });

  it('games api - rename needs the host secret: 401 without, 403 wrong, 409 taken, 200 right', async () => {
    const { secret } = await register();
    await register('taken', 'h2');
    const put = (auth?: string, newName = 'chess-2') =>
      app.inject({ method: 'PUT', url: `/games/chess?newName=${newName}`, headers: auth ? { authorization: auth } : {} });
    const unauth = await put();
    expectProblem(unauth, 401, 'unauthorized');
    expect(unauth.headers['www-authenticate']).toBe('Bearer');
    expectProblem(await put('Bearer wrong'), 403, 'forbidden');
    expectProblem(await put(`Bearer ${secret}`, 'taken'), 409, 'name-taken');
    const ok = await put(`Bearer ${secret}`);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(json(ok)).toMatchObject({ name: 'chess-2', state: 'registered' });
    expectProblem(await app.inject({ method: 'GET', url: '/games/chess' }), 404, 'game-not-found');
    // The secret moves with the game.
    expect((await app.inject({ method: 'DELETE', url: '/games/chess-2', headers: { authorization: `Bearer ${secret}` } })).statusCode).toBe(204);
  });

  it('games api - delete needs the host secret and removes the game', async () => {
    const { secret } = await register();
    expectProblem(await app.inject({ method: 'DELETE', url: '/games/chess' }), 401, 'unauthorized');
    expectProblem(await app.inject({ method: 'DELETE', url: '/games/chess', headers: { authorization: 'Bearer x' } }), 403, 'forbidden');
    expectProblem(await app.inject({ method: 'DELETE', url: '/games/other', headers: { authorization: `Bearer ${secret}` } }), 404, 'game-not-found');
    const r = await app.inject({ method: 'DELETE', url: '/games/chess', headers: { authorization: `Bearer ${secret}` } });
    expect(r.statusCode).toBe(204);
    expect(r.body).toBe('');
    expectProblem(await app.inject({ method: 'GET', url: '/games/chess' }), 404, 'game-not-found');
  });

  it('games api - malformed bodies, params and queries are 400 problems naming the field', async () => {
    const cases: [string, unknown][] = [
      ['/games/register', { name: 'x' }],
      ['/games/register', { name: '', peerId: 'p' }],
      ['/games/register', { name: 'x'.repeat(65), peerId: 'p' }],
      ['/games/register', { name: 'x', peerId: 'p', extra: 1 }],
      ['/games/poll', { name: 'x', peerId: 'p', addresses: ['1.2.3.4'] }],
      ['/games/poll', { name: 'x', peerId: 'p', addresses: ['256.1.1.1:80'] }],
      ['/games/poll', { name: 'x', peerId: 'p', addresses: ['1.2.3.4:65536'] }],
      ['/games/start', { name: 'x', peerId: 'p', addresses: ['[zz::1]:80'] }],
      ['/games/start', { name: 'x', peerId: 'p', addresses: Array(17).fill('1.2.3.4:5') }],
      ['/games/start', { name: 'x', peerId: 'p', addresses: 'nope' }],
    ];
    for (const [url, body] of cases) {
      const p = expectProblem(await post(url, body), 400, 'malformed-request', url);
      expect(p.detail).toMatch(/body|addresses/);
    }
    expect(expectProblem(await post('/games/start', { name: 'x', peerId: 'p', addresses: ['[1:2:3]:80'] }), 400, 'malformed-request').detail).toContain('IPv6');
    const badJson = await app.inject({ method: 'POST', url: '/games/register', headers: { 'content-type': 'application/json' }, payload: '{"name":' });
    expectProblem(badJson, 400, 'malformed-request');
    expectProblem(await app.inject({ method: 'PUT', url: '/games/chess', headers: { authorization: 'Bearer x' } }), 400, 'malformed-request');
    expectProblem(await app.inject({ method: 'GET', url: `/games/${'%00'}` }), 400, 'malformed-request');
  });

  it('games api - a body over the limit is 413, a non-JSON body 415', async () => {
    const big = await post('/games/register', { name: 'x', peerId: 'p'.repeat(5000) });
    expectProblem(big, 413, 'payload-too-large');
    const text = await app.inject({ method: 'POST', url: '/games/register', headers: { 'content-type': 'text/plain' }, payload: 'hi' });
    expectProblem(text, 415, 'unsupported-media-type');
  });

  it('games api - too many requests are 429 problems', async () => {
    await app.close();
    app = await build({ max: 2 });
    await app.inject({ method: 'GET', url: '/games' });
    await app.inject({ method: 'GET', url: '/games' });
    const r = await app.inject({ method: 'GET', url: '/games' });
    expectProblem(r, 429, 'rate-limited');
    expect(r.headers['retry-after']).toBeDefined();
  });

  it('games api - a failing store is a 503 problem, an unexpected error a 500', async () => {
    await app.close();
    const failing = new MemoryGameStore();
    failing.get = async () => {
      throw new StoreUnavailableError('game store: get failed: TIMEOUT');
    };
    app = await build({ store: failing });
    expectProblem(await app.inject({ method: 'GET', url: '/games/x' }), 503, 'storage-unavailable');
    failing.get = async () => {
      throw new TypeError('boom');
    };
    const r = await app.inject({ method: 'GET', url: '/games/x' });
    expectProblem(r, 500, 'internal-error');
    expect(r.body).not.toContain('boom');
  });

  it('games api - the OpenAPI document is generated from the route schemas', async () => {
    const r = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(r.statusCode).toBe(200);
    const doc = json(r) as { openapi: string; paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual(['/games', '/games/poll', '/games/register', '/games/relay', '/games/start', '/games/{name}', '/health']);
    expect(Object.keys(doc.paths['/games/{name}']!).sort()).toEqual(['delete', 'get', 'put']);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['Problem', 'Game']));
    expect(JSON.stringify(doc.paths['/games/poll'])).toContain('addresses');
    expect(JSON.stringify(doc.paths['/games'])).toContain('cursor');
  });

  it('games api - every problem status the routes can send is in the table', () => {
    const statuses = new Set(Object.values(PROBLEMS).map((p) => p.status));
    for (const s of [400, 401, 403, 404, 409, 413, 415, 429, 500, 503]) expect(statuses.has(s as never)).toBe(true);
  });
  it('games api - a relay request on a rendezvous without a relay is answered 503 relay-unavailable', async () => {
    await register();
    await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST });
    await post('/games/start', { name: 'chess', peerId: 'guest-1', addresses: GUEST });
    await post('/games/poll', { name: 'chess', peerId: 'host-1', addresses: HOST });
    const body = expectProblem(await post('/games/relay', { name: 'chess', peerId: 'guest-1' }), 503, 'relay-unavailable', '/games/relay');
    expect(body.detail).toBe('this rendezvous has no relay configured');
    expectProblem(await post('/games/relay', { name: 'chess', peerId: 'guest-1', guest: 'x'.repeat(129) }), 400, 'malformed-request');
  });
});
