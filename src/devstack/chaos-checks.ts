import { get } from 'node:http';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '../core/nats.js';
import { gameKey } from '../games/game-store.js';
import type { GameKeeper } from './chaos-load.js';

// What must hold after the chaos run: the durable state (directory records, game records) is all
// there, the proxies hold no session once the load has stopped, and the replicated streams are
// current on every node again.

/** Every subject of a stream with its message count: what a record lost would change. */
export async function streamSubjects(nc: NatsConnection, stream: string): Promise<{ messages: number; subjects: Record<string, number> }> {
  const info = await (await jetstreamManager(nc)).streams.info(stream, { subjects_filter: '>' });
  return { messages: info.state.messages, subjects: info.state.subjects ?? {} };
}

/** The subjects of `before` missing in `after` or holding fewer messages there. */
export function lostSubjects(before: Record<string, number>, after: Record<string, number>): string[] {
  return Object.entries(before)
    .filter(([subject, n]) => (after[subject] ?? 0) < n)
    .map(([subject]) => subject);
}

export interface GameRecordCheck {
  name: string;
  /** The host process still ran (polled) when checked; a keeper that exited is a finding of its own. */
  hostRunning: boolean;
  hostSaid: string;
  inKv: boolean;
  /** GET /games/:name on every instance, its status. */
  statusByInstance: number[];
}

/** Each keeper's record in the games bucket and as every instance answers it. */
export async function checkGameRecords(nc: NatsConnection, bucket: string, keepers: GameKeeper[], servers: string[]): Promise<GameRecordCheck[]> {
  const kv = await new Kvm(nc).open(bucket);
  const checks: GameRecordCheck[] = [];
  for (const k of keepers) {
    const entry = await kv.get(gameKey(k.name));
    const statusByInstance = await Promise.all(
      servers.map((s) =>
        fetch(`${s}/games/${encodeURIComponent(k.name)}`, { signal: AbortSignal.timeout(5000) }).then(
          async (r) => (await r.arrayBuffer(), r.status),
          () => 0,
        ),
      ),
    );
    checks.push({ name: k.name, hostRunning: k.running, hostSaid: k.running ? '' : k.said, inKv: entry !== null && entry.operation === 'PUT', statusByInstance });
  }
  return checks;
}

/** A proxy's `eps_proxy_live_sessions`, from its metrics port; NaN when it does not answer. */
export function liveSessions(metricsPort: number): Promise<number> {
  return new Promise((resolve) => {
    get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        const line = text.split('\n').find((l) => l.startsWith('eps_proxy_live_sessions '));
        resolve(line ? Number(line.split(' ').pop()) : NaN);
      });
    }).on('error', () => resolve(NaN));
  });
}

/** Polls until `probe` is true or `timeoutMs` passed; whether it became true. */
export async function eventually(probe: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Whether every replica of `stream` is current (a restarted node has caught up). */
export async function replicasCurrent(nc: NatsConnection, stream: string): Promise<boolean> {
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  const replicas = info.cluster?.replicas ?? [];
  return info.cluster?.leader !== undefined && replicas.every((r) => r.current && !r.offline);
}
