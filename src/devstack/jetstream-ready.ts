import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '../core/nats.js';

/**
 * Resolves once the bus answers JetStream's API: on a cluster, once its nodes have elected a
 * meta leader. Until then a stream or bucket cannot be created, and sd and games would fail
 * their start-up on a bus that is only a second late.
 */
export async function waitForJetStream(nc: NatsConnection, timeoutMs = 20_000): Promise<void> {
  const jsm = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await jsm.getAccountInfo();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`JetStream did not answer within ${timeoutMs} ms: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
