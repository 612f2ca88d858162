import { request, type Agent } from 'node:https';
import { randomUUID } from 'node:crypto';
import { RpcError } from '../core/errors.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { responseSchema } from './protocol.js';

export interface JsonRpcClientOptions {
  url: string;
  /** Name the server's certificate must carry (the URL may use an IP address). */
  serverName: string;
  tls: Pick<TlsMaterial, 'ca' | 'cert' | 'key'>;
  timeoutMs?: number;
  /** A keep-alive agent lets successive calls share one TLS connection to the gateway. */
  agent?: Agent;
}

/** One JSON-RPC call over HTTPS with a client certificate; JSON-RPC errors become RpcError. */
export function callJsonRpc<T = unknown>(opts: JsonRpcClientOptions, method: string, params: unknown = {}): Promise<T> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: randomUUID(), method, params });
  const url = new URL(opts.url);
  return new Promise<T>((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        servername: opts.serverName,
        ca: opts.tls.ca,
        cert: opts.tls.cert,
        key: opts.tls.key,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
        timeout: opts.timeoutMs ?? 10_000,
        ...(opts.agent ? { agent: opts.agent } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return reject(new Error(`${opts.url}: HTTP ${res.statusCode} with a body that is not JSON`));
          }
          const checked = responseSchema.safeParse(parsed);
          if (!checked.success) return reject(new Error(`${opts.url}: not a JSON-RPC response`));
          const r = checked.data;
          if ('error' in r) return reject(RpcError.fromWire(r.error));
          resolve(r.result as T);
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${opts.url}: no answer within ${opts.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
