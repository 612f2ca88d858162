import { randomBytes } from 'node:crypto';
import { KvWatchInclude, type KV } from '@nats-io/kv';
import { z } from 'zod';
import type { Logger } from '../core/logger.js';
import { MAX_SHARED_ADDRESSES, type RequestLimiter, type SharedCounts } from './request-limit.js';

// Shares the per-address request counts of the instances of one games store through its limits
// bucket: each instance writes one key of its own per window (`h.<window>.<instance>`), so the
// instances never contend on a key, and watches the others'. The bucket's max_age removes the
// keys of past windows. A report is another process's message: it is validated before it counts.

export interface RequestCountSharing {
  /** This instance's name in the keys: random per process, so a restarted one starts afresh. */
  readonly instance: string;
  stop(): Promise<void>;
}

const ADDRESS_KEY_MAX = 64;

const reportSchema = z.strictObject({
  windowMs: z.number().int().positive(),
  index: z.number().int().nonnegative(),
  counts: z
    .record(z.string().min(1).max(ADDRESS_KEY_MAX), z.number().int().positive())
    .refine((c) => Object.keys(c).length <= MAX_SHARED_ADDRESSES, `at most ${MAX_SHARED_ADDRESSES} addresses`),
});

const keyOf = (index: number, instance: string) => `h.${index}.${instance}`;
/** The instance a key names; undefined when the key is not a report's. */
function instanceOf(key: string): string | undefined {
  return /^h\.\d+\.([0-9a-f]{16})$/.exec(key)?.[1];
}

export function shareRequestCounts(opts: { kv: KV; limiter: RequestLimiter; syncMs: number; now: () => number; log: Logger }): RequestCountSharing {
  const { kv, limiter, log, now } = opts;
  const instance = randomBytes(8).toString('hex');
  let stopped = false;
  let lastWarned = 0;
  const warn = (obj: object, msg: string) => {
    // A hostile or broken writer could send reports as fast as the bus takes them: warn at most
    // once a minute, the rest is dropped silently.
    if (now() - lastWarned < 60_000) return;
    lastWarned = now();
    log.warn(obj, msg);
  };

  let watch: { stop(): void } | undefined;
  const watching = (async () => {
    try {
      const entries = await kv.watch({ key: 'h.>', include: KvWatchInclude.LastValue });
      watch = entries;
      if (stopped) entries.stop();
      for await (const entry of entries) {
        if (stopped) break;
        const from = instanceOf(entry.key);
        if (from === undefined) {
          warn({ key: entry.key }, 'request limit: a key in the limits bucket that no instance writes; ignored');
          continue;
        }
        if (from === instance || entry.operation !== 'PUT') continue;
        const parsed = reportSchema.safeParse(parseJson(entry.string()));
        if (!parsed.success) {
          warn({ key: entry.key, why: parsed.error.issues[0]?.message }, 'request limit: a malformed count report; ignored');
          continue;
        }
        limiter.merge(from, parsed.data, now());
      }
    } catch (err) {
      if (!stopped) log.warn({ err }, 'request limit: the watch of other instances ended; counting on this instance only');
    }
  })();

  let writing: Promise<unknown> = Promise.resolve();
  const timer = setInterval(() => {
    const report: SharedCounts | undefined = limiter.report(now());
    if (!report) return;
    // One write at a time: a slow store must not pile reports up.
    writing = writing.then(() =>
      kv.put(keyOf(report.index, instance), JSON.stringify(report)).catch((err: unknown) => {
        limiter.unsent();
        log.debug({ err }, 'request limit: sharing counts failed; tried again at the next sync');
      }),
    );
  }, opts.syncMs);
  timer.unref();

  return {
    instance,
    async stop() {
      stopped = true;
      clearInterval(timer);
      watch?.stop();
      await writing;
      await watching;
    },
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
