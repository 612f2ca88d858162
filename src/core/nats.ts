import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './logger.js';

export type { NatsConnection };

/**
 * Connects to the bus and keeps reconnecting forever: a bus outage fails in-flight requests
 * (their callers see a clear error) but never takes a process down.
 */
export async function connectBus(url: string, name: string, log: Logger): Promise<NatsConnection> {
  const nc = await connect({
    servers: url,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
  });
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') log.warn({ server: s.server }, 'bus disconnected');
      else if (s.type === 'reconnect') log.info({ server: s.server }, 'bus reconnected');
      else if (s.type === 'error') log.error({ err: s.error }, 'bus error');
    }
  })();
  log.info({ url }, 'bus connected');
  return nc;
}

/** Operator names may contain dots and other characters NATS treats specially: escape them. */
export function subjectToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
