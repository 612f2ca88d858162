import { pino } from 'pino';
import { readTlsMaterial } from '../src/core/tls-material.js';
import { ping } from '../src/eps/ping.js';
import { createPeerServer } from '../src/grpc/peer-server.js';

// The anchor of bench/brokering.ts: the project's own gRPC peer server (mTLS, client certificate
// required, hd-2's key) in a process of its own, listening on a free port, answering `_ping` as
// an EPS server does. Prints its port on stdout once it listens.

const CERTS = 'settings/dev/certs';
const tls = readTlsMaterial({ ca: `${CERTS}/root.crt`, cert: `${CERTS}/hd-2.crt`, key: `${CERTS}/hd-2.key` });
const server = createPeerServer({
  tls,
  log: pino({ level: 'silent' }),
  handle: async (call) => ping(call.params, { name: 'hd-2' }),
});
const port = await server.listen('127.0.0.1', 0);
process.stdout.write(`${port}\n`);
process.on('SIGTERM', () => void server.close(100).then(() => process.exit(0)));
