import { barChart } from './bar-chart.js';
import { BENCH_BUCKET, cleanup, GUESTS_PER_GAME, run, setupGames, startGames, startNats, writeResult, type CannonRequest, type Row } from './rendezvous-stack.js';

// What the rendezvous's requests cost under load: one real `games run` process (the CLI from
// dist/, as a user starts it) on a real nats-server with JetStream, hammered by autocannon. The
// ceiling, in the same run and on the same server, is GET /health: the same fastify, rate
// limiter and sockets, no store. Every other row is a ratio against it:
// - GET /games/:name: one KV read;
// - a host poll: a KV read and a revision-checked write of the game's record;
// - a guest start: the same, by the game's guests (two per game);
// - a lobby page (GET /games?limit=20, every page of the lobby in turn): 20 direct gets of the
//   lobby stream, then the 20 games' records;
// - a poll of a few games shared by all connections ("hot"): writes to one record conflict and
//   the service's retry loop (with backoff) shows.
// Writes bench/results/rendezvous-load-<time>.json.

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const SPREAD_GAMES = CONNECTIONS;
const HOT_GAMES = Number(process.env.BENCH_HOT_GAMES ?? 5);
const PAGE = 20;

/** Every page of the lobby, by walking its cursors once. */
async function lobbyPages(base: string): Promise<CannonRequest[]> {
  const pages: CannonRequest[] = [];
  let cursor: string | undefined;
  do {
    const path = `/games?limit=${PAGE}${cursor ? `&cursor=${cursor}` : ''}`;
    pages.push({ method: 'GET', path });
    cursor = ((await (await fetch(base + path)).json()) as { next?: string }).next;
  } while (cursor);
  return pages;
}

try {
  const natsUrl = await startNats();
  const games = await startGames(natsUrl);
  const spread = await setupGames(games.base, 'spread', SPREAD_GAMES);
  const hot = await setupGames(games.base, 'hot', HOT_GAMES);
  const pages = await lobbyPages(games.base);
  console.log(
    `rendezvous load: 1 games process, nats-server JetStream (bucket ${BENCH_BUCKET}), ${CONNECTIONS} connections x ${DURATION_S} s per row, ` +
      `${GUESTS_PER_GAME} guests per game, ${SPREAD_GAMES + HOT_GAMES} games, lobby pages of ${PAGE}`,
  );
  const ceiling = await run('GET /health', games.base, [{ method: 'GET', path: '/health' }], CONNECTIONS, DURATION_S);
  const reads = spread.polls.map((r) => ({ method: 'GET', path: `/games/${encodeURIComponent(JSON.parse(r.body ?? '{}').name)}` }));
  const rows: Row[] = [
    await run('GET /games/:name', games.base, reads, CONNECTIONS, DURATION_S),
    await run(`host poll, ${SPREAD_GAMES} games`, games.base, spread.polls, CONNECTIONS, DURATION_S),
    await run(`guest start, ${SPREAD_GAMES} games`, games.base, spread.starts, CONNECTIONS, DURATION_S),
    await run(`GET /games?limit=${PAGE}`, games.base, pages, CONNECTIONS, DURATION_S),
    await run(`host poll, ${HOT_GAMES} games (hot)`, games.base, hot.polls, CONNECTIONS, DURATION_S),
  ];
  for (const row of rows) {
    console.log(
      `${row.name}: ${row.rps.toFixed(0)} req/s = ${(row.rps / ceiling.rps).toFixed(2)}x GET /health; ` +
        `p99 ${row.p99.toFixed(1)} ms (${(row.p99 / Math.max(ceiling.p99, 1)).toFixed(1)}x); ` +
        `${row.non2xx} non-2xx (${((100 * row.non2xx) / Math.max(row.total, 1)).toFixed(2)}%)`,
    );
  }
  const bars = (value: (r: Row) => number) => [{ label: 'GET /health (anchor)', value: value(ceiling) }, ...rows.map((r) => ({ label: r.name, value: value(r), ours: true }))];
  const chart = barChart(`rendezvous load ${new Date().toISOString()}: ${CONNECTIONS} connections x ${DURATION_S} s per row, one games process`, [
    { title: 'requests per second (higher is better)', bars: bars((r) => r.rps), target: { value: 0.5 * ceiling.rps, label: 'aim: 0.5x GET /health' } },
    { title: 'p99 ms (lower is better)', bars: bars((r) => r.p99), target: { value: 20, label: 'aim: 20 ms' } },
  ]);
  const file = writeResult('rendezvous-load', { connections: CONNECTIONS, durationS: DURATION_S, ceiling, rows, ratios: rows.map((r) => ({ name: r.name, throughput: r.rps / ceiling.rps })) }, chart);
  console.log(`wrote ${file} and .svg`);
  if ([ceiling, ...rows].some((r) => r.errors > 0 || r.non2xx > 0)) {
    console.log(`games process log tail:\n${games.log()}`);
    process.exitCode = 1;
  }
} finally {
  await cleanup();
}
