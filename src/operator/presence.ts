import { Bus } from '../bus/bus.js';
import { createSigner, type Signer } from '../bus/envelope.js';
import type { Logger } from '../core/logger.js';
import type { NatsConnection } from '../core/nats.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { DirectoryClient } from '../directory/client.js';

// An operator's presence on the bus, as every process that speaks for one builds it (EPS servers,
// the proxy, the games rendezvous): the directory that tells who is who, and the bus whose
// envelopes its key signs and whose senders the directory verifies. One key signs both the bus
// envelopes and, for EPS servers, the splice proofs.

export interface OperatorPresenceOptions {
  nc: NatsConnection;
  /** The operator's name on the bus, the CN of `tls.cert`. */
  operator: string;
  tls: TlsMaterial;
  directory: { url: string; serverName: string };
  /** `sd` for a process outside the directory stream's account (games): it catches up from the sd. */
  catchUp?: 'stream' | 'sd';
  envelopeMaxAgeMs: number;
  maxEnvelopeBytes: number;
  requestTimeoutMs: number;
  log: Logger;
}

export interface OperatorPresence {
  signer: Signer;
  directory: DirectoryClient;
  bus: Bus;
  /** Stops serving on the bus and following the directory; the NATS connection stays the caller's. */
  close(): Promise<void>;
}

/** The settings every operator process (EPS server, proxy) names its presence with, in one place. */
export interface OperatorPresenceSettings {
  directory: { url: string; serverName: string };
  envelopeMaxAgeMs: number;
  maxEnvelopeBytes: number;
  timeouts: { busRequestMs: number };
}

export function presenceOptionsFrom(settings: OperatorPresenceSettings): Pick<OperatorPresenceOptions, 'directory' | 'envelopeMaxAgeMs' | 'maxEnvelopeBytes' | 'requestTimeoutMs'> {
  return {
    directory: settings.directory,
    envelopeMaxAgeMs: settings.envelopeMaxAgeMs,
    maxEnvelopeBytes: settings.maxEnvelopeBytes,
    requestTimeoutMs: settings.timeouts.busRequestMs,
  };
}

/** Starts following the directory (see its `ready()`) and returns the bus, serving nothing yet. */
export function joinAsOperator(opts: OperatorPresenceOptions): OperatorPresence {
  const directory = new DirectoryClient({
    url: opts.directory.url,
    serverName: opts.directory.serverName,
    tls: opts.tls,
    nc: opts.nc,
    // The client names its own component in the log.
    log: opts.log,
    ...(opts.catchUp ? { catchUp: opts.catchUp } : {}),
  });
  directory.start();
  const signer = createSigner(opts.operator, opts.tls.key);
  const bus = new Bus({
    nc: opts.nc,
    signer,
    directory,
    log: opts.log.child({ component: 'bus' }),
    maxAgeMs: opts.envelopeMaxAgeMs,
    maxBytes: opts.maxEnvelopeBytes,
    requestTimeoutMs: opts.requestTimeoutMs,
  });
  return {
    signer,
    directory,
    bus,
    async close() {
      bus.close();
      await directory.close();
    },
  };
}
