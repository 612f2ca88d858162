import type { FastifyInstance } from 'fastify';
import { gameSessionMachine } from '../../machines/game-session.js';
import { gamesFeed } from '../inspector/feeds.js';
import { INSPECT_PREFIX, type InspectorHttp } from '../inspector/http.js';
import { createInspector } from '../inspector/index.js';
import type { SessionLog } from '../inspector/session-log.js';
import type { Logger } from '../core/logger.js';
import { DEFAULT_BUS_REQUEST_TIMEOUT_MS } from '../core/constants.js';
import { connectBus, onEveryBusDrop, type NatsConnection } from '../core/nats.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { joinAsOperator, type OperatorPresence } from '../operator/presence.js';
import type { GamesSettings } from '../settings/games-schema.js';
import { natsUrl } from '../settings/schemas.js';
import { relayClient } from '../relay/client.js';
import { GameService } from './game-service.js';
import { CachedGameStore } from './game-cache.js';
import { KvGameStore } from './game-store.js';
import { buildGamesApi } from './http-api.js';
import { KvLobby } from './lobby.js';
import { KvSharedCounters } from './shared-limits.js';
import { RequestLimiter } from './request-limit.js';
import { shareRequestCounts } from './request-limit-sync.js';
import { answerWhileStoreAway } from './store-outage.js';
import { startStunServer, type StunServer } from './stun-server.js';

export const STUN_SOFTWARE = 'eps-p2p games';

export interface RunningGames {
  httpPort: number;
  /** What the inspector has recorded, when it is enabled. */
  inspector?: SessionLog;
  stunPort: number | undefined;
  close(): Promise<void>;
}

/**
 * `games run`: the REST rendezvous over the shared KV bucket, the STUN responder, and the sweep
 * that expires games of silent hosts. Instances share nothing but the bucket, so any number of
 * them can run behind a load balancer.
 */
export async function startGames(settings: GamesSettings, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RunningGames> {
  const nc = await connectBus(
    { url: natsUrl(settings, env), randomize: settings.nats.randomize, name: settings.name, tls: readTlsMaterial(settings.tls) },
    log.child({ component: 'bus' }),
  );
  const relay = settings.relay ? startRelayBus(settings, nc, log) : undefined;
  // On a cluster each bucket is replicated by JetStream (games.replicas): any instance on any node
  // reads and writes the same games, and they outlive the loss of a node.
  const { replicas } = settings.games;
  const kvStore = await KvGameStore.open(nc, settings.games.bucket, replicas, log);
  const store = settings.games.cacheGames > 0 ? await cachedStore(kvStore, nc, settings.games.cacheGames, log) : kvStore;
  const lobby = await KvLobby.open(nc, settings.games.bucket, replicas, log);
  // Counters live twice their window: long enough for the window they count, then they age out.
  const { registerLimit, secretLimit, badSecretLimit } = settings.games;
  const requestLimit = settings.http.rateLimit;
  const longestWindowMs = Math.max(registerLimit.windowMs, secretLimit.windowMs, badSecretLimit.windowMs, requestLimit.windowMs);
  const counters = await KvSharedCounters.open(nc, settings.games.bucket, 2 * longestWindowMs, replicas, log);
  const requests = new RequestLimiter(requestLimit, Date.now());
  const sharing =
    requestLimit.syncMs > 0
      ? shareRequestCounts({ kv: counters.kv, limiter: requests, syncMs: requestLimit.syncMs, now: Date.now, log: log.child({ component: 'request-limit' }) })
      : undefined;
  const inspector = settings.inspector.enabled ? createInspector(settings.inspector, gameSessionMachine, `games ${settings.name}`) : undefined;
  const service = new GameService({
    store,
    lobby,
    counters,
    maxGames: settings.games.maxGames,
    lobbyPageTtlMs: settings.games.lobbyPageTtlMs,
    registerLimit,
    secretLimit,
    badSecretLimit,
    ...(inspector ? { onTransition: gamesFeed(inspector.log) } : {}),
    now: Date.now,
    hostPollTimeoutMs: settings.games.hostPollTimeoutMs,
    maxGuests: settings.games.maxGuests,
    log: log.child({ component: 'games' }),
    ...(relay && settings.relay
      ? {
          requestRelay: relayClient({ bus: relay.bus, proxyOperator: settings.relay.proxy, timeoutMs: settings.relay.timeoutMs }),
          relayTimeoutMs: settings.relay.timeoutMs,
          maxRelaysPerClient: settings.relay.maxPerClient,
          maxRelaysPerGame: settings.relay.maxPerGame,
        }
      : {}),
  });
  const app = await buildGamesApi({
    service,
    bodyLimit: settings.http.bodyLimit,
    requests,
    log: log.child({ component: 'http' }),
  });
  answerWhileStoreAway(app, nc);
  if (inspector) serveInspector(app, inspector.http);
  await app.listen({ host: settings.http.host, port: settings.http.port });
  const httpPort = (app.server.address() as { port: number }).port;
  log.info({ host: settings.http.host, port: httpPort, bucket: settings.games.bucket }, 'games http listening');
  if (inspector) log.info({ path: INSPECT_PREFIX, allowRemote: settings.inspector.allowRemote }, 'inspector served');

  let stun: StunServer | undefined;
  if (settings.stun) {
    stun = await startStunServer({
      host: settings.stun.host,
      port: settings.stun.port,
      ...(settings.stun.software ? { software: STUN_SOFTWARE } : {}),
      fingerprint: settings.stun.fingerprint,
      limits: settings.stun.rateLimit,
      log: log.child({ component: 'stun' }),
    });
  }

  // Every instance sweeps; revision-checked deletes make concurrent sweeps harmless. The next
  // sweep is scheduled when one ends, so a slow sweep delays the next instead of overlapping it.
  let sweeping: Promise<void> = Promise.resolve();
  let sweepTimer: NodeJS.Timeout | undefined;
  let closing = false;
  const scheduleSweep = () => {
    sweepTimer = setTimeout(() => {
      sweeping = service
        .sweep()
        .then(
          (n) => void (n > 0 && log.info({ expired: n }, 'swept expired games')),
          (err: unknown) => log.warn({ err }, 'sweep failed'),
        )
        .then(() => service.cleanLobby())
        .then(
          (n) => void (n > 0 && log.warn({ removed: n }, 'removed lobby entries no game points to (left by a crash or a store failure)')),
          (err: unknown) => log.warn({ err }, 'lobby clean-up failed'),
        )
        .finally(() => void (closing || scheduleSweep()));
    }, settings.games.sweepIntervalMs);
  };
  scheduleSweep();

  return {
    httpPort,
    stunPort: stun?.port,
    ...(inspector ? { inspector: inspector.log } : {}),
    async close() {
      closing = true;
      clearTimeout(sweepTimer);
      // Open event streams would keep the http server from closing.
      inspector?.http.close();
      await app.close();
      await sharing?.stop();
      await stun?.close();
      await sweeping;
      await service.close();
      // What contention this instance met: lost revision checks by key (the games integration tests read it).
      log.info({ writeConflicts: service.writeConflicts }, 'games write conflicts since start');
      await relay?.close();
      await nc.drain();
    },
  };
}

/**
 * The store behind a cache of recent game records, fed by a watch of every game write. The cache
 * forgets everything when the bus drops: what it holds may have moved on meanwhile.
 */
async function cachedStore(kv: KvGameStore, nc: NatsConnection, maxGames: number, log: Logger): Promise<CachedGameStore> {
  const cache = new CachedGameStore(kv, maxGames, log.child({ component: 'game-cache' }));
  void cache.follow(await kv.watchGames());
  onEveryBusDrop(nc, () => cache.clear());
  return cache;
}

/**
 * The rendezvous as a bus operator: its certificate's CN is its name on the bus, its key signs
 * relay requests, and the directory (fetched from the sd on each poke) verifies the
 * proxy's grants. Until the directory has loaded, a relay request fails as an unverifiable reply.
 */
function startRelayBus(settings: GamesSettings, nc: NatsConnection, log: Logger): OperatorPresence {
  if (!settings.directory) throw new Error('relay needs directory settings');
  const tls = readTlsMaterial(settings.tls);
  const presence = joinAsOperator({
    nc,
    operator: tls.commonName,
    tls,
    directory: settings.directory,
    // Games lives in the GAMES account, which holds no directory stream: it receives the sd's
    // pokes (imported from OPS) and catches up from the sd over HTTPS.
    catchUp: 'sd',
    envelopeMaxAgeMs: settings.envelopeMaxAgeMs,
    maxEnvelopeBytes: settings.maxEnvelopeBytes,
    requestTimeoutMs: settings.relay?.timeoutMs ?? DEFAULT_BUS_REQUEST_TIMEOUT_MS,
    log,
  });
  log.info({ operator: tls.commonName, proxy: settings.relay?.proxy }, 'asking for relays on the bus');
  return presence;
}

/**
 * Hands /inspect and everything below it to the inspector's node:http handler, which answers
 * loopback clients only (unless allowed): the games listener faces the internet, so the page
 * cannot rely on the bind address as the proxy's metrics listener does.
 */
export function serveInspector(app: FastifyInstance, http: InspectorHttp): void {
  for (const url of [INSPECT_PREFIX, `${INSPECT_PREFIX}/*`]) {
    app.get(url, { schema: { hide: true } }, (request, reply) => {
      reply.hijack();
      http.handle(request.raw, reply.raw);
    });
  }
}
