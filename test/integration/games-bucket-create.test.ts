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
    const games = await GamesProcess.launch({ natsUrl: cluster.urls(0), bucket: BUCKET, limits: { replicas: 3 } });
    try {
      // The nodes come back only once the first creation has failed and the instance said it asks
      // again (a fixed pause raced a slow start: the first request was still waiting when they
      // returned, and it succeeded without a retry).
      await games.untilLogged('JetStream did not place it yet; asking again', 25_000);
      expect(games.log).not.toContain('"games http listening"');
      await Promise.all([cluster.startNode(1), cluster.startNode(2)]);
      await games.listening(25_000);
      expect((await games.request('POST', '/games/register', { name: 'elected', peerId: 'h' })).status).toBe(201);
    } finally {
      await games.stop();
    }
  }, 60_000);
});
