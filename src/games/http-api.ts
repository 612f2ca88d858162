import { isIPv6 } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import { clientKeyOf } from '../core/client-address.js';
import type { Logger } from '../core/logger.js';
import { GameService, LIST_SCAN_FACTOR, StoreContentionError, type GameView } from './game-service.js';
import type { SecretRefusal } from './host-secrets.js';
import type { RequestLimiter } from './request-limit.js';
import { StoreUnavailableError } from './game-store.js';
import { problem, PROBLEM_CONTENT_TYPE, ProblemError, problemSchema, type ProblemName } from './problems.js';

// The REST surface of `games run`: schemas validate every body, query and path before a handler
// runs, handlers translate the service's status values into responses, and every refusal leaves
// through one error handler as an RFC 9457 problem document.

export interface GamesApiOptions {
  service: GameService;
  bodyLimit: number;
  /** The per-address request limit (`http.rateLimit`), shared with the other instances by its owner. */
  requests: RequestLimiter;
  /** For the request limit's windows; Date.now unless a test drives it. */
  now?: () => number;
  log?: Logger;
}

const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const PORT = '([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
/** "a.b.c.d:port" or "[ipv6]:port"; the IPv6 text is checked properly by the handler (isIPv6). */
const ADDRESS_PATTERN = `^(${OCTET}(\\.${OCTET}){3}|\\[[0-9A-Fa-f:.]{2,45}\\]):${PORT}$`;

export const MAX_ADDRESSES = 16;
/** Games in a lobby page unless the client asks: about a screen of a lobby. */
export const DEFAULT_LIST_LIMIT = 20;
/** Bounds what one request reads from the store (up to LIST_SCAN_FACTOR× this when filtered) and answers. */
export const MAX_LIST_LIMIT = 100;
/** A full rendezvous frees room only as games end: a client should not come back sooner than this. */
const GAMES_LIMIT_RETRY_AFTER_S = 30;

const nameSchema = {
  type: 'string',
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9 _.:-]*$',
  description: 'game name: letters, digits, space, _ . : - (starting with a letter or digit)',
} as const;
const peerIdSchema = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:-]+$' } as const;
const addressesSchema = {
  type: 'array',
  maxItems: MAX_ADDRESSES,
  items: { type: 'string', maxLength: 53, pattern: ADDRESS_PATTERN },
  description: 'candidate addresses, "ip:port" or "[ipv6]:port"',
} as const;

const gameSchema = {
  $id: 'Game',
  type: 'object',
  properties: {
    name: { type: 'string' },
    state: { type: 'string', enum: ['registered', 'hosting', 'paired'] },
    guests: { type: 'integer' },
    open: { type: 'boolean' },
    createdAt: { type: 'string', format: 'date-time' },
  },
  required: ['name', 'state', 'guests', 'open', 'createdAt'],
} as const;

const problemRef = { $ref: 'Problem#' } as const;
const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, { ...problemRef, description: `problem (${c})` }]));
const commonErrors = [400, 413, 415, 429, 500, 503];

const peerBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'peerId', 'addresses'],
  properties: { name: nameSchema, peerId: peerIdSchema, addresses: addressesSchema },
} as const;

const bearer = [{ hostSecret: [] as string[] }];

export async function buildGamesApi(opts: GamesApiOptions): Promise<FastifyInstance> {
  const { service } = opts;
  const app = Fastify({
    bodyLimit: opts.bodyLimit,
    // Typed as fastify's base logger: pino's own type is a superset fastify's generics reject.
    ...(opts.log ? { loggerInstance: opts.log as FastifyBaseLogger } : { logger: false }),
    // Not a log line per request (the top-level disableRequestLogging is deprecated in fastify 5).
    logController: new LogController({ disableRequestLogging: true }),
    // Unknown fields and wrong types are refused, not silently dropped or coerced: a client bug
    // shows up as a 400 naming the field.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  // Only JSON is spoken here; fastify's default text/plain parser would turn a wrong content type
  // into a confusing "body must be object" instead of a 415.
  app.removeContentTypeParser('text/plain');
  app.addSchema(problemSchema);
  app.addSchema(gameSchema);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'EPS P2P games rendezvous',
        version: '1',
        description: 'Hosts register games and poll for guests; guests start and get the host candidates.',
      },
      components: { securitySchemes: { hostSecret: { type: 'http', scheme: 'bearer', description: 'the secret returned by register' } } },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });

  limitRequests(app, opts.requests, opts.now ?? Date.now);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const { name, detail } = classify(error);
    if (name === 'INTERNAL_ERROR' || name === 'STORAGE_UNAVAILABLE') request.log.error({ err: error }, 'request failed');
    if (error instanceof ProblemError) reply.headers(error.headers);
    return sendProblem(reply, request, name, detail);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, request, 'ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // For load balancers and probes; it touches no store, so it is also the ceiling the rendezvous
  // bench measures the other routes against.
  app.get('/health', { schema: { summary: 'The process serves HTTP', response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } } } }, async () => ({ ok: true }));

  app.post<{ Body: { name: string; peerId: string } }>(
    '/games/register',
    {
      schema: {
        summary: 'Register a game as its host',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'peerId'],
          properties: { name: nameSchema, peerId: peerIdSchema },
        },
        response: {
          201: {
            description: 'the game, and the host secret (returned only here) for PUT and DELETE',
            type: 'object',
            properties: { game: { $ref: 'Game#' }, secret: { type: 'string' } },
            required: ['game', 'secret'],
          },
          ...errors(409, ...commonErrors),
        },
      },
    },
    async (request, reply) => {
      const client = clientKeyOf(request.ip);
      const r = await service.register(request.body.name, request.body.peerId, client);
      switch (r.type) {
        case 'registered':
          return reply.code(201).send({ game: r.game, secret: r.secret });
        case 'nameTaken':
          throw new ProblemError('NAME_TAKEN', `a game named "${request.body.name}" already exists`);
        case 'gamesCapReached':
          throw new ProblemError('GAMES_LIMIT', `the rendezvous holds ${r.limit} games, its limit (games.maxGames); retry when games end`, {
            headers: { 'retry-after': String(GAMES_LIMIT_RETRY_AFTER_S) },
          });
        case 'registerRateLimited': {
          const retryAfter = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
          throw new ProblemError(
            'REGISTER_RATE_LIMITED',
            `${client} registered ${r.limit} games in ${r.windowMs / 1000} s, its limit (games.registerLimit); retry in ${retryAfter} s`,
            { headers: { 'retry-after': String(retryAfter) } },
          );
        }
      }
    },
  );

  app.post<{ Body: { name: string; peerId: string; addresses: string[] } }>(
    '/games/poll',
    {
      schema: {
        summary: 'Host: announce candidates, get the guests ready so far',
        body: peerBody,
        response: {
          200: {
            description: 'status 1 once a guest is ready; addresses is every guest candidate, flattened',
            type: 'object',
            properties: {
              status: { type: 'integer', enum: [0, 1] },
              addresses: { type: 'array', items: { type: 'string' } },
              guests: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { peerId: { type: 'string' }, addresses: { type: 'array', items: { type: 'string' } } },
                  required: ['peerId', 'addresses'],
                },
              },
            },
            required: ['status', 'addresses', 'guests'],
          },
          ...errors(403, 404, ...commonErrors),
        },
      },
    },
    async (request) => {
      const { name, peerId, addresses } = request.body;
      checkIPv6(addresses);
      const r = await service.poll(name, peerId, addresses);
      if (r.type === 'notFound') throw notFound(name);
      if (r.type === 'notHost') throw new ProblemError('FORBIDDEN', `peer "${peerId}" is not the host of "${name}"`);
      return r;
    },
  );

  app.post<{ Body: { name: string; peerId: string; addresses: string[] } }>(
    '/games/start',
    {
      schema: {
        summary: "Guest: announce candidates, get the host's",
        body: peerBody,
        response: {
          200: {
            description: 'status 1 once the host has polled with candidates; addresses are the host candidates',
            type: 'object',
            properties: { status: { type: 'integer', enum: [0, 1] }, addresses: { type: 'array', items: { type: 'string' } } },
            required: ['status', 'addresses'],
          },
          ...errors(403, 404, 409, ...commonErrors),
        },
      },
    },
    async (request) => {
      const { name, peerId, addresses } = request.body;
      checkIPv6(addresses);
      const r = await service.start(name, peerId, addresses);
      if (r.type === 'notFound') throw notFound(name);
      if (r.type === 'isHost') throw new ProblemError('FORBIDDEN', `peer "${peerId}" hosts "${name}" and cannot join it as a guest`);
      if (r.type === 'gameFull') throw new ProblemError('GAME_FULL', `"${name}" already has ${r.maxGuests} guests`);
      return r;
    },
  );

  app.post<{ Body: { name: string; peerId: string; guest?: string } }>(
    '/games/relay',
    {
      schema: {
        summary: 'Host or guest whose punching failed: get a relay session through the P2P proxy',
        description:
          'Both peers of a pairing get the same session, each with its own single-use token; each dials the endpoint and sends its 32 token bytes, then two zero bytes (no proof), first. ' +
          'The first to dial is held until the other dials, then the proxy splices the two connections until either closes or a limit is reached.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'peerId'],
          properties: { name: nameSchema, peerId: peerIdSchema, guest: { ...peerIdSchema, description: "the host names the guest's peerId" } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              sessionId: { type: 'string' },
              token: { type: 'string', description: 'base64 of the caller\'s own 32 token bytes, sent first (then two zero bytes)' },
              endpoint: { type: 'string', description: 'host:port of the proxy splice endpoint' },
              dialWithinMs: { type: 'integer' },
              limits: {
                type: 'object',
                description: 'the proxy ends the relayed session after this long spliced, or after this many bytes in either direction',
                properties: { maxDurationMs: { type: 'integer' }, maxBytesPerDirection: { type: 'integer' } },
                required: ['maxDurationMs', 'maxBytesPerDirection'],
              },
            },
            required: ['sessionId', 'token', 'endpoint', 'dialWithinMs', 'limits'],
          },
          ...errors(403, 404, 409, ...commonErrors),
        },
      },
    },
    async (request) => {
      const { name, peerId, guest } = request.body;
      // The address the connection comes from: the caps count what one client holds, whoever it says it is.
      const client = clientKeyOf(request.ip);
      const r = await service.relay(name, peerId, guest, client);
      switch (r.type) {
        case 'relay':
          return { sessionId: r.sessionId, token: r.token, endpoint: r.endpoint, dialWithinMs: r.dialWithinMs, limits: r.limits };
        case 'notFound':
          throw notFound(name);
        case 'notInGame':
          throw new ProblemError('FORBIDDEN', `peer "${peerId}" is neither the host of "${name}" nor one of its guests`);
        case 'unknownGuest':
          if (guest === undefined) throw new ProblemError('MALFORMED_REQUEST', 'body/guest: the host must name the guest to relay to');
          throw new ProblemError('GAME_NOT_FOUND', `"${name}" has no guest "${guest}" (it may have given up)`);
        case 'notPaired':
          throw new ProblemError('NOT_PAIRED', 'the host and this guest have not been answered each other\'s candidates yet: punch first');
        case 'relayUnavailable':
          throw new ProblemError('RELAY_UNAVAILABLE', r.detail);
        case 'relayCapReached': {
          const retryAfter = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
          const headers = { 'retry-after': String(retryAfter) };
          if (r.cap === 'client') {
            throw new ProblemError('RELAY_CLIENT_LIMIT', `${client} holds ${r.limit} relay sessions, its limit (relay.maxPerClient); one frees in ${retryAfter} s`, { headers });
          }
          throw new ProblemError('RELAY_GAME_LIMIT', `"${name}" holds ${r.limit} relay sessions, its limit (relay.maxPerGame); one frees in ${retryAfter} s`, { headers });
        }
      }
    },
  );

  app.get<{ Querystring: { limit?: string; cursor?: string; open?: 'true' | 'false'; prefix?: string } }>(
    '/games',
    {
      schema: {
        summary: 'The lobby, a page at a time, oldest registration first',
        description:
          `At most \`limit\` games (default ${DEFAULT_LIST_LIMIT}, at most ${MAX_LIST_LIMIT}); \`next\`, when present, is the cursor of the following page. ` +
          `A filtered page (open, prefix) looks at up to ${LIST_SCAN_FACTOR}×limit games, so it may hold fewer than limit, even none, and still have a next.`,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: { type: 'string', pattern: '^[1-9][0-9]{0,5}$', description: `games per page, 1 to ${MAX_LIST_LIMIT}` },
            cursor: { type: 'string', maxLength: 32, pattern: '^[A-Za-z0-9_-]+$', description: 'the next of the previous page' },
            open: { type: 'string', enum: ['true', 'false'], description: 'true: only games a new guest fits in' },
            prefix: { ...nameSchema, description: 'only games whose name starts with this' },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: { games: { type: 'array', items: { $ref: 'Game#' } }, next: { type: 'string' } },
            required: ['games'],
          },
          ...errors(400, 429, 500, 503),
        },
      },
    },
    async (request): Promise<{ games: GameView[]; next?: string }> => {
      const q = request.query;
      const limit = q.limit === undefined ? DEFAULT_LIST_LIMIT : Number(q.limit);
      if (limit > MAX_LIST_LIMIT) throw new ProblemError('MALFORMED_REQUEST', `querystring/limit must be at most ${MAX_LIST_LIMIT}`);
      const after = q.cursor === undefined ? 0 : cursorSeq(q.cursor);
      const page = await service.list({ after, limit, openOnly: q.open === 'true', ...(q.prefix !== undefined ? { prefix: q.prefix } : {}) });
      return page.next === undefined ? { games: page.games } : { games: page.games, next: cursorOf(page.next) };
    },
  );

  const nameParams = { type: 'object', required: ['name'], properties: { name: nameSchema } } as const;

  app.get<{ Params: { name: string } }>(
    '/games/:name',
    { schema: { summary: 'One game', params: nameParams, response: { 200: { $ref: 'Game#' }, ...errors(400, 404, 429, 500, 503) } } },
    async (request) => {
      const r = await service.get(request.params.name);
      if (r.type === 'notFound') throw notFound(request.params.name);
      return r.game;
    },
  );

  app.put<{ Params: { name: string }; Querystring: { newName: string } }>(
    '/games/:name',
    {
      schema: {
        summary: 'Rename a game (host secret required)',
        security: bearer,
        params: nameParams,
        querystring: { type: 'object', additionalProperties: false, required: ['newName'], properties: { newName: nameSchema } },
        response: { 200: { $ref: 'Game#' }, ...errors(401, 403, 404, 409, 400, 429, 500, 503) },
      },
    },
    async (request) => {
      const { name } = request.params;
      const r = await service.rename(name, bearerSecret(request), request.query.newName, clientKeyOf(request.ip));
      if (r.type === 'notFound') throw notFound(name);
      if (r.type !== 'renamed' && r.type !== 'nameTaken') throw secretRefused(name, r, clientKeyOf(request.ip));
      if (r.type === 'nameTaken') throw new ProblemError('NAME_TAKEN', `a game named "${request.query.newName}" already exists`);
      return r.game;
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/games/:name',
    {
      schema: {
        summary: 'Delete a game (host secret required)',
        security: bearer,
        params: nameParams,
        response: { 204: { description: 'deleted', type: 'null' }, ...errors(401, 403, 404, 400, 429, 500, 503) },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      const r = await service.remove(name, bearerSecret(request), clientKeyOf(request.ip));
      if (r.type === 'notFound') throw notFound(name);
      if (r.type !== 'removed') throw secretRefused(name, r, clientKeyOf(request.ip));
      return reply.code(204).send();
    },
  );

  return app;
}

/**
 * Every request counts against its client address's limit, before its body is read; the headers
 * say where the client stands, as `@fastify/rate-limit`, which this replaces, said it.
 */
function limitRequests(app: FastifyInstance, limiter: RequestLimiter, now: () => number): void {
  app.addHook('onRequest', (request, reply, done) => {
    const client = clientKeyOf(request.ip);
    const at = now();
    const a = limiter.admit(client, at);
    const resetS = Math.max(1, Math.ceil((a.resetAtMs - at) / 1000));
    reply.header('x-ratelimit-limit', limiter.max).header('x-ratelimit-reset', resetS);
    if (a.type === 'admitted') {
      reply.header('x-ratelimit-remaining', a.remaining);
      return done();
    }
    reply.header('x-ratelimit-remaining', 0).header('retry-after', resetS);
    void sendProblem(reply, request, 'RATE_LIMITED', `${client} made ${limiter.max} requests in ${limiter.windowMs / 1000} s, its limit (http.rateLimit, every instance together); retry in ${resetS} s`);
  });
}

function sendProblem(reply: FastifyReply, request: FastifyRequest, name: ProblemName, detail: string) {
  const doc = problem(name, detail, request.url.split('?')[0] ?? request.url);
  if (name === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  return reply.code(doc.status).type(PROBLEM_CONTENT_TYPE).send(doc);
}

/** Maps whatever was thrown (ours, fastify's, the rate limiter's, the store's) to one problem. */
function classify(error: FastifyError): { name: ProblemName; detail: string } {
  if (error instanceof ProblemError) return { name: error.problem, detail: error.message };
  if (error.validation) return { name: 'MALFORMED_REQUEST', detail: error.message };
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { name: 'PAYLOAD_TOO_LARGE', detail: error.message };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { name: 'UNSUPPORTED_MEDIA_TYPE', detail: error.message };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { name: 'MALFORMED_REQUEST', detail: error.message };
  }
  if (error.statusCode === 429) return { name: 'RATE_LIMITED', detail: error.message };
  if (error instanceof SyntaxError || error.statusCode === 400) return { name: 'MALFORMED_REQUEST', detail: `the body is not valid JSON: ${error.message}` };
  if (error instanceof StoreContentionError) return { name: 'STORAGE_UNAVAILABLE', detail: error.message };
  if (error instanceof StoreUnavailableError) return { name: 'STORAGE_UNAVAILABLE', detail: 'the game store did not answer; retry shortly' };
  return { name: 'INTERNAL_ERROR', detail: 'unexpected error; it has been logged' };
}

function checkIPv6(addresses: string[]): void {
  addresses.forEach((a, i) => {
    if (a.startsWith('[') && !isIPv6(a.slice(1, a.lastIndexOf(']')))) {
      throw new ProblemError('MALFORMED_REQUEST', `body/addresses/${i} "${a}" is not a valid [IPv6]:port address`);
    }
  });
}

function bearerSecret(request: FastifyRequest): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  if (!m?.[1]) throw new ProblemError('UNAUTHORIZED', 'send the host secret as "Authorization: Bearer <secret>"');
  return m[1];
}

/** A cursor is opaque to clients: today the lobby sequence after which the next page starts. */
const cursorOf = (seq: number) => Buffer.from(`s${seq}`, 'utf8').toString('base64url');
function cursorSeq(cursor: string): number {
  const m = /^s([0-9]{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m?.[1]) throw new ProblemError('MALFORMED_REQUEST', 'querystring/cursor is not a cursor this server handed out (use the next of a page)');
  return Number(m[1]);
}

const notFound = (name: string) => new ProblemError('GAME_NOT_FOUND', `no game named "${name}" (it may have expired)`);
/** A wrong secret is 403; a call counted past a host-secret limit is 429 with when to come back. */
function secretRefused(name: string, r: SecretRefusal, client: string): ProblemError {
  if (r.type === 'badSecret') return new ProblemError('FORBIDDEN', `the secret does not match the host secret of "${name}"`);
  const retryAfter = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
  const headers = { 'retry-after': String(retryAfter) };
  const window = `${r.windowMs / 1000} s`;
  if (r.type === 'secretRateLimited') {
    return new ProblemError('SECRET_RATE_LIMITED', `the host secret of "${name}" was used ${r.limit} times in ${window}, its limit (games.secretLimit); retry in ${retryAfter} s`, { headers });
  }
  return new ProblemError('BAD_SECRET_RATE_LIMITED', `${client} presented ${r.limit} wrong host secrets in ${window}, its limit (games.badSecretLimit); retry in ${retryAfter} s`, { headers });
}
