import { JetStreamApiError } from '@nats-io/jetstream';
import { Kvm, type KV, type KvOptions } from '@nats-io/kv';
import type { Logger } from '../core/logger.js';
import type { NatsConnection } from '../core/nats.js';

// Creating a bucket is answered by JetStream's meta leader once it has placed the stream. On a
// cluster that is still electing, or when two `games run` create the same R3 bucket at the same
// moment, that answer can be a timeout or "temporarily unavailable" although the same call succeeds
// a moment later; creation is idempotent for the same configuration, so it is simply asked again.
// What cannot get better by waiting (JetStream off, a refused permission, a different existing
// configuration) fails at once.

/** How long a starting instance keeps asking before it gives up and says why. */
export const BUCKET_CREATE_DEADLINE_MS = 30_000;
const FIRST_PAUSE_MS = 250;
const MAX_PAUSE_MS = 2_000;

/** Whether a failed creation may succeed if asked again. */
export function isPassingBucketFailure(err: unknown): boolean {
  if (err instanceof Error && err.name === 'JetStreamNotEnabled') return false;
  if (err instanceof JetStreamApiError) return err.status === 503 || /temporarily unavailable|no suitable peers|insufficient resources/i.test(err.message);
  const text = err instanceof Error ? `${err.name} ${err.message}` : String(err);
  return /timeout|temporarily unavailable|no suitable peers/i.test(text);
}

export async function createBucket(nc: NatsConnection, name: string, opts: Partial<KvOptions>, log?: Logger, deadlineMs = BUCKET_CREATE_DEADLINE_MS): Promise<KV> {
  const giveUpAt = Date.now() + deadlineMs;
  for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(2 * pause, MAX_PAUSE_MS)) {
    try {
      return await new Kvm(nc).create(name, opts);
    } catch (err) {
      if (!isPassingBucketFailure(err) || Date.now() + pause > giveUpAt) throw err;
      log?.warn({ bucket: name, why: err instanceof Error ? err.message : String(err), retryInMs: pause }, `creating bucket ${name}: JetStream did not place it yet; asking again`);
      await new Promise((r) => setTimeout(r, pause));
    }
  }
}
