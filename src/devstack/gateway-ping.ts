import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { callJsonRpc } from '../jsonrpc/client.js';

/**
 * The seed's curl, from a demo: `hd-2._ping` at hd-1's JSON-RPC gateway with hd-1's dev
 * certificate, retried for up to `withinMs`, since the servers learn the directory over the bus a
 * moment after sd-setup. Resolves with the ping's result; rejects with the last failure.
 */
export async function pingHd2(jsonrpcPort: number, certs: string, withinMs = 30_000): Promise<unknown> {
  const tls = { ca: readFileSync(join(certs, 'root.crt')), cert: readFileSync(join(certs, 'hd-1.crt')), key: readFileSync(join(certs, 'hd-1.key')) };
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await callJsonRpc({ url: `https://127.0.0.1:${jsonrpcPort}/jsonrpc`, serverName: 'hd-1', tls, timeoutMs: 20_000 }, 'hd-2._ping', {});
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
