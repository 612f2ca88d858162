import { X509Certificate } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from './logger.js';
import { commonNameOf, type TlsMaterial } from './tls-material.js';
import { BUS_WAIT_REPEAT_MS, BUS_WAIT_REPORT_MS, whyBusUnreachable } from './bus-wait.js';

export type { NatsConnection };

export interface BusConnectOptions {
  /**
   * nats://host:port, or several separated by commas (the nodes of a cluster: the connection moves
   * to another one when its node goes); the server requires TLS, which the client upgrades to after INFO.
   */
  url: string;
  /** false: try the URLs in the order given (the first is the process's own node); default true. */
  randomize?: boolean;
  /** The connection's name as nats-server shows it (monitoring, logs). */
  name: string;
  /** The role's certificate: nats-server verifies it against `ca` and maps it to a principal. */
  tls: Pick<TlsMaterial, 'ca' | 'cert' | 'key'>;
  /**
   * true: every request captures a stack trace up front for its timeout error (nats.js's own
   * default). Off here unless asked for: a process making thousands of KV requests a second
   * (games) spent a tenth of its CPU on them (bench/rendezvous-load.ts profile), and on a
   * brokering's path the Error costs the requester and the proxy ~40 µs each when their caches
   * are cold. Our bus layer words every timeout itself, naming the subject and the peer.
   */
  asyncTraces?: boolean;
}

/**
 * The user nats-server's `verify_and_map` finds for a certificate: it tries the DNS names of the
 * subject alternative name before the subject, and every certificate of the dev PKI carries its
 * name as both CN and DNS SAN. The config generator names users with this same function.
 */
export function busPrincipalOf(cert: Buffer | string): string {
  const x509 = new X509Certificate(cert);
  const dns = (x509.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .find((s) => s.startsWith('DNS:'));
  return dns ? dns.slice(4) : commonNameOf(x509);
}

/**
 * Each principal's replies arrive under its own prefix, so the server can let it subscribe to
 * its own inboxes only: nobody else can read its replies, and nobody can publish into them
 * except as a response (allow_responses) to a request it made.
 */
export function inboxPrefixOf(principal: string): string {
  return `_INBOX_${subjectToken(principal)}`;
}

/**
 * Connects to the bus as the principal the role's certificate maps to, and keeps reconnecting
 * forever: a bus outage fails in-flight requests (their callers see a clear error) but never
 * takes a process down. A refused certificate or an unknown principal fails the first connect.
 */
export async function connectBus(opts: BusConnectOptions, log: Logger): Promise<NatsConnection> {
  const principal = busPrincipalOf(opts.tls.cert);
  let nc: NatsConnection;
  // Say what we wait for while nats.js retries the first connection silently.
  let waiting = true;
  const reportWait = async (): Promise<void> => {
    const why = await whyBusUnreachable(opts.url);
    if (!waiting) return;
    log.warn({ waitingFor: 'bus', url: opts.url, why }, `waiting for the bus at ${opts.url}: ${why}; retrying every 250 ms`);
    waitTimer = setTimeout(() => void reportWait(), BUS_WAIT_REPEAT_MS);
  };
  let waitTimer = setTimeout(() => void reportWait(), BUS_WAIT_REPORT_MS);
  try {
    nc = await connect({
      servers: busServers(opts.url),
      noRandomize: opts.randomize === false,
      name: opts.name,
      tls: { ca: opts.tls.ca.toString(), cert: opts.tls.cert.toString(), key: opts.tls.key.toString() },
      inboxPrefix: inboxPrefixOf(principal),
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      // nats.js adds up to 1 s of jitter to each attempt over TLS by default, so a process noticed
      // a returning server up to 1.25 s late; a tenth of that still spreads a fleet's reconnects
      // (they are few: one connection a process) and keeps the return under a second.
      reconnectJitter: 100,
      reconnectJitterTLS: 100,
      waitOnFirstConnect: true,
      noAsyncTraces: opts.asyncTraces !== true,
    });
  } catch (err) {
    waiting = false;
    clearTimeout(waitTimer);
    // Most often a bus without TLS, or one whose generated configuration lacks this principal.
    throw new Error(
      `the bus at ${opts.url} refused ${principal}: ${(err as Error).message} ` +
        '(the bus must be the nats-server running the generated configuration: `make nats-config`)',
      { cause: err },
    );
  }
  waiting = false;
  clearTimeout(waitTimer);
  const link: Link = { connected: true, waiters: new Set(), dropWatchers: new Set() };
  links.set(nc, link);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        link.connected = false;
        for (const drop of [...link.dropWatchers]) drop();
        log.warn({ server: s.server }, 'bus disconnected');
      } else if (s.type === 'reconnect') {
        link.connected = true;
        for (const wake of [...link.waiters]) wake();
        log.info({ server: s.server }, 'bus reconnected');
      } else if (s.type === 'error') log.error({ err: s.error }, 'bus error');
    }
  })();
  // Which node of a cluster it got (make demo-cluster shows it under "what runs where").
  log.info({ url: opts.url, server: nc.getServer(), principal }, 'bus connected');
  return nc;
}

interface Link {
  connected: boolean;
  waiters: Set<() => void>;
  /** Calls in flight that fail at once when the connection drops (untilBusDrops). */
  dropWatchers: Set<() => void>;
}
const links = new WeakMap<NatsConnection, Link>();

/** False while `nc` (made by connectBus) is reconnecting: what is sent now is lost, not late. */
export function isBusConnected(nc: NatsConnection): boolean {
  return !nc.isClosed() && (links.get(nc)?.connected ?? true);
}

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

/** The URLs of a comma-separated bus URL (NATS_URL's form for a cluster). */
export function busServers(url: string): string[] {
  return url
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u.length > 0);
}

/** The bus connection dropped while a call was waiting for its answer. */
export class BusDroppedError extends Error {
  override readonly name = 'BusDroppedError';
}

/**
 * Settles as `op` does, or rejects with BusDroppedError as soon as the connection drops: nats.js
 * keeps a request whose answer was lost with the connection waiting for its whole timeout, and a
 * caller that would retry or answer 503 anyway should know at once. Connections not made by
 * connectBus are not watched.
 */
export function untilBusDrops<T>(nc: NatsConnection, op: Promise<T>): Promise<T> {
  const link = links.get(nc);
  if (!link) return op;
  if (!link.connected) {
    op.catch(() => undefined);
    return Promise.reject(new BusDroppedError('the bus is reconnecting'));
  }
  return new Promise<T>((resolve, reject) => {
    const drop = () => reject(new BusDroppedError('the bus connection dropped before the answer came'));
    link.dropWatchers.add(drop);
    op.then(resolve, reject).finally(() => link.dropWatchers.delete(drop));
  });
}

/** Calls `fn` each time `nc` (made by connectBus) loses its connection. */
export function onEveryBusDrop(nc: NatsConnection, fn: () => void): void {
  links.get(nc)?.dropWatchers.add(fn);
}

/** Operator names may contain dots and other characters NATS treats specially: escape them. */
export function subjectToken(name: string): string {
  return name.replace(/[^A-Za-z0-9_-]/g, (c) => `~${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
