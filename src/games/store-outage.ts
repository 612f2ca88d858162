import type { FastifyInstance } from 'fastify';
import { isBusConnected, type NatsConnection } from '../core/nats.js';
import { problem, PROBLEM_CONTENT_TYPE, problemType } from './problems.js';

// While the bus is down the game store cannot answer, and nats.js drops what is sent meanwhile:
// a request that reached the store then would wait out its whole timeout (5 s) only to fail. So
// `games run` answers at once, 503 with Retry-After, and sends nothing to the store until the bus
// is back; the first request after the reconnect reaches the store again. Every other 503 for the
// store (a call already in flight when the bus went) gets the same Retry-After, so clients wait
// the same way whichever path failed.

/** Peers poll every 500 ms; one second lets the bus reconnect (250–350 ms a try) and JetStream settle. */
export const STORE_RETRY_AFTER_S = 1;

/** Routes that need no store: the OpenAPI document and the inspector keep answering. */
const needsStore = (url: string) => url === '/games' || url.startsWith('/games/') || url.startsWith('/games?');

export function answerWhileStoreAway(app: FastifyInstance, nc: NatsConnection, retryAfterS = STORE_RETRY_AFTER_S): void {
  const retryAfter = String(retryAfterS);
  const storageUnavailable = problemType('STORAGE_UNAVAILABLE');
  app.addHook('onRequest', async (request, reply) => {
    if (isBusConnected(nc) || !needsStore(request.url)) return;
    const doc = problem('STORAGE_UNAVAILABLE', `the game store is unreachable (the bus is reconnecting); retry in ${retryAfterS} s`, request.url.split('?')[0] ?? request.url);
    return reply.code(503).header('retry-after', retryAfter).type(PROBLEM_CONTENT_TYPE).send(doc);
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode === 503 && !reply.hasHeader('retry-after') && typeof payload === 'string' && payload.includes(`"${storageUnavailable}"`)) {
      reply.header('retry-after', retryAfter);
    }
    return payload;
  });
}
