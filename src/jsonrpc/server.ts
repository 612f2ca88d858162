import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { RpcError, JSONRPC_ERRORS } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { fingerprintOf, commonNameOf } from '../core/tls-material.js';
import { requestSchema, type JsonRpcRequest, type JsonRpcResponse } from './protocol.js';

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
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}

async function handleHttp(req: IncomingMessage, res: ServerResponse, path: string, opts: JsonRpcServerOptions) {
  const url = (req.url ?? '').split('?')[0];
  if (url !== path) return send(res, 404, errorResponse(null, new RpcError('METHOD_NOT_FOUND', `no endpoint at ${url}; POST ${path}`)));
  if (req.method !== 'POST') {
    res.setHeader('Allow', 'POST');
    return send(res, 405, errorResponse(null, new RpcError('INVALID_REQUEST', `use POST, not ${req.method}`)));
  }
  const socket = req.socket as TLSSocket;
  const peer = socket.getPeerX509Certificate?.();
  if (!socket.authorized || !peer) {
    opts.log.warn({ remote: socket.remoteAddress, reason: socket.authorizationError }, 'JSON-RPC call without a valid client certificate');
    return send(res, 401, errorResponse(null, new RpcError('NOT_AUTHENTICATED', String(socket.authorizationError ?? 'no certificate presented'))));
  }
  const caller: Caller = { commonName: commonNameOf(peer), fingerprint: fingerprintOf(peer as X509Certificate) };

  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > opts.maxBodyBytes) {
    req.resume();
    return send(res, 413, errorResponse(null, new RpcError('INVALID_REQUEST', `body of ${declared} bytes exceeds the limit of ${opts.maxBodyBytes}`)), true);
  }
  const body = await readBody(req, opts.maxBodyBytes);
  if (body === 'too-large') {
    return send(res, 413, errorResponse(null, new RpcError('INVALID_REQUEST', `body exceeds the limit of ${opts.maxBodyBytes} bytes`)), true);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return send(res, 200, errorResponse(null, new RpcError('PARSE_ERROR')));
  }
  if (Array.isArray(parsed)) {
    if (parsed.length === 0) return send(res, 200, errorResponse(null, new RpcError('INVALID_REQUEST', 'empty batch')));
    const answers = await Promise.all(parsed.map((item) => answerOne(item, caller, opts)));
    const present = answers.filter((a): a is JsonRpcResponse => a !== undefined);
    if (present.length === 0) return void res.writeHead(204).end();
    return send(res, 200, present);
  }
  const answer = await answerOne(parsed, caller, opts);
  if (answer === undefined) return void res.writeHead(204).end();
  return send(res, 200, answer);
}

async function answerOne(raw: unknown, caller: Caller, opts: JsonRpcServerOptions): Promise<JsonRpcResponse | undefined> {
  const checked = requestSchema.safeParse(raw);
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

function sanitizeId(id: unknown): string | number | null {
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
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
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...(close ? { Connection: 'close' } : {}),
  });
  res.end(text);
}

export { JSONRPC_ERRORS };
