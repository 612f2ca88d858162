import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { gameSessionMachine, type GameSessionEvent } from '../../machines/game-session.js';
import { pureStepper } from '../../src/core/machine-steps.js';

// pureStepper must step exactly as xstate's transition(): same state, context, status and output
// for every event, along long pseudo-random runs of a game's events.

const step = pureStepper(gameSessionMachine, { name: 's', hostPeerId: 's', at: 0, hostPollTimeoutMs: 1, maxGuests: 1 });

function* events(seed: number): Generator<GameSessionEvent> {
  let x = seed;
  const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
  let at = 1_000;
  for (;;) {
    at += rand(12_000);
    const peerId = `g${rand(5)}`;
    const addresses = rand(3) === 0 ? [] : [`198.51.100.${rand(4)}:5000`];
    switch (rand(7)) {
      case 0:
      case 1:
        yield { type: 'HOST_POLLED', at, addresses };
        break;
      case 2:
      case 3:
        yield { type: 'GUEST_STARTED', at, peerId, addresses };
        break;
      case 4:
        yield { type: 'CLOCK_TICKED', at };
        break;
      case 5:
        yield {
          type: 'RELAY_GRANTED',
          at,
          peerId,
          relay: { sessionId: `s${at}`, tokens: { host: 'h', guest: 'g' }, endpoint: '127.0.0.1:1', expiresAt: at + 5_000, limits: { maxDurationMs: 1, maxBytesPerDirection: 1 } },
        };
        break;
      default:
        yield rand(10) === 0 ? { type: 'DELETED' } : { type: 'RENAMED', newName: `n${rand(3)}` };
    }
  }
}

describe('pureStepper', () => {
  it('pureStepper - steps a game exactly as xstate transition() does, along 50 runs of up to 200 events (until the game ends)', () => {
    let compared = 0;
    for (let seed = 1; seed <= 50; seed++) {
      const input = { name: 'chess', hostPeerId: 'h', at: 0, hostPollTimeoutMs: 30_000, maxGuests: 3 };
      let [ours] = initialTransition(gameSessionMachine, input);
      let theirs = ours;
      let n = 0;
      for (const e of events(seed)) {
        if (ours.status !== 'active' || n++ === 200) break;
        ours = step(ours, e);
        theirs = transition(gameSessionMachine, theirs, e)[0];
        expect({ value: ours.value, context: ours.context, status: ours.status, output: ours.output }).toEqual({
          value: theirs.value,
          context: theirs.context,
          status: theirs.status,
          output: theirs.output,
        });
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(500);
  });
});
