import { RpcError } from '../core/errors.js';
import type { JsonRpcRequest } from '../jsonrpc/protocol.js';
import type { Caller } from '../jsonrpc/server.js';

export interface GatewayOptions {
  self: { name: string; fingerprint: string };
  isKnownOperator: (name: string) => boolean;
  callLocal: (method: string, params: unknown) => Promise<unknown>;
  callRemote: (operator: string, method: string, params: unknown, id: string) => Promise<unknown>;
}

/**
 * Splits `<operator>.<method>`. Operator names may contain dots and method names may not, so the
 * method is what follows the last dot.
 */
export function splitTarget(method: string): { operator: string; method: string } | undefined {
  const i = method.lastIndexOf('.');
  if (i <= 0 || i === method.length - 1) return undefined;
  return { operator: method.slice(0, i), method: method.slice(i + 1) };
}

/**
 * The JSON-RPC gateway of an EPS server: its own operator's tools call `<operator>.<method>` and
 * the gateway answers locally or forwards over the peer channel. Only the operator itself (a
 * client certificate equal to the server's own) may use its gateway.
 */
export function createGatewayHandler(opts: GatewayOptions) {
  return async (req: JsonRpcRequest, caller: Caller): Promise<unknown> => {
    if (caller.fingerprint !== opts.self.fingerprint) {
      throw new RpcError('PERMISSION_DENIED', `${caller.commonName || 'this client'} may not use ${opts.self.name}'s gateway`);
    }
    const target = splitTarget(req.method);
    if (!target) throw new RpcError('METHOD_NOT_FOUND', `${req.method}: expected <operator>.<method>, e.g. hd-2._ping`);
    if (target.operator === opts.self.name) return opts.callLocal(target.method, req.params ?? {});
    if (!opts.isKnownOperator(target.operator)) throw new RpcError('UNKNOWN_OPERATOR', target.operator);
    return opts.callRemote(target.operator, target.method, req.params ?? {}, String(req.id ?? ''));
  };
}
