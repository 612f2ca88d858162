// A splice endpoint with the real session registry and the proxy's default caps, run in its own
// process under a small descriptor limit by splice-floods.test.ts. It opens one brokered session,
// prints B's token and challenge, and on a line from stdin reports what became of every connection.
import { pino } from 'pino';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SessionRegistry } from '../../dist/src/proxy/session-registry.js';
import { SpliceEndpoint } from '../../dist/src/proxy/splice-endpoint.js';
import { fingerprintOf } from '../../dist/src/core/tls-material.js';

const log = pino({ level: 'silent' });
const certificateOf = (op) => {
  if (op !== 'hd-1' && op !== 'hd-2') return undefined;
  const cert = new X509Certificate(readFileSync(`settings/dev/certs/${op}.crt`));
  return { certificate: cert.toString(), fingerprint: fingerprintOf(cert) };
};
let bHeld = false;
const registry = new SessionRegistry({ log, operator: 'public-proxy-eps-1', certificateOf, timeouts: { bDialMs: 60_000, aDialMs: 60_000 } });
const endpoint = new SpliceEndpoint({ host: '127.0.0.1', port: 0, log, preambleTimeoutMs: Number(process.argv[2] ?? 5000), route: (p, s, r) => registry.route(p, s, r) });
const rejected = {};
endpoint.on('rejected', (r) => (rejected[r] = (rejected[r] ?? 0) + 1));
const { port } = await endpoint.listen();
const opened = registry.open(
  { a: 'hd-1', b: 'hd-2', endpoint: `127.0.0.1:${port}` },
  { messengers: { notifyB: async () => ({ accepted: true }), confirmToA: async () => { bHeld = true; await new Promise(() => {}); } } },
);
console.log(JSON.stringify({ port, sessionId: opened.sessionId, tokenB: opened.tokens.b.toString('base64'), challenge: opened.challenge.toString('base64') }));
process.stdin.on('data', () => console.log(JSON.stringify({ unrouted: endpoint.unroutedCount(), rejected, bHeld })));
