import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { DEFAULT_BUS_ADMIN } from './generate.js';

/**
 * Whether what answers at `url` is our secured nats-server (one a previous demo left running): it
 * must speak TLS, present a certificate of our root and take the bus admin's. An open
 * nats-server, or anything else, is not ours: every process would fail to connect to it, or
 * worse, talk on a bus anyone can read.
 */
export async function probeSecuredBus(url: string, certs: string, admin = DEFAULT_BUS_ADMIN): Promise<{ ours: boolean; why: string }> {
  try {
    const nc = await connect({
      servers: url,
      tls: { certFile: join(certs, `${admin}.crt`), keyFile: join(certs, `${admin}.key`), caFile: join(certs, 'root.crt') },
      maxReconnectAttempts: 0,
      timeout: 3000,
    });
    await nc.close();
    return { ours: true, why: '' };
  } catch (err) {
    return { ours: false, why: (err as Error).message };
  }
}
