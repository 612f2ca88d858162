import { describe, expect, it } from 'vitest';
import { GameService, LOBBY_ORPHAN_AGE_MS } from '../../src/games/game-service.js';
import { MemoryGameStore } from '../../src/games/game-store.js';
import { MemoryLobby } from '../../src/games/lobby.js';

// A refused registration's lobby entry counts against the total cap until it is withdrawn: a name
// an open game holds never takes one, and a stopping instance withdraws what is still waiting.

function setup(maxGames: number) {
  const lobby = new MemoryLobby();
  const service = new GameService({ store: new MemoryGameStore(), lobby, maxGames, now: () => 1_000_000, hostPollTimeoutMs: 30_000, maxGuests: 4 });
  return { lobby, service };
}

describe('lobby withdrawals', () => {
  it('lobby withdrawals - a name an open game holds is refused without taking a lobby place', async () => {
    const { lobby, service } = setup(10);
    expect((await service.register('chess', 'h1')).type).toBe('registered');
    expect((await service.register('chess', 'h2')).type).toBe('nameTaken');
    expect(await lobby.count()).toBe(1);
  });

  it('lobby withdrawals - entries refused at the cap wait, and a stopping instance withdraws them', async () => {
    const { lobby, service } = setup(2);
    // Racing registrations: each passes the first count, then ranks its own entry.
    const results = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((name) => service.register(name, `h-${name}`)));
    const registered = results.filter((r) => r.type === 'registered').length;
    expect(registered).toBeLessThanOrEqual(2);
    expect(results.filter((r) => r.type === 'gamesCapReached').length).toBe(5 - registered);
    // The refused entries still count (racers may be ranking against them)...
    expect(await lobby.count()).toBe(5);
    await service.close();
    // ... until the instance stops: then only the games' own entries are left.
    expect(await lobby.count()).toBe(registered);
  });
});

describe('lobby clean-up', () => {
  it('lobby clean-up - removes old entries no game points to, keeps games and young entries, and walks round', async () => {
    const clock = { t: 1_000_000 };
    const lobby = new MemoryLobby(() => clock.t);
    const service = new GameService({ store: new MemoryGameStore(), lobby, now: () => clock.t, hostPollTimeoutMs: 600_000, maxGuests: 4 });
    for (const name of ['a', 'b', 'c']) await service.register(name, `h-${name}`);
    // Orphans: entries whose registration never wrote its game (a crash between the two).
    await lobby.add('lost-1');
    await lobby.add('b');
    clock.t += LOBBY_ORPHAN_AGE_MS + 1;
    await lobby.add('lost-young');
    // Two entries a call: a and b, then c and lost-1, then the duplicate b and the young one.
    expect([await service.cleanLobby(2), await service.cleanLobby(2), await service.cleanLobby(2)]).toEqual([0, 1, 1]);
    expect((await lobby.page(0, 10)).entries.map((e) => e.name)).toEqual(['a', 'b', 'c', 'lost-young']);
    clock.t += LOBBY_ORPHAN_AGE_MS + 1;
    // Round again from the start: the young orphan has aged.
    let removed = 0;
    for (let i = 0; i < 3; i++) removed += await service.cleanLobby(2);
    expect(removed).toBe(1);
    expect(await lobby.count()).toBe(3);
    expect((await service.list({ after: 0, limit: 10 })).games.map((g) => g.name)).toEqual(['a', 'b', 'c']);
  });
});
