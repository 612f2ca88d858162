import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { gameSessionMachine, onlyLivenessRefreshed, pairingOnlyRefreshed, refreshSlackMs, settledState, type GameSessionContext } from '../../machines/game-session.js';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore } from '../../src/games/game-store.js';
import { MemoryLobby } from '../../src/games/lobby.js';

// Host polls and a guest's repeated starts mostly only move liveness readings forward: the store
// is written when something else changed or when the stored reading would lag by the slack.

const TIMEOUT = 30_000;
const SLACK = refreshSlackMs(TIMEOUT);
const HOST = ['203.0.113.1:4000'];
const GUEST = ['198.51.100.7:5000'];

function contextAfter(...events: Parameters<typeof transition<typeof gameSessionMachine>>[2][]): GameSessionContext {
  let [s] = initialTransition(gameSessionMachine, { name: 'chess', hostPeerId: 'h', at: 0, hostPollTimeoutMs: TIMEOUT, maxGuests: 4 });
  for (const e of events) [s] = transition(gameSessionMachine, s, e);
  return s.context;
}

describe('onlyLivenessRefreshed', () => {
  const stored = contextAfter({ type: 'HOST_POLLED', at: 1_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 1_100, peerId: 'g1', addresses: GUEST });

  it('onlyLivenessRefreshed - a later poll within the slack only refreshes', () => {
    const polled = contextAfter({ type: 'HOST_POLLED', at: 1_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 1_100, peerId: 'g1', addresses: GUEST });
    expect(onlyLivenessRefreshed(stored, { ...polled, lastPollAt: 1_000 + SLACK - 1 }, SLACK)).toBe(true);
  });

  it('onlyLivenessRefreshed - a reading moved by the slack or more, or backwards, must be stored', () => {
    expect(onlyLivenessRefreshed(stored, { ...stored, lastPollAt: 1_000 + SLACK }, SLACK)).toBe(false);
    expect(onlyLivenessRefreshed(stored, { ...stored, lastPollAt: 999 }, SLACK)).toBe(false);
    const guests = stored.guests.map((g) => ({ ...g, lastSeenAt: g.lastSeenAt + SLACK }));
    expect(onlyLivenessRefreshed(stored, { ...stored, guests }, SLACK)).toBe(false);
  });

  it('onlyLivenessRefreshed - new candidates, a new guest or a changed flag must be stored', () => {
    expect(onlyLivenessRefreshed(stored, { ...stored, hostAddresses: ['203.0.113.1:4001'] }, SLACK)).toBe(false);
    const joined = contextAfter(
      { type: 'HOST_POLLED', at: 1_000, addresses: HOST },
      { type: 'GUEST_STARTED', at: 1_100, peerId: 'g1', addresses: GUEST },
      { type: 'GUEST_STARTED', at: 1_200, peerId: 'g2', addresses: GUEST },
    );
    expect(onlyLivenessRefreshed(stored, joined, SLACK)).toBe(false);
    const answered = contextAfter({ type: 'HOST_POLLED', at: 1_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 1_100, peerId: 'g1', addresses: GUEST }, { type: 'HOST_POLLED', at: 1_200, addresses: HOST });
    expect(onlyLivenessRefreshed(stored, answered, SLACK)).toBe(false);
  });
});

describe('pairingOnlyRefreshed and settledState (one pairing record, the state read back)', () => {
  const stored = contextAfter({ type: 'HOST_POLLED', at: 1_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 1_100, peerId: 'g1', addresses: GUEST }).guests[0]!;

  it("pairingOnlyRefreshed - only the guest's reading moved forward by less than the slack", () => {
    expect(pairingOnlyRefreshed(stored, { ...stored, lastSeenAt: stored.lastSeenAt + SLACK - 1 }, SLACK)).toBe(true);
    expect(pairingOnlyRefreshed(stored, { ...stored, lastSeenAt: stored.lastSeenAt + SLACK }, SLACK)).toBe(false);
    expect(pairingOnlyRefreshed(stored, { ...stored, lastSeenAt: stored.lastSeenAt - 1 }, SLACK)).toBe(false);
    expect(pairingOnlyRefreshed(stored, { ...stored, lastSeenAt: stored.lastSeenAt + 1, hostHasCandidates: true }, SLACK)).toBe(false);
    expect(pairingOnlyRefreshed(stored, { ...stored, addresses: ['192.0.2.1:1'] }, SLACK)).toBe(false);
  });

  it('settledState - lands where the machine settles, for every open state', () => {
    const runs: Parameters<typeof contextAfter>[] = [
      [],
      [{ type: 'GUEST_STARTED', at: 1, peerId: 'g1', addresses: GUEST }],
      [{ type: 'HOST_POLLED', at: 1, addresses: HOST }],
      [{ type: 'HOST_POLLED', at: 1, addresses: HOST }, { type: 'GUEST_STARTED', at: 2, peerId: 'g1', addresses: GUEST }],
      [{ type: 'HOST_POLLED', at: 1, addresses: HOST }, { type: 'GUEST_STARTED', at: 2, peerId: 'g1', addresses: GUEST }, { type: 'HOST_POLLED', at: 3, addresses: HOST }],
    ];
    const seen = new Set<string>();
    for (const events of runs) {
      let [s] = initialTransition(gameSessionMachine, { name: 'chess', hostPeerId: 'h', at: 0, hostPollTimeoutMs: TIMEOUT, maxGuests: 4 });
      for (const e of events) [s] = transition(gameSessionMachine, s, e);
      const value = (s.value as { open: string }).open;
      expect(settledState(s.context)).toBe(value);
      seen.add(value);
    }
    expect([...seen].sort()).toEqual(['hosting', 'paired', 'registered']);
  });
});

describe('games store writes for liveness', () => {
  function setup() {
    const clock = { t: 1_000_000 };
    const store = new MemoryGameStore();
    let writes = 0;
    // The game's key and its pairing keys alike.
    const update = store.update.bind(store);
    store.update = (...args) => {
      writes++;
      return update(...args);
    };
    const putPairing = store.putPairing.bind(store);
    store.putPairing = (...args) => {
      writes++;
      return putPairing(...args);
    };
    const service = new GameService({ store, lobby: new MemoryLobby(), now: () => clock.t, hostPollTimeoutMs: TIMEOUT, maxGuests: 4 });
    return { clock, service, writes: () => writes };
  }

  it('games store writes - a host and a guest calling twice a second write a few times per timeout, and the game stays alive', async () => {
    const { clock, service, writes } = setup();
    await service.register('chess', 'h');
    for (let i = 0; i < 240; i++) {
      const poll = await service.poll('chess', 'h', HOST);
      const start = await service.start('chess', 'g1', GUEST);
      expect(poll).toMatchObject({ type: 'polled', status: i === 0 ? 0 : 1 });
      expect(start).toMatchObject({ type: 'started', status: 1, addresses: HOST });
      expect(await service.sweep()).toBe(0);
      clock.t += 500;
    }
    // 120 s of calls: the first poll, the guest's join, the poll that hands it over, and then
    // one write per slack (10 s) for the host's and the guest's readings each.
    expect(writes()).toBeGreaterThanOrEqual(20);
    expect(writes()).toBeLessThanOrEqual(30);
  });

  it('games store writes - a host gone silent still expires within the timeout of its last poll', async () => {
    const { clock, service } = setup();
    await service.register('chess', 'h');
    for (let i = 0; i < 30; i++) {
      await service.poll('chess', 'h', HOST);
      clock.t += 500;
    }
    const lastPoll = clock.t - 500;
    clock.t = lastPoll + TIMEOUT + 1;
    expect(await service.get('chess')).toEqual({ type: 'notFound' });
    expect(await service.sweep()).toBe(1);
  });

  it('games store writes - a host polling just under (1 - slack fraction) of the timeout apart is never expired', async () => {
    const { clock, service } = setup();
    await service.register('chess', 'h');
    for (let i = 0; i < 10; i++) {
      expect(await service.poll('chess', 'h', HOST)).toMatchObject({ type: 'polled' });
      clock.t += TIMEOUT - SLACK - 1;
    }
    expect(await service.get('chess')).toMatchObject({ type: 'found' });
  });
});
