import { expect } from 'vitest';
import { runCase } from './cases.js';
import { gameReady, newGameCtx, setupGame, startGame, teardownGame } from './game-session.drivers.js';
import { MODELS } from './paths.js';
import { describeModelPaths } from './suite.js';

// One case per path generated from machines/game-session.ts, driven through the real game service
// (src/games/game-service.ts) over a real JetStream KV store, with an injected clock.

const model = MODELS.game!;

describeModelPaths('game-session', 'game-session model paths (real game service, real JetStream KV, injected clock)', model, async (c, natsUrl) => {
  const ctx = newGameCtx();
  try {
    await runCase(model, c, ctx, { setup: (x) => setupGame(x, natsUrl), start: startGame, ready: gameReady });
    const ended = model.model.finals.has(ctx.trace.current);
    expect(ctx.trace.last?.status).toBe(ended ? 'done' : 'active');
    // An ended game leaves no key behind (the checks may have reused the name); an open one
    // is still the one record in the bucket.
    const names: string[] = [];
    for await (const g of ctx.store.inWriteOrder()) names.push(g.name);
    if (!ended) {
      expect(names).toEqual([ctx.name]);
      // ... and the one entry of the lobby: a rename moved it, an end removed it.
      expect((await ctx.lobby.page(0, 10)).entries.map((e) => e.name)).toEqual([ctx.name]);
    }
  } finally {
    await teardownGame(ctx);
  }
});
