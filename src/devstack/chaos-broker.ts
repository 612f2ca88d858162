import { join } from 'node:path';
import { pino } from 'pino';
import { Bus } from '../bus/bus.js';
import { createSigner, type Signer } from '../bus/envelope.js';
import { dialAndPresent } from '../core/dial.js';
import { connectBus, type NatsConnection } from '../core/nats.js';
import { readTlsMaterial, type TlsMaterial } from '../core/tls-material.js';
import { DirectoryClient } from '../directory/client.js';
import { connectSplicedPeerClient } from '../grpc/spliced-client.js';

// A new brokered channel per call, for the chaos run's `brokered` load. hd-1's gateway keeps one
// channel per peer and has one peer to reach (hd-2), which the `kept` load holds open; so these
// brokerings are made the way hd-1's gateway makes its own, in this process with hd-1's
// certificate: a connection request to the proxy operator on the bus (either proxy of the queue
// group takes it), A's leg dialed to the endpoint its confirmation names, one gRPC call to hd-2
// over the splice, and the channel closed.

const PROXY = 'public-proxy-eps-1';
const silent = pino({ level: 'silent' });

/** Which step of a brokering failed: its error is then said with the step, e.g. "dial: connect ECONNREFUSED …". */
export class BrokeringStepError extends Error {
  constructor(
    readonly step: 'request' | 'dial' | 'call',
    readonly error: unknown,
  ) {
    super(`${step}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

export class Brokerer {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly bus: Bus,
    private readonly directory: DirectoryClient,
    private readonly a: TlsMaterial,
    private readonly b: TlsMaterial,
    private readonly signer: Signer,
  ) {}

  /** Connects to the bus as hd-1 (its node list), loads the directory from sd and follows it. */
  static async start(opts: { natsUrl: string; sdUrl: string; certs: string; requestTimeoutMs: number }): Promise<Brokerer> {
    const material = (who: string) => readTlsMaterial({ ca: join(opts.certs, 'root.crt'), cert: join(opts.certs, `${who}.crt`), key: join(opts.certs, `${who}.key`) });
    const a = material('hd-1');
    const nc = await connectBus({ url: opts.natsUrl, randomize: false, name: 'chaos-brokerer', tls: a }, silent);
    const directory = new DirectoryClient({ url: opts.sdUrl, serverName: 'sd-1', tls: a, nc, log: silent });
    directory.start();
    await directory.ready();
    const signer = createSigner('hd-1', a.key);
    const bus = new Bus({ nc, signer, directory, log: silent, maxAgeMs: 30_000, maxBytes: 65_536, requestTimeoutMs: opts.requestTimeoutMs });
    return new Brokerer(nc, bus, directory, a, material('hd-2'), signer);
  }

  /** One brokering to hd-2 and one `_ping` over it; the channel is closed either way. */
  async brokerOnce(): Promise<void> {
    type Confirmation = { token: string; challenge: string; endpoint: string; sessionId: string };
    const c = (await this.bus.request(PROXY, 'connectionRequest', { to: 'hd-2' }).catch((err: unknown) => Promise.reject(new BrokeringStepError('request', err)))) as Confirmation;
    const socket = await dialAndPresent(
      c.endpoint,
      {
        token: Buffer.from(c.token, 'base64'),
        prove: { key: this.signer.key, subject: { proxy: PROXY, sessionId: c.sessionId, leg: 'a', challenge: Buffer.from(c.challenge, 'base64') } },
      },
      { timeoutMs: 5000 },
    ).catch((err: unknown) => Promise.reject(new BrokeringStepError('dial', err)));
    try {
      const client = await connectSplicedPeerClient({ socket, tls: this.a, expectedPeer: { name: 'hd-2', fingerprint: this.b.fingerprint }, log: silent, callTimeoutMs: 10_000 });
      try {
        await client.call('_ping', {});
      } finally {
        client.close();
      }
    } catch (err) {
      throw new BrokeringStepError('call', err);
    } finally {
      socket.destroy();
    }
  }

  async close(): Promise<void> {
    this.bus.close();
    await this.directory.close();
    await this.nc.close().catch(() => undefined);
  }
}
