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
  const link: Link = { connected: true, waiters: new Set() };
  links.set(nc, link);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        link.connected = false;
        log.warn({ server: s.server }, 'bus disconnected');
      } else if (s.type === 'reconnect') {
        link.connected = true;
        for (const wake of [...link.waiters]) wake();
        log.info({ server: s.server }, 'bus reconnected');
      } else if (s.type === 'error') log.error({ err: s.error }, 'bus error');
    }
  })();
  log.info({ url }, 'bus connected');
  return nc;
}

interface Link {
  connected: boolean;
  waiters: Set<() => void>;
}
const links = new WeakMap<NatsConnection, Link>();

/**
 * Resolves true once `nc` is connected, or false if it is still reconnecting after `timeoutMs`.
 * nats.js discards whatever is published while it is disconnected (every dial attempt resets
 * its outbound buffer), so a request or reply sent then is lost without an error: senders wait
 * here instead. Connections not made by connectBus count as connected.
 */
export function whenConnected(nc: NatsConnection, timeoutMs: number): Promise<boolean> {
  const link = links.get(nc);
  if (!link || link.connected || nc.isClosed()) return Promise.resolve(!nc.isClosed());
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      link.waiters.delete(wake);
      resolve(ok);
    };
    const wake = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    link.waiters.add(wake);
  });
}

/** Operator names may contain dots and other characters NATS treats specially: escape them. */
export function subjectToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
