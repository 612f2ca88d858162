// Every error the system puts on a wire, in one module: JSON-RPC codes (operators and sd), the
// games REST API's problem types, the reasons the splice endpoint closes a connection, and the
// caps a relay or connection request can hit. test/unit/errors.test.ts pins each table against the README's, so a new
// entry cannot appear without being documented.

export const JSONRPC_ERRORS = {
  PARSE_ERROR: { code: -32700, message: 'Parse error: the body is not valid JSON' },
  INVALID_REQUEST: { code: -32600, message: 'Invalid request: not a JSON-RPC 2.0 request object' },
  METHOD_NOT_FOUND: { code: -32601, message: 'Method not found' },
  INVALID_PARAMS: { code: -32602, message: 'Invalid params' },
  INTERNAL_ERROR: { code: -32603, message: 'Internal error' },
  // Application codes (-32000..-32099 are reserved for implementation-defined server errors).
  UNKNOWN_OPERATOR: { code: -32001, message: 'Unknown operator: not in the service directory' },
  PERMISSION_DENIED: { code: -32002, message: 'Permission denied by the service directory' },
  PEER_UNREACHABLE: { code: -32003, message: 'Peer unreachable' },
  BROKERING_FAILED: { code: -32004, message: 'Brokering through the proxy failed' },
  PEER_TIMEOUT: { code: -32005, message: 'Peer did not answer in time' },
  BAD_SIGNATURE: { code: -32010, message: 'Bad signature' },
  UNKNOWN_SIGNER: { code: -32011, message: 'Unknown signer: not a directory admin' },
  STALE_PARENT: { code: -32012, message: 'Stale parent: the record does not extend the current tip' },
  INVALID_RECORD: { code: -32013, message: 'Invalid record' },
  NOT_AUTHENTICATED: { code: -32020, message: 'Client certificate required' },
  RELAY_CAPACITY: { code: -32030, message: 'Relay refused: too many relay sessions open' },
  BROKERING_CAPACITY: { code: -32031, message: 'Brokering refused: too many sessions waiting for their peers to dial' },
} as const;

export type JsonRpcErrorName = keyof typeof JSONRPC_ERRORS;

/** An error that carries a stable JSON-RPC code to the caller. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  readonly code: number;
  readonly data: unknown;
  constructor(kind: JsonRpcErrorName, detail?: string, options?: { cause?: unknown; data?: unknown }) {
    const base = JSONRPC_ERRORS[kind];
    super(detail ? `${base.message}: ${detail}` : base.message, { cause: options?.cause });
    this.code = base.code;
    this.data = options?.data;
  }
  static fromWire(err: { code: number; message: string; data?: unknown }): RpcError {
    const kind = (Object.keys(JSONRPC_ERRORS) as JsonRpcErrorName[]).find((k) => JSONRPC_ERRORS[k].code === err.code);
    const e = new RpcError(kind ?? 'INTERNAL_ERROR');
    e.message = err.message;
    Object.assign(e, { code: err.code, data: err.data });
    return e;
  }
  /** The message without its code's generic prefix: what to quote when wrapping it in another error. */
  get detail(): string {
    const base = (Object.values(JSONRPC_ERRORS) as { code: number; message: string }[]).find((e) => e.code === this.code)?.message;
    return base && this.message.startsWith(`${base}: `) ? this.message.slice(base.length + 2) : this.message;
  }
  toWire(): { code: number; message: string; data?: unknown } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

/**
 * Why the splice endpoint closed a connection it did not route. Each is a label of the metric
 * `eps_proxy_preamble_rejections_total{reason}` and a log line; the dialer only sees the close.
 */
export const SPLICE_CLOSE_REASONS = {
  UNKNOWN_TOKEN: 'no live session has this token',
  TOKEN_USED: 'the token belongs to a finished session, or its leg already dialed',
  WRONG_STATE: 'the session cannot take this leg now (A before its confirmation)',
  BAD_PROOF: "the right token without a valid proof by the leg's operator; the session keeps waiting for the real peer",
  PREAMBLE_TIMEOUT: 'the preamble was not complete within the deadline',
  PREAMBLE_CLOSED: 'the dialer closed before its preamble was complete',
  PREAMBLE_INVALID: 'the preamble announces a proof longer than the cap',
  ROUTE_ERROR: 'routing the socket failed unexpectedly (a bug; logged as such)',
  TOO_MANY_PENDING: 'the endpoint holds its maximum of connections still sending their preamble, from this address or in all; closed at once, unread',
} as const;

export type SpliceCloseReason = keyof typeof SPLICE_CLOSE_REASONS;

/**
 * Which cap a refused relay request hit: the `data.limit` of its RELAY_CAPACITY error (a malformed
 * request is INVALID_PARAMS, an unpermitted signer PERMISSION_DENIED, like any bus request).
 */
export const RELAY_CAPACITY_LIMITS = {
  requester: 'the requesting rendezvous holds its maximum of relay sessions',
  proxy: 'the proxy holds its maximum of relay sessions, all requesters together',
} as const;

export type RelayCapacityLimit = keyof typeof RELAY_CAPACITY_LIMITS;

/**
 * Which cap a refused connection request hit: the `data.limit` of its BROKERING_CAPACITY error.
 * Only sessions not yet spliced count: a spliced one is bounded by its idle timeout instead.
 */
export const BROKERING_CAPACITY_LIMITS = {
  requester: 'the requesting operator holds its maximum of brokered sessions not yet spliced',
  proxy: 'the proxy holds its maximum of brokered sessions not yet spliced, all requesters together',
} as const;

export type BrokeringCapacityLimit = keyof typeof BROKERING_CAPACITY_LIMITS;

/**
 * Every problem type the games REST API answers with (RFC 9457). Types are relative URIs: RFC 9457
 * resolves them against the request URI, so they identify the problem without inventing a domain
 * this project does not own. src/games/problems.ts builds the documents.
 */
export const PROBLEMS = {
  MALFORMED_REQUEST: { slug: 'malformed-request', status: 400, title: 'The request is malformed' },
  UNAUTHORIZED: { slug: 'unauthorized', status: 401, title: 'The host secret is missing' },
  FORBIDDEN: { slug: 'forbidden', status: 403, title: 'Not allowed for this peer or secret' },
  GAME_NOT_FOUND: { slug: 'game-not-found', status: 404, title: 'No such game' },
  ROUTE_NOT_FOUND: { slug: 'route-not-found', status: 404, title: 'No such route' },
  NAME_TAKEN: { slug: 'name-taken', status: 409, title: 'The game name is taken' },
  GAME_FULL: { slug: 'game-full', status: 409, title: 'The game has no room for another guest' },
  NOT_PAIRED: { slug: 'not-paired', status: 409, title: 'The peers have not swapped candidates yet' },
  PAYLOAD_TOO_LARGE: { slug: 'payload-too-large', status: 413, title: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { slug: 'unsupported-media-type', status: 415, title: 'The body must be application/json' },
  RATE_LIMITED: { slug: 'rate-limited', status: 429, title: 'Too many requests' },
  REGISTER_RATE_LIMITED: { slug: 'register-rate-limited', status: 429, title: 'This address registered too many games recently' },
  SECRET_RATE_LIMITED: { slug: 'secret-rate-limited', status: 429, title: 'Too many calls with this host secret recently' },
  BAD_SECRET_RATE_LIMITED: { slug: 'bad-secret-rate-limited', status: 429, title: 'This address presented too many wrong host secrets recently' },
  RELAY_CLIENT_LIMIT: { slug: 'relay-client-limit', status: 429, title: 'This address holds too many relay sessions' },
  RELAY_GAME_LIMIT: { slug: 'relay-game-limit', status: 429, title: 'This game holds too many relay sessions' },
  INTERNAL_ERROR: { slug: 'internal-error', status: 500, title: 'Internal error' },
  STORAGE_UNAVAILABLE: { slug: 'storage-unavailable', status: 503, title: 'Game storage is unavailable' },
  GAMES_LIMIT: { slug: 'games-limit', status: 503, title: 'The rendezvous holds its maximum of games' },
  RELAY_UNAVAILABLE: { slug: 'relay-unavailable', status: 503, title: 'No relay could be opened' },
} as const;

export type ProblemName = keyof typeof PROBLEMS;
