import { describe, expect, it } from 'vitest';
import { liveInFlight, moveRelayHold, relayHeldUntil, relayNext, takeRelayHold, type RelayGrant } from '../../machines/game-session.js';
import { MemoryLobby } from '../../src/games/lobby.js';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore, type GameStore } from '../../src/games/game-store.js';
import { clientKeyOf } from '../../src/core/client-address.js';
import { buildGamesApi } from '../../src/games/http-api.js';
import { RequestLimiter } from '../../src/games/request-limit.js';
import { PROBLEM_CONTENT_TYPE } from '../../src/games/problems.js';
import { RelayUnavailableError, type RelaySession } from '../../src/relay/client.js';

// The fairness rules of POST /games/relay: one proxy request per pairing, and caps on the relay
// sessions one client address and one game name hold. First the pure rules (machines/), then the
// service over the in-memory store with a stand-in proxy (the real stack replays the attack in
// test/hostile/relay-trust.test.ts).

const grant = (expiresAt: number, maxDurationMs = 60_000): RelayGrant => ({
  sessionId: `s-${expiresAt}`,
  tokens: { host: 'h', guest: 'g' },
  endpoint: '127.0.0.1:9',
  expiresAt,
  limits: { maxDurationMs, maxBytesPerDirection: 1 },
});

describe('relay fairness rules (pure)', () => {
  it('relay fairness - a live grant is handed out, a live in-flight mark is waited for, otherwise the ask goes to the proxy', () => {
    expect(relayNext({ relay: grant(2_000) }, { id: 'x', until: 5_000 }, 1_000)).toEqual({ type: 'live', relay: grant(2_000) });
    expect(relayNext({}, { id: 'x', until: 5_000 }, 1_000)).toEqual({ type: 'wait', until: 5_000 });
    // An expired grant and an ended mark (a crashed instance's) block nothing.
    expect(relayNext({ relay: grant(1_000) }, { id: 'x', until: 1_000 }, 1_000)).toEqual({ type: 'ask' });
    expect(relayNext({}, undefined, 1_000)).toEqual({ type: 'ask' });
  });

  it('relay fairness - in-flight marks of ended asks and of pairings that are gone are dropped', () => {
    const marks = { g1: { id: 'a', until: 5_000 }, g2: { id: 'b', until: 900 }, gone: { id: 'c', until: 5_000 } };
    expect(liveInFlight(marks, [{ peerId: 'g1' }, { peerId: 'g2' }], 1_000)).toEqual({ g1: { id: 'a', until: 5_000 } });
    expect(liveInFlight(undefined, [], 1_000)).toEqual({});
  });

  it('relay fairness - a hold lasts until the proxy would end the session at the latest', () => {
    expect(relayHeldUntil(grant(10_000, 3_600_000))).toBe(3_610_000);
  });

  it('relay fairness - a cap refuses once full and says when its first slot frees; ended holds free theirs', () => {
    let holds = [] as { id: string; until: number }[];
    for (const id of ['a', 'b']) {
      const r = takeRelayHold(holds, { id, until: id === 'a' ? 8_000 : 9_000 }, 2, 1_000);
      expect(r.type).toBe('taken');
      holds = r.holds;
    }
    expect(takeRelayHold(holds, { id: 'c', until: 9_500 }, 2, 1_000)).toEqual({ type: 'full', holds, retryAt: 8_000 });
    // Taking the same id again is no new slot (a retried write).
    expect(takeRelayHold(holds, { id: 'a', until: 8_500 }, 2, 1_000)).toEqual({ type: 'taken', holds: [holds[1], { id: 'a', until: 8_500 }] });
    // At 8 000 the first hold has ended.
    expect(takeRelayHold(holds, { id: 'c', until: 9_500 }, 2, 8_000)).toEqual({ type: 'taken', holds: [{ id: 'b', until: 9_000 }, { id: 'c', until: 9_500 }] });
  });

  it('relay fairness - a hold is moved to the granted session end, or freed, and ended ones are pruned on the way', () => {
    const holds = [{ id: 'a', until: 8_000 }, { id: 'b', until: 900 }, { id: 'c', until: 5_000 }];
    expect(moveRelayHold(holds, 'a', 20_000, 1_000)).toEqual([{ id: 'a', until: 20_000 }, { id: 'c', until: 5_000 }]);
    expect(moveRelayHold(holds, 'a', undefined, 1_000)).toEqual([{ id: 'c', until: 5_000 }]);
  });
});

/** A stand-in proxy that answers after `delayMs` and counts what it opened. */
function fakeProxy(delayMs = 50) {
  const opened: string[] = [];
  let fail: string | undefined;
  return {
    opened,
    failWith: (why: string | undefined) => void (fail = why),
    request: async (game: string): Promise<RelaySession> => {
      await new Promise((r) => setTimeout(r, delayMs));
      if (fail) throw new RelayUnavailableError(fail);
      opened.push(game);
      const n = opened.length;
      return { sessionId: `session-${n}`, tokens: { host: `host-${n}`, guest: `guest-${n}` }, endpoint: '127.0.0.1:9', dialWithinMs: 10_000, limits: { maxDurationMs: 60_000, maxBytesPerDirection: 1 } };
    },
  };
}

function services(store: GameStore, proxy: ReturnType<typeof fakeProxy>, clock: { t: number }, caps = { perClient: 2, perGame: 3 }) {
  const lobby = new MemoryLobby();
  const make = () =>
    new GameService({
      store,
      lobby,
      now: () => clock.t,
      hostPollTimeoutMs: 30_000,
      maxGuests: 8,
      requestRelay: proxy.request,
      relayTimeoutMs: 1_000,
      relayWaitPollMs: 10,
      maxRelaysPerClient: caps.perClient,
      maxRelaysPerGame: caps.perGame,
    });
  // Two instances over one store, as two `games run` over one bucket.
  return [make(), make()] as const;
}

async function paired(svc: GameService, name: string, guests = ['guest']) {
  expect((await svc.register(name, `host-${name}`)).type).toBe('registered');
  await svc.poll(name, `host-${name}`, ['203.0.113.1:4000']);
  for (const g of guests) await svc.start(name, g, ['198.51.100.1:5000']);
  await svc.poll(name, `host-${name}`, ['203.0.113.1:4000']);
}

describe('relay fairness (service over a shared store)', () => {
  it('relay fairness - concurrent asks for one pairing, on two instances, make one proxy request and all get its session', async () => {
    const store = new MemoryGameStore();
    const proxy = fakeProxy();
    const clock = { t: 1_000_000 };
    const [a, b] = services(store, proxy, clock);
    await paired(a, 'duel');
    const asks = await Promise.all([
      a.relay('duel', 'guest', undefined, '192.0.2.1'),
      b.relay('duel', 'guest', undefined, '192.0.2.1'),
      a.relay('duel', 'host-duel', 'guest', '192.0.2.2'),
      b.relay('duel', 'host-duel', 'guest', '192.0.2.2'),
    ]);
    expect(proxy.opened).toHaveLength(1);
    expect(asks.map((r) => r.type === 'relay' && r.sessionId)).toEqual(['session-1', 'session-1', 'session-1', 'session-1']);
    expect(asks.map((r) => r.type === 'relay' && r.token)).toEqual(['guest-1', 'guest-1', 'host-1', 'host-1']);
    // The mark is gone once the grant is recorded; one slot is held, by whoever asked first.
    expect((await store.get('duel'))!.record.relayInFlight).toBeUndefined();
    const held = (await store.getHolds({ kind: 'client', id: '192.0.2.1' }))?.holds.length ?? 0;
    expect(held + ((await store.getHolds({ kind: 'client', id: '192.0.2.2' }))?.holds.length ?? 0)).toBe(1);
    expect((await store.getHolds({ kind: 'game', id: 'duel' }))!.holds).toEqual([{ id: expect.any(String), until: 1_000_000 + 10_000 + 60_000 }]);
  });

  it("relay fairness - a crashed instance's in-flight mark blocks the pairing only until its deadline", async () => {
    const store = new MemoryGameStore();
    const proxy = fakeProxy(0);
    const clock = { t: 1_000_000 };
    const [a] = services(store, proxy, clock);
    await paired(a, 'crash');
    const stored = (await store.get('crash'))!;
    const guest = stored.pairings[0]!;
    await store.putPairing('crash', { ...guest.record, relayInFlight: { id: 'dead', until: clock.t + 500 } }, guest.revision);
    const waiting = a.relay('crash', 'guest', undefined, '192.0.2.1');
    await new Promise((r) => setTimeout(r, 50));
    expect(proxy.opened).toHaveLength(0);
    clock.t += 500;
    expect(await waiting).toMatchObject({ type: 'relay', sessionId: 'session-1' });
    expect(proxy.opened).toHaveLength(1);
  });

  it('relay fairness - one client address at its cap is refused without asking the proxy, another address is still served', async () => {
    const store = new MemoryGameStore();
    const proxy = fakeProxy(0);
    const clock = { t: 1_000_000 };
    const [a, b] = services(store, proxy, clock, { perClient: 2, perGame: 10 });
    for (const g of ['g1', 'g2', 'g3']) await paired(a, g);
    expect(await a.relay('g1', 'guest', undefined, '192.0.2.66')).toMatchObject({ type: 'relay' });
    clock.t += 1_000;
    expect(await b.relay('g2', 'guest', undefined, '192.0.2.66')).toMatchObject({ type: 'relay' });
    expect(await a.relay('g3', 'guest', undefined, '192.0.2.66')).toEqual({ type: 'relayCapReached', cap: 'client', limit: 2, retryAfterMs: 70_000 - 1_000 });
    expect(proxy.opened).toHaveLength(2);
    // Refused: no mark left behind, so another peer of that pairing is not made to wait.
    expect((await store.get('g3'))!.record.relayInFlight).toBeUndefined();
    expect(await b.relay('g3', 'guest', undefined, '192.0.2.7')).toMatchObject({ type: 'relay', sessionId: 'session-3' });
    // The first slot frees once its session can no longer be open.
    clock.t += 69_000;
    await a.poll('g1', 'host-g1', ['203.0.113.1:4000']);
    expect((await store.getHolds({ kind: 'client', id: '192.0.2.66' }))!.holds).toHaveLength(2);
  });

  it('relay fairness - a game at its cap is refused, even after it is deleted and registered again', async () => {
    const store = new MemoryGameStore();
    const proxy = fakeProxy(0);
    const clock = { t: 1_000_000 };
    const [a] = services(store, proxy, clock, { perClient: 10, perGame: 2 });
    await paired(a, 'fan', ['g1', 'g2', 'g3']);
    expect(await a.relay('fan', 'g1', undefined, '192.0.2.1')).toMatchObject({ type: 'relay' });
    expect(await a.relay('fan', 'g2', undefined, '192.0.2.2')).toMatchObject({ type: 'relay' });
    expect(await a.relay('fan', 'g3', undefined, '192.0.2.3')).toMatchObject({ type: 'relayCapReached', cap: 'game', limit: 2 });
    // The client's slot taken before the game refused is given back.
    expect(await store.getHolds({ kind: 'client', id: '192.0.2.3' })).toBeNull();
    const stored = (await store.get('fan'))!;
    await store.remove('fan', stored.revision);
    await paired(a, 'fan', ['g9']);
    expect(await a.relay('fan', 'g9', undefined, '192.0.2.9')).toMatchObject({ type: 'relayCapReached', cap: 'game' });
    expect(proxy.opened).toHaveLength(2);
  });

  it('relay fairness - a proxy failure frees the slots and the mark', async () => {
    const store = new MemoryGameStore();
    const proxy = fakeProxy(0);
    const clock = { t: 1_000_000 };
    const [a] = services(store, proxy, clock);
    await paired(a, 'down');
    proxy.failWith('no proxy serves relays for p');
    expect(await a.relay('down', 'guest', undefined, '192.0.2.1')).toEqual({ type: 'relayUnavailable', detail: 'no proxy serves relays for p' });
    expect(await store.getHolds({ kind: 'client', id: '192.0.2.1' })).toBeNull();
    expect(await store.getHolds({ kind: 'game', id: 'down' })).toBeNull();
    expect((await store.get('down'))!.record.relayInFlight).toBeUndefined();
    proxy.failWith(undefined);
    expect(await a.relay('down', 'guest', undefined, '192.0.2.1')).toMatchObject({ type: 'relay' });
  });

  it('relay fairness - the REST API answers a full cap 429 with the problem type, the cap named, and Retry-After', async () => {
    const store = new MemoryGameStore();
    const clock = { t: 1_000_000 };
    const [a] = services(store, fakeProxy(0), clock, { perClient: 1, perGame: 10 });
    const app = await buildGamesApi({ service: a, bodyLimit: 4096, requests: new RequestLimiter({ max: 1000, windowMs: 60_000, maxAddresses: 1000 }, Date.now()) });
    try {
      for (const g of ['one', 'two']) await paired(a, g);
      const ask = (name: string) => app.inject({ method: 'POST', url: '/games/relay', payload: { name, peerId: 'guest' }, remoteAddress: '192.0.2.66' });
      expect((await ask('one')).statusCode).toBe(200);
      const r = await ask('two');
      expect(r.statusCode).toBe(429);
      expect(r.headers['content-type']).toContain(PROBLEM_CONTENT_TYPE);
      expect(r.headers['retry-after']).toBe('70');
      expect(r.json()).toEqual({
        type: '/problems/relay-client-limit',
        title: 'This address holds too many relay sessions',
        status: 429,
        detail: '192.0.2.66 holds 1 relay sessions, its limit (relay.maxPerClient); one frees in 70 s',
        instance: '/games/relay',
      });
    } finally {
      await app.close();
    }
  });

  it('relay fairness - a cap counts an IPv4 address, or an IPv6 /64: the addresses of one subscriber share it', async () => {
    expect(clientKeyOf('192.0.2.66')).toBe('192.0.2.66');
    expect(clientKeyOf('::ffff:192.0.2.66')).toBe('192.0.2.66');
    expect(clientKeyOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientKeyOf('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(clientKeyOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientKeyOf('::1')).toBe('0:0:0:0::/64');
    expect(clientKeyOf('1::2:3:4:5:1.2.3.4')).toBe('1:0:2:3::/64');

    const clock = { t: 1_000_000 };
    const store = new MemoryGameStore();
    const [a] = services(store, fakeProxy(0), clock, { perClient: 1, perGame: 10 });
    const app = await buildGamesApi({ service: a, bodyLimit: 4096, requests: new RequestLimiter({ max: 1000, windowMs: 60_000, maxAddresses: 1000 }, Date.now()) });
    try {
      for (const g of ['v6-one', 'v6-two', 'v6-three']) await paired(a, g);
      const ask = (name: string, remoteAddress: string) => app.inject({ method: 'POST', url: '/games/relay', payload: { name, peerId: 'guest' }, remoteAddress });
      expect((await ask('v6-one', '2001:db8:1:2::10')).statusCode).toBe(200);
      const refused = await ask('v6-two', '2001:db8:1:2::11');
      expect(refused.statusCode).toBe(429);
      expect(refused.json()).toMatchObject({ type: '/problems/relay-client-limit', detail: expect.stringContaining('2001:db8:1:2::/64 holds 1 relay sessions') });
      // Another /64 is another client.
      expect((await ask('v6-three', '2001:db8:1:3::10')).statusCode).toBe(200);
    } finally {
      await app.close();
    }
  });
});
