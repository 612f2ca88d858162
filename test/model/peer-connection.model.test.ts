import { expect } from 'vitest';
import { runCase } from './cases.js';
import { waitUntil } from './harness.js';
import { MODELS } from './paths.js';
import { describeModelPaths } from './suite.js';
import { newPeerCtx, setupPeer, startPeer, teardownPeer } from './peer-connection.drivers.js';

// One case per path generated from machines/peer-connection.ts, driven through
// src/eps/peer-channels.ts against a real gRPC server over mTLS (directly or through the proxy).

const model = MODELS.peerConnection!;

describeModelPaths('peer-connection', 'peer-connection model paths (real channels, real TLS, real proxy)', model, async (c, natsUrl) => {
  const ctx = newPeerCtx();
  try {
    await runCase(model, c, ctx, { setup: (x) => setupPeer(x, natsUrl), start: startPeer });
    if (model.model.finals.has(ctx.trace.current)) {
      // A final channel is forgotten, and the socket it held is gone.
      await waitUntil(() => Object.keys(ctx.channels.states()).length === 0, 'channel forgotten');
      if (ctx.relay) await waitUntil(() => ctx.relay!.sockets.every((s) => s.destroyed), 'relay sockets closed');
    }
    await teardownPeer(ctx);
    expect(ctx.channels.states()).toEqual({});
    expect(ctx.proxy?.registry.liveCount() ?? 0).toBe(0);
    expect(ctx.proxy?.endpoint.unroutedCount() ?? 0).toBe(0);
    await waitUntil(() => ctx.callbacks.liveCount === 0, 'no callback left');
  } finally {
    await teardownPeer(ctx);
  }
});
