import type { Server } from 'node:http';
import { brokeringMachine } from '../../machines/brokering.js';
import type { Logger } from '../core/logger.js';
import { connectBus } from '../core/nats.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { joinAsOperator, presenceOptionsFrom } from '../operator/presence.js';
import { brokeringFeed } from '../inspector/feeds.js';
import { createInspector } from '../inspector/index.js';
import type { SessionLog } from '../inspector/session-log.js';
import { natsUrl, type ProxySettings } from '../settings/schemas.js';
import { ConnectionRequests } from './connection-requests.js';
import { RELAY_METHOD } from '../relay/protocol.js';
import { GameRelays } from './game-relays.js';
import { countRejections, createProxyMetrics, registryMetricHooks, startMetricsServer } from './metrics.js';
import { SessionRegistry } from './session-registry.js';
import { SpliceEndpoint } from './splice-endpoint.js';
import { nativeRelayOptions, setNativeRelayOptions } from './native-splice.js';
import { relayPath } from './splicer.js';

/** How long the bus may take to confirm the proxy left its queue group before it stops waiting. */
const DRAIN_BUS_TIMEOUT_MS = 2000;

export interface RunningProxy {
  registry: SessionRegistry;
  /** What the inspector has recorded, when it is enabled. */
  inspector?: SessionLog;
  close(): Promise<void>;
}

/**
 * `proxy run public`: answers connection requests addressed to its operator on the bus (in a
 * queue group shared with other proxy instances), brokers each one as a session machine, and
 * splices the sockets that present the session's token on its endpoint.
 */
export async function startPublicProxy(settings: ProxySettings, log: Logger): Promise<RunningProxy> {
  const tls = readTlsMaterial(settings.tls);
  if (tls.commonName !== settings.operator) {
    throw new Error(`operator ${settings.operator} does not match the certificate's CN ${tls.commonName} (${settings.tls.cert})`);
  }
  // Per process: every session this proxy hands to the native relay is relayed this way.
  setNativeRelayOptions({ mode: settings.splice.relayMode });
  const nc = await connectBus({ url: natsUrl(settings), randomize: settings.nats.randomize, name: `proxy:${settings.name}`, tls }, log);
  const presence = joinAsOperator({
    nc,
    operator: settings.operator,
    tls,
    ...presenceOptionsFrom(settings),
    log,
  });
  const { directory, bus } = presence;

  // Read only when scraped, by which time the registry exists.
  const metrics = createProxyMetrics({ liveSessions: () => registry.liveCount(), parkedSessions: () => registry.parkedCount() });
  const inspector = settings.inspector.enabled ? createInspector(settings.inspector, brokeringMachine, `proxy ${settings.name}`) : undefined;
  const feed = inspector && brokeringFeed(inspector.log);
  const metricHooks = registryMetricHooks(metrics);
  const registry = new SessionRegistry({
    log,
    operator: settings.operator,
    certificateOf: (operator) => directory.entry(operator),
    timeouts: { bDialMs: settings.timeouts.bDialMs, aDialMs: settings.timeouts.aDialMs },
    spliceIdleMs: settings.timeouts.spliceIdleMs,
    ...metricHooks,
    // Without the inspector nothing is added to the per-chunk path or to the actors.
    ...(feed
      ? {
          inspect: feed.inspect,
          onRelayed: (direction, bytes, sessionId) => {
            metricHooks.onRelayed(direction, bytes);
            feed.relayed(direction, bytes, sessionId);
          },
        }
      : {}),
  });
  const requests = new ConnectionRequests({
    operator: settings.operator,
    endpoint: settings.splice.endpoint,
    bDialMs: settings.timeouts.bDialMs,
    bus,
    directory,
    open: (request, via) => registry.open(request, via),
    maxPending: settings.brokering.maxPending,
    maxPendingPerRequester: settings.brokering.maxPendingPerRequester,
    log,
  });

  const endpoint = new SpliceEndpoint({
    host: settings.splice.listen.host,
    port: settings.splice.listen.port,
    route: (preamble, socket, rest) => registry.route(preamble, socket, rest),
    log,
    preambleTimeoutMs: settings.timeouts.preambleMs,
    maxPending: settings.splice.maxPending,
    maxPendingPerAddress: settings.splice.maxPendingPerAddress,
  });
  countRejections(metrics, endpoint);
  const address = await endpoint.listen();
  const relay = relayPath();
  log.info(
    {
      listen: `${address.address}:${address.port}`,
      endpoint: settings.splice.endpoint,
      relay: relay.path,
      ...(relay.why ? { why: relay.why } : { relayMode: nativeRelayOptions().mode }),
    },
    'splice endpoint listening',
  );

  let metricsServer: Server | undefined;
  if (settings.metrics) {
    metricsServer = startMetricsServer({
      host: settings.metrics.host,
      port: settings.metrics.port,
      registry: metrics.registry,
      ...(inspector ? { extra: (req, res) => inspector.http.handle(req, res) } : {}),
    });
    log.info({ url: `http://${settings.metrics.host}:${settings.metrics.port}/metrics` }, 'metrics served');
    if (inspector) log.info({ url: `http://${settings.metrics.host}:${settings.metrics.port}/inspect` }, 'inspector served');
  }

  const relaySettings = settings.gameRelays;
  const relays = relaySettings.enabled
    ? new GameRelays({
        endpoint: settings.splice.endpoint,
        dialWithinMs: relaySettings.dialWithinMs,
        maxLive: relaySettings.maxSessions,
        maxLivePerRequester: relaySettings.maxSessionsPerRequester,
        limits: { maxDurationMs: relaySettings.maxDurationMs, maxBytesPerDirection: relaySettings.maxBytesPerDirection },
        open: (request, via) => registry.open(request, via),
        log,
      })
    : undefined;

  // Serving before the chain is loaded would refuse every caller as an unknown operator; until
  // then callers are told that nobody serves the method, which is what is true. Relay requests
  // are signed by the rendezvous operator, so they wait for the directory too.
  let closing = false;
  void directory.ready().then(() => {
    if (closing) return;
    bus.serve('connectionRequest', requests.handle, { queue: settings.queueGroup });
    log.info({ operator: settings.operator, queue: settings.queueGroup }, 'public proxy brokering');
    if (relays) {
      bus.serve(RELAY_METHOD, relays.handle, { queue: settings.queueGroup });
      log.info({ operator: settings.operator }, 'public proxy relaying game peers');
    }
  });

  return {
    registry,
    ...(inspector ? { inspector: inspector.log } : {}),
    async close() {
      closing = true;
      // Draining (SIGTERM): the queue group's other proxies take every new request from now on;
      // the sessions this proxy holds live on its endpoint, so it keeps serving them (their legs
      // may still dial) until they finish or the deadline passes.
      await bus.drain(DRAIN_BUS_TIMEOUT_MS);
      const live = registry.liveCount();
      if (live > 0) {
        log.info({ live, drainMs: settings.timeouts.drainMs }, 'draining: taking no new sessions, waiting for the live ones to finish');
        const left = await registry.whenIdle(settings.timeouts.drainMs);
        if (left > 0) log.warn({ left, drainMs: settings.timeouts.drainMs }, 'drain deadline passed: ending the sessions still live');
        else log.info('drained: every session finished');
      }
      await registry.shutdown();
      await endpoint.close();
      // Open event streams would keep the metrics server from closing.
      inspector?.http.close();
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      metricsServer?.closeAllConnections();
      await directory.close();
      await nc.drain().catch(() => {});
    },
  };
}
