import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GamesProcess } from './games-process.js';
import { TestNatsCluster } from '../helpers/nats-cluster.js';

// A `games run` that starts while its cluster cannot place an R3 bucket yet (two of three nodes
// are still down, so JetStream has no meta leader) keeps asking, says so, and serves once the
// nodes are back; before, its first timeout ended it.

const BUCKET = `GAMES_C${process.pid}`;
let cluster: TestNatsCluster;

beforeAll(async () => {
  cluster = await TestNatsCluster.start(3, { buckets: [BUCKET] });
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
});

describe('games run on a cluster that is still electing (real CLI, 3 real nats-servers)', () => {
  it('games buckets - creation waits for JetStream to place the R3 buckets, then the instance serves', async () => {
    await cluster.killNode(1);
    await cluster.killNode(2);
    const starting = GamesProcess.start({ natsUrl: cluster.urls(0), bucket: BUCKET, limits: { replicas: 3 }, listenTimeoutMs: 40_000 });
    // Long enough for the first creation to fail; the nodes come back well inside the deadline.
    await new Promise((r) => setTimeout(r, 6_000));
    await Promise.all([cluster.startNode(1), cluster.startNode(2)]);
    const games = await starting;
    try {
      expect((await games.request('POST', '/games/register', { name: 'elected', peerId: 'h' })).status).toBe(201);
      expect(games.log).toMatch(/JetStream did not place it yet; asking again/);
    } finally {
      await games.stop();
    }
  }, 60_000);
});
