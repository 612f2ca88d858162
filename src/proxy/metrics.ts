import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { BROKERING_OUTCOMES, SPLICE_END_REASONS, type BrokeringOutput } from '../../machines/brokering.js';
import { REJECT_REASONS, type SpliceEndpoint } from './splice-endpoint.js';

// Proxy metrics on their own registry (not prom-client's global one), so tests and several
// proxies in one process never collide on metric names.

export interface ProxyMetrics {
  registry: Registry;
  spliced: Counter;
  sessions: Counter<'outcome'>;
  spliceEnds: Counter<'reason'>;
  liveSessions: Gauge;
  parkedSessions: Gauge;
  preambleRejections: Counter<'reason'>;
  relayedBytes: Counter<'direction'>;
}

export interface ProxyMetricsOptions {
  registry?: Registry;
  /** Read at scrape time, so the gauge cannot drift from the registry's own count. */
  liveSessions?: () => number;
  /** The same, for the live sessions whose actor is parked. */
  parkedSessions?: () => number;
}

export function createProxyMetrics(options: ProxyMetricsOptions = {}): ProxyMetrics {
  const registry = options.registry ?? new Registry();
  const readLive = options.liveSessions;
  const readParked = options.parkedSessions;
  const metrics: ProxyMetrics = {
    registry,
    spliced: new Counter({
      name: 'eps_proxy_spliced_total',
      help: 'Sessions in which A and B were spliced together',
      registers: [registry],
    }),
    sessions: new Counter({
      name: 'eps_proxy_sessions_total',
      help: 'Brokering sessions finished, by final state',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    spliceEnds: new Counter({
      name: 'eps_proxy_splice_ends_total',
      help: 'Spliced sessions finished (outcome closed), by why the splice ended: the detail of their output',
      labelNames: ['reason'],
      registers: [registry],
    }),
    liveSessions: new Gauge({
      name: 'eps_proxy_live_sessions',
      help: 'Brokering sessions not yet finished',
      registers: [registry],
      ...(readLive
        ? {
            collect(this: Gauge) {
              this.set(readLive());
            },
          }
        : {}),
    }),
    parkedSessions: new Gauge({
      name: 'eps_proxy_parked_sessions',
      help: 'Live sessions spliced by the native relay whose brokering actor is parked until something reaches them',
      registers: [registry],
      ...(readParked
        ? {
            collect(this: Gauge) {
              this.set(readParked());
            },
          }
        : {}),
    }),
    preambleRejections: new Counter({
      name: 'eps_proxy_preamble_rejections_total',
      help: 'Splice connections dropped before routing, by reason',
      labelNames: ['reason'],
      registers: [registry],
    }),
    relayedBytes: new Counter({
      name: 'eps_proxy_relayed_bytes_total',
      help: 'Bytes relayed between spliced sockets, by direction',
      labelNames: ['direction'],
      registers: [registry],
    }),
  };
  // Zero series up front, so dashboards and alerts see every label before it first happens.
  for (const outcome of BROKERING_OUTCOMES) metrics.sessions.inc({ outcome }, 0);
  for (const reason of SPLICE_END_REASONS) metrics.spliceEnds.inc({ reason }, 0);
  for (const reason of REJECT_REASONS) metrics.preambleRejections.inc({ reason }, 0);
  for (const direction of ['aToB', 'bToA']) metrics.relayedBytes.inc({ direction }, 0);
  return metrics;
}

/**
 * Serves GET /metrics from `registry`; `extra` (the inspector) may answer other paths first by
 * returning true; anything else is 404.
 */
export function startMetricsServer(options: {
  host: string;
  port: number;
  registry: Registry;
  extra?: (req: IncomingMessage, res: ServerResponse) => boolean;
}): Server {
  const { registry } = options;
  const server = createServer((req, res) => {
    if (options.extra?.(req, res)) return;
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  server.listen(options.port, options.host);
  return server;
}

/** The session registry hooks that keep these metrics current; spread into its options. */
export function registryMetricHooks(metrics: ProxyMetrics) {
  // Bound once: inc() with a labels object hashes the labels on every relayed chunk.
  const relayed: Record<string, { inc: (value: number) => void }> = {
    aToB: metrics.relayedBytes.labels({ direction: 'aToB' }),
    bToA: metrics.relayedBytes.labels({ direction: 'bToA' }),
  };
  return {
    onSpliced: (): void => metrics.spliced.inc(),
    onFinished: (_session: unknown, output: BrokeringOutput): void => {
      metrics.sessions.inc({ outcome: output.outcome });
      // The same value the inspector shows as the session's output detail.
      if (output.outcome === 'closed' && output.detail !== undefined) metrics.spliceEnds.inc({ reason: output.detail });
    },
    onRelayed: (direction: string, bytes: number): void => {
      const counter = relayed[direction];
      if (counter) counter.inc(bytes);
      else metrics.relayedBytes.inc({ direction }, bytes);
    },
  };
}

/** Counts the endpoint's refusals by reason. */
export function countRejections(metrics: ProxyMetrics, endpoint: Pick<SpliceEndpoint, 'on'>): void {
  endpoint.on('rejected', (reason) => metrics.preambleRejections.inc({ reason }));
}
