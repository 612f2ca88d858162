import { randomBytes } from 'node:crypto';
import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import { createRootLogger } from '../src/core/logger.js';
import { connectBus } from '../src/core/nats.js';
import { readTlsMaterial } from '../src/core/tls-material.js';
import { lobbyBucket } from '../src/games/buckets.js';
import { gameKey, type GameRecord } from '../src/games/game-store.js';
import { KvLobby } from '../src/games/lobby.js';
import { BENCH_BUCKET, CERTS, cleanup, rssMiB, run, startGames, startNats, writeResult, type CannonRequest, type Row } from './rendezvous-stack.js';

// Does a request's cost grow with the number of games? For 1k, 10k and 100k games, a fresh
// nats-server and bucket, filled straight from here as register writes games, then served by one
// real `games run` (the CLI): the RSS of the games process and autocannon rows for the first
// lobby page, the last one, a host poll and a game read. A tenth of the games, the first written,
// are already expired, as games whose hosts left a timeout ago are: the sweep must clear them
// without reading every game; the time it took and the RSS peak meanwhile are printed.
// Writes bench/results/rendezvous-scale-<time>.json.

const SIZES = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number);
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const HOST_POLL_TIMEOUT_MS = 600_000;
const EXPIRED_SHARE = 0.1;
const json = { 'content-type': 'application/json' };

const log = createRootLogger('bench', 'warn');

/** A record as register and a poll with candidates write it; expired ones were last written two timeouts ago. */
function record(i: number, at: number, lobbySeq: number): GameRecord {
  return {
    v: 1,
    secretHash: randomBytes(32).toString('hex'),
    state: 'hosting',
    context: {
      name: `game-${i}`,
      hostPeerId: `host-${i}`,
      createdAt: at,
      lastPollAt: at,
      hostAddresses: [`10.0.${i % 250}.1:40000`, `203.0.113.${i % 250}:50000`],
      guests: [],
      hostPollTimeoutMs: HOST_POLL_TIMEOUT_MS,
      maxGuests: 32,
    },
    lobbySeq,
    writtenAt: at,
  };
}

const levels: unknown[] = [];
try {
  for (const size of SIZES) {
    const natsUrl = await startNats();
    const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/games-1.crt`, key: `${CERTS}/games-1.key` });
    const nc = await connectBus({ url: natsUrl, name: 'bench-fill', tls }, log);
    const kv = await new Kvm(nc).create(BENCH_BUCKET, { history: 1 });
    const lobby = await KvLobby.open(nc, BENCH_BUCKET);
    const jsm = await jetstreamManager(nc);
    const lobbyCount = async () => (await jsm.streams.info(`KV_${lobbyBucket(BENCH_BUCKET)}`)).state.messages;
    const t0 = performance.now();
    const expiring = Math.floor(size * EXPIRED_SHARE);
    const filled = size;
    const live = size - expiring;
    for (let from = 0; from < size; from += 500) {
      await Promise.all(
        Array.from({ length: Math.min(500, size - from) }, async (_, k) => {
          const i = from + k;
          const at = Date.now() - (i < expiring ? 2 * HOST_POLL_TIMEOUT_MS : 0);
          const seq = await lobby.add(`game-${i}`);
          await kv.create(gameKey(`game-${i}`), JSON.stringify(record(i, at, seq)));
        }),
      );
    }
    console.log(`\n${size} games written (${expiring} of them expired) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    // A fresh process per size, so its RSS is what this many games cost it.
    const games = await startGames(natsUrl, { hostPollTimeoutMs: HOST_POLL_TIMEOUT_MS, sweepIntervalMs: 1000 });
    const sweepStart = performance.now();
    let rssPeak = rssMiB(games.pid);
    while ((await lobbyCount()) > live) {
      rssPeak = Math.max(rssPeak, rssMiB(games.pid));
      if (performance.now() - sweepStart > 300_000) throw new Error('the sweep did not clear the expired games in 5 min');
      await new Promise((r) => setTimeout(r, 200));
    }
    const sweepS = (performance.now() - sweepStart) / 1000;
    console.log(`sweep cleared ${expiring} expired games in ${sweepS.toFixed(1)} s (sweeps every 1 s); games RSS peak ${rssPeak.toFixed(0)} MiB`);

    // The last page: walk the cursors from a page near the end (the lobby is in registration order).
    const first = (await (await fetch(`${games.base}/games?limit=20`)).json()) as { games: unknown[]; next?: string };
    let cursor = first.next;
    let lastPath = '/games?limit=20';
    while (cursor) {
      lastPath = `/games?limit=20&cursor=${cursor}`;
      const page = (await (await fetch(games.base + lastPath)).json()) as { next?: string };
      cursor = page.next;
      // Skipping ahead is what a cursor is not for; walking 100k games a page at a time is the cost a client would pay.
    }
    const sample = Array.from({ length: 50 }, (_, k) => filled - 1 - k * Math.floor(live / 50)).filter((i) => i >= 0);
    const polls: CannonRequest[] = sample.map((i) => ({
      method: 'POST',
      path: '/games/poll',
      headers: json,
      body: JSON.stringify({ name: `game-${i}`, peerId: `host-${i}`, addresses: [`203.0.113.${i % 250}:50000`] }),
    }));
    const reads: CannonRequest[] = sample.map((i) => ({ method: 'GET', path: `/games/game-${i}` }));
    const rows: Row[] = [
      await run(`${size}: GET /health`, games.base, [{ method: 'GET', path: '/health' }], CONNECTIONS, DURATION_S),
      await run(`${size}: first lobby page`, games.base, [{ method: 'GET', path: '/games?limit=20' }], CONNECTIONS, DURATION_S),
      await run(`${size}: last lobby page`, games.base, [{ method: 'GET', path: lastPath }], CONNECTIONS, DURATION_S),
      await run(`${size}: host poll`, games.base, polls, CONNECTIONS, DURATION_S),
      await run(`${size}: GET /games/:name`, games.base, reads, CONNECTIONS, DURATION_S),
    ];
    const rss = rssMiB(games.pid);
    const firstBytes = JSON.stringify(first).length;
    console.log(`${size} games: games RSS after the rows ${rss.toFixed(0)} MiB; first page ${firstBytes} bytes`);
    levels.push({ size, expired: expiring, sweepS, rssPeakDuringSweepMiB: rssPeak, rssAfterMiB: rss, firstPageBytes: firstBytes, rows });
    if (rows.some((r) => r.errors > 0 || r.non2xx > 0)) {
      console.log(`games process log tail:\n${games.log()}`);
      process.exitCode = 1;
    }
    await games.stop();
    await nc.close();
    await cleanup();
  }
  console.log(`\nwrote ${writeResult('rendezvous-scale', { connections: CONNECTIONS, durationS: DURATION_S, levels })}`);
} finally {
  await cleanup();
}
