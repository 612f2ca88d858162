import { expect } from 'vitest';
import { callbackReady, newCallbackCtx, setupCallback, startCallback, teardownCallback } from './callback.drivers.js';
import { runCase } from './cases.js';
import { closedByFarSide, waitUntil } from './harness.js';
import { MODELS } from './paths.js';
import { describeModelPaths } from './suite.js';

// One case per path generated from machines/callback.ts, driven through src/eps/callbacks.ts with
// B's real bus and gRPC server; P is played by the test.

const model = MODELS.callback!;

describeModelPaths('callback', 'callback model paths (real callbacks, real bus, real sockets)', model, async (c, natsUrl) => {
  const ctx = newCallbackCtx();
  try {
    await runCase(model, c, ctx, { setup: (x) => setupCallback(x, natsUrl), start: startCallback, ready: callbackReady });
    if (model.model.finals.has(ctx.trace.current)) {
      // A finished callback is forgotten, and the socket it dialed (if any) is gone.
      await waitUntil(() => ctx.callbacks.liveCount === 0, 'callback forgotten');
      await Promise.all(ctx.splice.sockets.map(closedByFarSide));
    }
    ctx.callbacks.shutdown();
    await waitUntil(() => ctx.callbacks.liveCount === 0, 'no callback left');
    await ctx.server.close(100);
    await Promise.all(ctx.splice.sockets.map(closedByFarSide));
    expect(ctx.trace.last?.status).toBe('done');
  } finally {
    await teardownCallback(ctx);
  }
});
