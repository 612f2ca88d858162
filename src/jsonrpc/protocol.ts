import { z } from 'zod';
import { isRecord, isText, onlyKeys } from '../core/shape.js';

/** A JSON-RPC 2.0 request as it arrives; `id` absent means a notification. */
export const requestSchema = z.strictObject({
  jsonrpc: z.literal('2.0'),
  method: z.string().min(1).max(256),
  params: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
  id: z.union([z.string().max(256), z.number(), z.null()]).optional(),
});
export type JsonRpcRequest = z.infer<typeof requestSchema>;

const REQUEST_KEYS = new Set(['jsonrpc', 'method', 'params', 'id']);
/** requestSchema's twin (src/core/shape.ts): the gateway's cold zod parse on every call's path. */
export function requestTwin(raw: unknown): JsonRpcRequest | undefined {
  if (!isRecord(raw) || !onlyKeys(raw, REQUEST_KEYS) || raw.jsonrpc !== '2.0' || !isText(raw.method, 1, 256)) return undefined;
  const request: JsonRpcRequest = { jsonrpc: '2.0', method: raw.method };
  if ('params' in raw) {
    const { params } = raw;
    // Copied as zod copies them; a `__proto__` key is left to zod, which drops it.
    if (Array.isArray(params)) request.params = [...params];
    else if (isRecord(params) && !Object.hasOwn(params, '__proto__')) request.params = { ...params };
    else return undefined;
  }
  if ('id' in raw) {
    const { id } = raw;
    if (id !== null && !isText(id, 0, 256) && !(typeof id === 'number' && Number.isFinite(id))) return undefined;
    request.id = id;
  }
  return request;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export type JsonRpcResponse =
  | { jsonrpc: '2.0'; id: string | number | null; result: unknown }
  | { jsonrpc: '2.0'; id: string | number | null; error: JsonRpcErrorObject };

export const responseSchema = z.union([
  z.object({ jsonrpc: z.literal('2.0'), id: z.union([z.string(), z.number(), z.null()]), result: z.unknown() }),
  z.object({
    jsonrpc: z.literal('2.0'),
    id: z.union([z.string(), z.number(), z.null()]),
    error: z.object({ code: z.number().int(), message: z.string(), data: z.unknown().optional() }),
  }),
]);
