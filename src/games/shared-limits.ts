import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { createBucket } from './create-bucket.js';
import type { Logger } from '../core/logger.js';
import { untilBusDrops, type NatsConnection } from '../core/nats.js';
import { storeCallsOn, StoreContentionError, type StoreCall } from './game-store.js';
import { limitsBucket } from './buckets.js';

// Rate limits every `games run` instance shares: a count per key (a client address) and fixed
// window, in a bucket whose messages age out (max_age), so counters of past windows and of
// addresses never seen again cost nothing after a while and memory stays flat under a flood from
// many addresses. Each count is a revision-checked increment, so two instances never both take
// the last slot.

export type Counted = { type: 'counted'; count: number } | { type: 'limited'; retryAfterMs: number };

export interface SharedCounters {
  /** Counts one more for `key` in the window containing `now`, unless `max` were already counted. */
  hit(key: string, max: number, windowMs: number, now: number): Promise<Counted>;
}

const ATTEMPTS = 20;

/** The decision, pure: the window `now` falls in and whether one more fits. */
export function windowOf(now: number, windowMs: number): { index: number; endsAt: number } {
  const index = Math.floor(now / windowMs);
  return { index, endsAt: (index + 1) * windowMs };
}

export class KvSharedCounters implements SharedCounters {
  private readonly call: StoreCall;
  private constructor(
    private readonly nc: NatsConnection,
    /** The limits bucket; the request limit shares its counts here too (request-limit-sync.ts). */
    readonly kv: KV,
  ) {
    this.call = storeCallsOn(nc);
  }

  /** `keepMs` is the bucket's max_age, set when it is created: at least the longest window counted. */
  static async open(nc: NatsConnection, bucket: string, keepMs: number, replicas = 1, log?: Logger): Promise<KvSharedCounters> {
    return new KvSharedCounters(nc, await createBucket(nc, limitsBucket(bucket), { history: 1, ttl: keepMs, replicas }, log));
  }

  async hit(key: string, max: number, windowMs: number, now: number): Promise<Counted> {
    const w = windowOf(now, windowMs);
    const k = `r.${Buffer.from(key, 'utf8').toString('base64url') || '_'}.${w.index}`;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const entry = await this.call('count get', () => this.kv.get(k));
      const count = entry && entry.operation === 'PUT' ? Number(entry.string()) || 0 : 0;
      if (count >= max) return { type: 'limited', retryAfterMs: w.endsAt - now };
      try {
        const write = entry && entry.operation === 'PUT' ? this.kv.update(k, String(count + 1), entry.revision) : this.kv.create(k, String(count + 1));
        await untilBusDrops(this.nc, write);
        return { type: 'counted', count: count + 1 };
      } catch (err) {
        if (!(err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamWrongLastSequence)) {
          return this.call('count write', () => Promise.reject(err));
        }
      }
    }
    throw new StoreContentionError(`shared counter ${key}: writes kept conflicting`);
  }
}

/** The same contract in memory, for tests that need no bus; one window per key is kept. */
export class MemorySharedCounters implements SharedCounters {
  private readonly counts = new Map<string, { index: number; count: number }>();
  async hit(key: string, max: number, windowMs: number, now: number): Promise<Counted> {
    const w = windowOf(now, windowMs);
    const c = this.counts.get(key);
    const count = c?.index === w.index ? c.count : 0;
    if (count >= max) return { type: 'limited', retryAfterMs: w.endsAt - now };
    this.counts.set(key, { index: w.index, count: count + 1 });
    return { type: 'counted', count: count + 1 };
  }
}
