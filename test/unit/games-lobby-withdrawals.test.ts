import { describe, expect, it } from 'vitest';
import { GameService } from '../../src/games/game-service.js';
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
