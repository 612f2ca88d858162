// Every problem type the games REST API answers with (RFC 9457), in one table. A test pins the
// count so a new type cannot appear without an entry here; the OpenAPI document and the README
// both name these slugs. Types are relative URIs: RFC 9457 resolves them against the request URI,
// so they identify the problem without inventing a domain this project does not own.

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
  INTERNAL_ERROR: { slug: 'internal-error', status: 500, title: 'Internal error' },
  STORAGE_UNAVAILABLE: { slug: 'storage-unavailable', status: 503, title: 'Game storage is unavailable' },
  RELAY_UNAVAILABLE: { slug: 'relay-unavailable', status: 503, title: 'No relay could be opened' },
} as const;

export type ProblemName = keyof typeof PROBLEMS;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
}

export function problemType(name: ProblemName): string {
  return `/problems/${PROBLEMS[name].slug}`;
}

export function problem(name: ProblemName, detail: string, instance: string): ProblemDocument {
  const p = PROBLEMS[name];
  return { type: problemType(name), title: p.title, status: p.status, detail, instance };
}

/** An expected refusal raised inside a handler; the error handler turns it into a document. */
export class ProblemError extends Error {
  override readonly name = 'ProblemError';
  readonly problem: ProblemName;
  readonly statusCode: number;
  constructor(problemName: ProblemName, detail: string, options?: { cause?: unknown }) {
    super(detail, options);
    this.problem = problemName;
    this.statusCode = PROBLEMS[problemName].status;
  }
}

/** JSON schema of a problem document, for the OpenAPI document and response serialization. */
export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'RFC 9457 problem details',
  properties: {
    type: { type: 'string', description: 'relative URI /problems/<slug>' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: { type: 'string', description: 'the request path' },
  },
  required: ['type', 'title', 'status', 'detail', 'instance'],
} as const;
