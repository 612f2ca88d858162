import { expect } from 'vitest';
import { brokeringReady, newBrokeringCtx, setupBrokering, startBrokering, teardownBrokering } from './brokering.drivers.js';
import { runCase } from './cases.js';
import { closedByFarSide } from './harness.js';
import { MODELS } from './paths.js';
import { describeModelPaths } from './suite.js';

// One case per path generated from machines/brokering.ts (see derive.ts), driven through the
// real proxy on real sockets and a real nats-server.

const model = MODELS.brokering!;

describeModelPaths('brokering', 'brokering model paths (real proxy, real bus, real sockets)', model, async (c, natsUrl) => {
  const ctx = newBrokeringCtx();
  try {
    await runCase(model, c, ctx, { setup: (x) => setupBrokering(x, natsUrl), start: startBrokering, ready: brokeringReady });
    const final = model.model.finals.has(ctx.trace.current);
    const spliced = c.path.steps.some((s) => s.to === 'holding.spliced');
    if (final) {
      // The session's own verdict agrees with the state the path ended in, as do the metrics.
      const done = await ctx.proxy.sessions[0]!.done;
      expect(done.outcome).toBe(ctx.trace.current);
      expect(await ctx.proxy.sessionCount(ctx.trace.current)).toBe(1);
    }
    expect(await ctx.proxy.splicedCount()).toBe(spliced ? 1 : 0);
    await ctx.proxy.close();
    if (!final) expect((await ctx.proxy.sessions[0]!.done).outcome).toBe('shutDown');
    // Nothing left open: no session, no socket still reading a preamble, every client closed by P.
    expect(ctx.proxy.registry.liveCount()).toBe(0);
    expect(ctx.proxy.endpoint.unroutedCount()).toBe(0);
    await Promise.all(ctx.dialer.sockets.map(closedByFarSide));
  } finally {
    await teardownBrokering(ctx);
  }
});
