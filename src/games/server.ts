import type { Logger } from '../core/logger.js';
import { connectBus } from '../core/nats.js';
import type { GamesSettings } from '../settings/games-schema.js';
import { natsUrl } from '../settings/schemas.js';
import { relayClient } from '../relay/client.js';
import { GameService } from './game-service.js';
import { KvGameStore } from './game-store.js';
import { buildGamesApi } from './http-api.js';
import { startStunServer, type StunServer } from './stun-server.js';

export const STUN_SOFTWARE = 'eps-p2p games';

export interface RunningGames {
  httpPort: number;
  stunPort: number | undefined;
  close(): Promise<void>;
}

/**
 * `games run`: the REST rendezvous over the shared KV bucket, the STUN responder, and the sweep
 * that expires games of silent hosts. Instances share nothing but the bucket, so any number of
 * them can run behind a load balancer.
 */
export async function startGames(settings: GamesSettings, log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<RunningGames> {
  const nc = await connectBus(natsUrl(settings, env), settings.name, log.child({ component: 'bus' }));
  const store = await KvGameStore.open(nc, settings.games.bucket);
  const service = new GameService({
    store,
    now: Date.now,
    hostPollTimeoutMs: settings.games.hostPollTimeoutMs,
    maxGuests: settings.games.maxGuests,
    log: log.child({ component: 'games' }),
    ...(settings.relay
      ? { requestRelay: relayClient({ nc, proxyOperator: settings.relay.proxy, requester: settings.name, timeoutMs: settings.relay.timeoutMs }) }
      : {}),
  });
  const app = await buildGamesApi({
    service,
    bodyLimit: settings.http.bodyLimit,
    rateLimit: settings.http.rateLimit,
    log: log.child({ component: 'http' }),
  });
  await app.listen({ host: settings.http.host, port: settings.http.port });
  const httpPort = (app.server.address() as { port: number }).port;
  log.info({ host: settings.http.host, port: httpPort, bucket: settings.games.bucket }, 'games http listening');

  let stun: StunServer | undefined;
  if (settings.stun) {
    stun = await startStunServer({
      host: settings.stun.host,
      port: settings.stun.port,
      software: STUN_SOFTWARE,
      fingerprint: settings.stun.fingerprint,
      log: log.child({ component: 'stun' }),
    });
  }

  // Every instance sweeps; revision-checked deletes make concurrent sweeps harmless.
  let sweeping: Promise<void> = Promise.resolve();
  const sweepTimer = setInterval(() => {
    sweeping = service.sweep().then(
      (n) => void (n > 0 && log.info({ expired: n }, 'swept expired games')),
      (err: unknown) => log.warn({ err }, 'sweep failed'),
    );
  }, settings.games.sweepIntervalMs);

  return {
    httpPort,
    stunPort: stun?.port,
    async close() {
      clearInterval(sweepTimer);
      await app.close();
      await stun?.close();
      await sweeping;
      await nc.drain();
    },
  };
}
