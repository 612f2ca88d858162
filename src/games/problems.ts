import { PROBLEMS, type ProblemName } from '../core/errors.js';

// Problem documents (RFC 9457) of the games REST API. The table of problem types lives with every
// other wire error in src/core/errors.ts; the OpenAPI document and the README both name its slugs.

export { PROBLEMS, type ProblemName };

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
  /** Response headers the refusal needs (Retry-After for a cap). */
  readonly headers: Record<string, string>;
  constructor(problemName: ProblemName, detail: string, options?: { cause?: unknown; headers?: Record<string, string> }) {
    super(detail, options);
    this.headers = options?.headers ?? {};
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
