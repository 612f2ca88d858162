import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { BrokeringOutput } from '../../machines/brokering.js';
import { RpcError } from '../../src/core/errors.js';
import { GameRelays } from '../../src/proxy/game-relays.js';
import type { SessionOptions } from '../../src/proxy/session-registry.js';
import { relayGrantSchema } from '../../src/relay/protocol.js';

// The relayRequest handler alone, with a fake `open`: the caps and the grant it signs. The bus
// (signatures, directory permission) is in front of it; see test/hostile/relay-trust.test.ts.

function relays(maxLive: number, maxLivePerRequester: number) {
  const opened: { via: SessionOptions; end: (o: BrokeringOutput) => void }[] = [];
  const r = new GameRelays({
    endpoint: '203.0.113.1:9999',
    dialWithinMs: 10_000,
    maxLive,
    maxLivePerRequester,
    limits: { maxDurationMs: 60_000, maxBytesPerDirection: 1_000_000 },
    log: pino({ level: 'silent' }),
    open: (_request, via) => {
      let end!: (o: BrokeringOutput) => void;
      const done = new Promise<BrokeringOutput>((resolve) => (end = resolve));
      opened.push({ via, end });
      return { sessionId: `s${opened.length}`, tokens: { a: randomBytes(32), b: randomBytes(32) }, challenge: randomBytes(32), done, spliced: done.then(() => false) };
    },
  });
  return { r, opened };
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: RpcError) => ({ code: e.code, message: e.message, data: e.data }),
  );

describe('game relays (the relayRequest handler)', () => {
  it('game relays - a grant carries one token per peer, the endpoint, the deadline and the limits, and opens a session without proofs', async () => {
    const { r, opened } = relays(10, 10);
    const grant = relayGrantSchema.parse(await r.handle({ v: 1, game: 'duel' }, 'games-1'));
    expect(grant).toMatchObject({ sessionId: 's1', endpoint: '203.0.113.1:9999', dialWithinMs: 10_000, limits: { maxDurationMs: 60_000, maxBytesPerDirection: 1_000_000 } });
    expect(grant.tokens.host).not.toBe(grant.tokens.guest);
    expect(opened[0]!.via).toMatchObject({ proofs: false, dialWithinMs: 10_000, limits: { maxDurationMs: 60_000, maxBytesPerDirection: 1_000_000 } });
  });

  it('game relays - malformed params are refused INVALID_PARAMS and open nothing', async () => {
    const { r, opened } = relays(10, 10);
    for (const params of [{}, { v: 2, game: 'g' }, { v: 1, game: '' }, { v: 1, game: 'g', requester: 'someone-else' }, { v: 1, game: 'x'.repeat(65) }]) {
      expect(await refusal(r.handle(params, 'games-1')), JSON.stringify(params)).toMatchObject({ code: -32602 });
    }
    expect(opened).toHaveLength(0);
  });

  it('game relays - the per-requester cap refuses that requester only, the global cap everyone, each with its own message; ended sessions free both', async () => {
    const { r, opened } = relays(3, 2);
    await r.handle({ v: 1, game: 'a' }, 'games-1');
    await r.handle({ v: 1, game: 'b' }, 'games-1');
    expect(await refusal(r.handle({ v: 1, game: 'c' }, 'games-1'))).toEqual({
      code: -32030,
      message: 'Relay refused: too many relay sessions open: games-1 has 2 relay sessions open, its limit of 2 per requester; retry shortly',
      data: { limit: 'requester', max: 2 },
    });
    await r.handle({ v: 1, game: 'd' }, 'games-2');
    expect(await refusal(r.handle({ v: 1, game: 'e' }, 'games-3'))).toEqual({
      code: -32030,
      message: 'Relay refused: too many relay sessions open: the proxy has 3 relay sessions open, its limit of 3; retry shortly',
      data: { limit: 'proxy', max: 3 },
    });
    expect(opened).toHaveLength(3);
    expect([r.live(), r.live('games-1'), r.live('games-2')]).toEqual([3, 2, 1]);
    opened[0]!.end({ outcome: 'aNeverDialed' });
    await new Promise((resolve) => setImmediate(resolve));
    expect([r.live(), r.live('games-1')]).toEqual([2, 1]);
    await r.handle({ v: 1, game: 'f' }, 'games-1');
    expect(opened).toHaveLength(4);
  });
});
