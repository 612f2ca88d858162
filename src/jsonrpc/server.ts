import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { DEFAULT_MAX_BATCH_CALLS, MAX_JSON_DEPTH } from '../core/constants.js';
import { RpcError, JSONRPC_ERRORS } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseWithTwin } from '../core/shape.js';
import { timelineMark } from '../core/timeline.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { fingerprintOf, commonNameOf } from '../core/tls-material.js';
import { requestSchema, requestTwin, type JsonRpcRequest, type JsonRpcResponse } from './protocol.js';

/** Who is calling, as proven by the client certificate of the mTLS connection. */
export interface Caller {
  commonName: string;
  fingerprint: string;
}

export type RpcHandler = (request: JsonRpcRequest, caller: Caller) => Promise<unknown>;

export interface JsonRpcServerOptions {
  tls: TlsMaterial;
  host: string;
  port: number;
  path?: string;
  maxBodyBytes: number;
  /** Calls in one batch (default DEFAULT_MAX_BATCH_CALLS); a larger batch is refused whole. */
  maxBatchCalls?: number;
  log: Logger;
  handle: RpcHandler;
}

/**
 * JSON-RPC 2.0 over HTTPS with mutual TLS. The TLS layer asks for a client certificate but lets
 * a connection without one through, so that such a client gets a readable JSON-RPC error instead
 * of an opaque handshake failure; no handler ever runs for it.
 */
export async function startJsonRpcServer(opts: JsonRpcServerOptions): Promise<Server> {
  const path = opts.path ?? '/jsonrpc';
  const server = createServer(
    { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      handleHttp(req, res, path, opts).catch((err) => {
        opts.log.error({ err }, 'unexpected error in JSON-RPC handler');
        if (!res.headersSent) send(res, 500, errorResponse(null, new RpcError('INTERNAL_ERROR')));
      });
    },
  );
  // A client that asks before sending a large body (Expect: 100-continue, as curl does above
  // 1 MiB) is refused before it uploads anything; otherwise it is told to go on.
  server.on('checkContinue', (req, res) => {
    if (Number(req.headers['content-length'] ?? 0) > opts.maxBodyBytes) {
      return refuseTooLarge(req, res, opts.maxBodyBytes);
    }
    res.writeContinue();
    server.emit('request', req, res);
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}

async function handleHttp(req: IncomingMessage, res: ServerResponse, path: string, opts: JsonRpcServerOptions) {
  timelineMark('gateway.in');
  const url = (req.url ?? '').split('?')[0];
  if (url !== path) return send(res, 404, errorResponse(null, new RpcError('METHOD_NOT_FOUND', `no endpoint at ${url}; POST ${path}`)));
  if (req.method !== 'POST') {
    res.setHeader('Allow', 'POST');
    return send(res, 405, errorResponse(null, new RpcError('INVALID_REQUEST', `use POST, not ${req.method}`)));
  }
  const socket = req.socket as TLSSocket;
  const caller = authenticatedCallers.get(socket) ?? authenticate(socket);
  if (typeof caller === 'string') {
    opts.log.warn({ remote: socket.remoteAddress, reason: socket.authorizationError }, 'JSON-RPC call without a valid client certificate');
    return send(res, 401, errorResponse(null, new RpcError('NOT_AUTHENTICATED', caller)));
  }

  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > opts.maxBodyBytes) return refuseTooLarge(req, res, opts.maxBodyBytes);
  const body = await readBody(req, opts.maxBodyBytes);
  if (body === 'too-large') return refuseTooLarge(req, res, opts.maxBodyBytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return send(res, 200, errorResponse(null, new RpcError('PARSE_ERROR')));
  }
  // Refused before anything recursive (validation, logging, a handler) walks it.
  if (nestingDepthExceeds(parsed, MAX_JSON_DEPTH)) {
    return send(res, 200, errorResponse(null, new RpcError('INVALID_REQUEST', `the request is nested deeper than ${MAX_JSON_DEPTH} levels`)));
  }
  if (Array.isArray(parsed)) {
    if (parsed.length === 0) return send(res, 200, errorResponse(null, new RpcError('INVALID_REQUEST', 'empty batch')));
    const maxBatch = opts.maxBatchCalls ?? DEFAULT_MAX_BATCH_CALLS;
    if (parsed.length > maxBatch) {
      opts.log.warn({ calls: parsed.length, limit: maxBatch }, 'JSON-RPC batch over the limit refused');
      return send(res, 200, errorResponse(null, new RpcError('INVALID_REQUEST', `a batch of ${parsed.length} calls exceeds the limit of ${maxBatch} (jsonrpc.maxBatchCalls)`)));
    }
    const answers = await Promise.all(parsed.map((item) => answerOne(item, caller, opts)));
    const present = answers.filter((a): a is JsonRpcResponse => a !== undefined);
    if (present.length === 0) return void res.writeHead(204).end();
    return send(res, 200, present);
  }
  const answer = await answerOne(parsed, caller, opts);
  if (answer === undefined) return void res.writeHead(204).end();
  return send(res, 200, answer);
}

/**
 * Who is calling on this connection, once per connection: parsing the client certificate and
 * hashing it cost more than answering a local call, and a keep-alive client (hd-1's own tools)
 * sends many calls on one connection. Kept for TLS 1.3 connections only, which cannot
 * renegotiate and so cannot present another certificate later; a connection without a valid
 * certificate is never kept, so each of its requests is refused again.
 */
const authenticatedCallers = new WeakMap<TLSSocket, Caller>();

/** The caller proven by the connection's client certificate, or why there is none. */
function authenticate(socket: TLSSocket): Caller | string {
  const peer = socket.getPeerX509Certificate?.();
  if (!socket.authorized || !peer) {
    // Without a certificate OpenSSL still reports a verification error (UNABLE_TO_GET_ISSUER_CERT),
    // which reads as if the certificate were wrong: say which of the two it is.
    return !peer
      ? 'no client certificate was presented: this gateway answers only clients with a certificate of its CA (curl --cert FILE --key FILE)'
      : `the client certificate does not verify against this server's CA (${String(socket.authorizationError)})`;
  }
  const caller: Caller = { commonName: commonNameOf(peer), fingerprint: fingerprintOf(peer as X509Certificate) };
  if (socket.getProtocol() === 'TLSv1.3') authenticatedCallers.set(socket, caller);
  return caller;
}

async function answerOne(raw: unknown, caller: Caller, opts: JsonRpcServerOptions): Promise<JsonRpcResponse | undefined> {
  const checked = parseWithTwin(requestSchema, requestTwin, raw);
  if (!checked.success) {
    const id = typeof raw === 'object' && raw !== null && 'id' in raw ? sanitizeId((raw as { id: unknown }).id) : null;
    const detail = checked.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ');
    return errorResponse(id, new RpcError('INVALID_REQUEST', detail));
  }
  const request = checked.data;
  const isNotification = request.id === undefined;
  try {
    const result = await opts.handle(request, caller);
    return isNotification ? undefined : { jsonrpc: '2.0', id: request.id ?? null, result: result ?? null };
  } catch (err) {
    const rpcErr = err instanceof RpcError ? err : new RpcError('INTERNAL_ERROR');
    if (!(err instanceof RpcError)) opts.log.error({ err, method: request.method }, 'handler failed');
    else opts.log.info({ method: request.method, code: rpcErr.code, msg: rpcErr.message }, 'call refused');
    return isNotification ? undefined : errorResponse(request.id ?? null, rpcErr);
  }
}

/** Walks the value without recursion (the point is to survive what recursion would not). */
export function nestingDepthExceeds(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > limit) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

function sanitizeId(id: unknown): string | number | null {
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

/**
 * Answers 413 and closes the connection. The rest of the body is read and discarded, up to a
 * bound, so the client reads the answer instead of a reset from closing under its upload.
 */
function refuseTooLarge(req: IncomingMessage, res: ServerResponse, limit: number): void {
  const declared = Number(req.headers['content-length'] ?? 0);
  const detail = declared > limit ? `body of ${declared} bytes exceeds the limit of ${limit}` : `body exceeds the limit of ${limit} bytes`;
  let discarded = 0;
  req.removeAllListeners('data');
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > MAX_DISCARDED_BYTES) req.socket.destroy();
  });
  req.resume();
  send(res, 413, errorResponse(null, new RpcError('INVALID_REQUEST', detail)), true);
}

/** How much of a refused body is drained before the connection is cut instead. */
const MAX_DISCARDED_BYTES = 16 * 1024 * 1024;

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function errorResponse(id: string | number | null, err: RpcError): JsonRpcResponse {
  return { jsonrpc: '2.0', id, error: err.toWire() };
}

function send(res: ServerResponse, status: number, body: unknown, close = false) {
  timelineMark('gateway.out');
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(text);
}

export { JSONRPC_ERRORS };
