import { describe, expect, it } from 'vitest';
import { initialTransition } from 'xstate';
import { clockTickIsQuiet, gameSessionMachine, settledState, type GameSessionEvent, type OpenState } from '../../machines/game-session.js';
import { jsonEqual } from '../../machines/json-equal.js';
import { pureStepper } from '../../src/core/machine-steps.js';

// The games service resolves the settled state instead of stepping a quiet CLOCK_TICKED
// (clockTickIsQuiet). That shortcut must give the very snapshot the step gives: the same state,
// context and status, whatever state the record last stored (it may be stale: a pairing that
// completed does not rewrite the game key), along pseudo-random runs of a game's events.

const TIMEOUT = 10_000;
const step = pureStepper(gameSessionMachine, { name: 's', hostPeerId: 's', at: 0, hostPollTimeoutMs: TIMEOUT, maxGuests: 3 });
const STATES: OpenState[] = ['registered', 'hosting', 'paired'];

function* events(seed: number): Generator<GameSessionEvent> {
  let x = seed;
  const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
  let at = 1_000;
  for (;;) {
    at += rand(4_000);
    const addresses = rand(3) === 0 ? [] : [`198.51.100.${rand(4)}:5000`];
    if (rand(2) === 0) yield { type: 'HOST_POLLED', at, addresses };
    else yield { type: 'GUEST_STARTED', at, peerId: `g${rand(5)}`, addresses };
  }
}

describe('quiet clock ticks (pure)', () => {
  it('games machine - resolving the settled state gives the snapshot a quiet CLOCK_TICKED steps to, from any stored state', () => {
    let quiet = 0;
    let loud = 0;
    for (let seed = 1; seed <= 40; seed++) {
      let s = initialTransition(gameSessionMachine, { name: 'g', hostPeerId: 'h', at: 1_000, hostPollTimeoutMs: TIMEOUT, maxGuests: 3 })[0];
      const run = events(seed);
      for (let i = 0; i < 30 && s.status === 'active'; i++) {
        const event = run.next().value as GameSessionEvent;
        s = step(s, event);
        if (s.status !== 'active') break;
        const context = s.context;
        for (const later of [0, 1, TIMEOUT / 2, TIMEOUT - 1, TIMEOUT, TIMEOUT + 1, 3 * TIMEOUT]) {
          const at = ('at' in event ? event.at : 0) + later;
          for (const stored of STATES) {
            const resolved = gameSessionMachine.resolveState({ value: { open: stored }, context });
            const stepped = step(resolved, { type: 'CLOCK_TICKED', at });
            if (!clockTickIsQuiet(context, at)) {
              loud++;
              continue;
            }
            quiet++;
            const shortcut = gameSessionMachine.resolveState({ value: { open: settledState(context) }, context });
            expect(shortcut.status).toBe(stepped.status);
            expect(shortcut.value).toEqual(stepped.value);
            expect(jsonEqual(shortcut.context, stepped.context)).toBe(true);
          }
        }
      }
    }
    // Both kinds were met, so the comparison above did run on quiet ticks of every stored state.
    expect(quiet).toBeGreaterThan(1_000);
    expect(loud).toBeGreaterThan(100);
  });
});
