import { cleanup, run, setupGames, startGames, startNats, startNatsCluster, writeResult, type Row } from './rendezvous-stack.js';

// What the cluster profile costs one `games run`: the same games process and load against the
// single nats-server with R1 buckets (the anchor) and a 3-node cluster with R3 buckets, contenders
// alternating round by round (the first one rotating), each round on a fresh bus and games
// process. Rows: a host poll (a KV read and a revision-checked write, replicated at R3) and
// GET /games/:name (one KV read). Everything shares this machine's cores, the three nodes too, so
// the ratio is an upper bound on what R3 costs where each node has a machine of its own.
// Writes bench/results/rendezvous-cluster-<time>.json.

const ROUNDS = Number(process.argv[2] ?? process.env.BENCH_ROUNDS ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);

interface Contender {
  name: string;
  bus: () => Promise<string>;
  replicas: number;
}
const CONTENDERS: Contender[] = [
  { name: 'single R1', bus: startNats, replicas: 1 },
  { name: 'cluster R3', bus: () => startNatsCluster(3), replicas: 3 },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const samples = new Map<string, { poll: Row[]; read: Row[] }>(CONTENDERS.map((c) => [c.name, { poll: [], read: [] }]));
try {
  console.log(`rendezvous on a cluster: ${ROUNDS} rounds, ${CONNECTIONS} connections x ${DURATION_S} s per row, ${CONNECTIONS} games with 2 guests each`);
  for (let round = 0; round < ROUNDS; round++) {
    const order = CONTENDERS.map((_, i) => CONTENDERS[(i + round) % CONTENDERS.length]!);
    for (const c of order) {
      console.log(`round ${round + 1}, ${c.name}:`);
      const games = await startGames(await c.bus(), { replicas: c.replicas });
      const { polls } = await setupGames(games.base, `r${round}`, CONNECTIONS);
      const reads = polls.map((r) => ({ method: 'GET', path: `/games/${encodeURIComponent(JSON.parse(r.body ?? '{}').name)}` }));
      const s = samples.get(c.name)!;
      s.poll.push(await run(`  host poll`, games.base, polls, CONNECTIONS, DURATION_S));
      s.read.push(await run(`  GET /games/:name`, games.base, reads, CONNECTIONS, DURATION_S));
      await cleanup();
    }
  }
  const summary = CONTENDERS.map((c) => {
    const s = samples.get(c.name)!;
    return {
      name: c.name,
      pollRps: median(s.poll.map((r) => r.rps)),
      pollP50: median(s.poll.map((r) => r.p50)),
      pollP99: median(s.poll.map((r) => r.p99)),
      readRps: median(s.read.map((r) => r.rps)),
      readP99: median(s.read.map((r) => r.p99)),
      failures: [...s.poll, ...s.read].reduce((n, r) => n + r.errors + r.non2xx, 0),
    };
  });
  const [anchor, cluster] = summary as [(typeof summary)[number], (typeof summary)[number]];
  console.log('\nmedians over the rounds:');
  for (const x of summary) {
    console.log(`  ${x.name.padEnd(11)} host poll ${x.pollRps.toFixed(0)} req/s (p50 ${x.pollP50.toFixed(1)} ms, p99 ${x.pollP99.toFixed(1)} ms), GET ${x.readRps.toFixed(0)} req/s (p99 ${x.readP99.toFixed(1)} ms), ${x.failures} failures`);
  }
  console.log(
    `cluster R3 / single R1: host poll ${(cluster.pollRps / anchor.pollRps).toFixed(2)}x req/s, p99 ${(cluster.pollP99 / anchor.pollP99).toFixed(2)}x; ` +
      `GET ${(cluster.readRps / anchor.readRps).toFixed(2)}x req/s`,
  );
  const file = writeResult('rendezvous-cluster', { rounds: ROUNDS, connections: CONNECTIONS, durationS: DURATION_S, samples: Object.fromEntries(samples), summary });
  console.log(`wrote ${file}`);
  if (summary.some((x) => x.failures > 0)) process.exitCode = 1;
} finally {
  await cleanup();
}
