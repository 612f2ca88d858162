import { describe, expect, it } from 'vitest';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore } from '../../src/games/game-store.js';
import { MemoryLobby } from '../../src/games/lobby.js';

// The sweep reads games least recently written first and stops at the first young open one: it
// reads the expired games and one more, never every game (the store counts what it handed out).

const TIMEOUT = 30_000;

function setup() {
  const clock = { t: 1_000_000 };
  const store = new MemoryGameStore();
  let read = 0;
  const inWriteOrder = store.inWriteOrder.bind(store);
  store.inWriteOrder = async function* (from?: number) {
    for await (const g of inWriteOrder(from)) {
      read++;
      yield g;
    }
  };
  const lobby = new MemoryLobby();
  const service = new GameService({ store, lobby, now: () => clock.t, hostPollTimeoutMs: TIMEOUT, maxGuests: 4 });
  return { clock, service, lobby, reads: () => read };
}

describe('games sweep', () => {
  it('games sweep - expires the silent games and reads one more, not every game', async () => {
    const { clock, service, lobby, reads } = setup();
    for (let i = 0; i < 100; i++) await service.register(`g${i}`, `h${i}`);
    clock.t += TIMEOUT / 2;
    // Half the hosts poll: their records move behind the silent ones.
    for (let i = 0; i < 100; i += 2) await service.poll(`g${i}`, `h${i}`, ['203.0.113.1:4000']);
    clock.t += TIMEOUT / 2 + 1;
    expect(await service.sweep()).toBe(50);
    expect(reads()).toBe(51);
    expect(await lobby.count()).toBe(50);
    expect((await service.list({ after: 0, limit: 100 })).games.map((g) => g.name)).toEqual(Array.from({ length: 50 }, (_, k) => `g${2 * k}`));
    // The next sweep starts at the first record left in place: nothing expired, one read.
    expect(await service.sweep()).toBe(0);
    expect(reads()).toBe(52);
  });
});
