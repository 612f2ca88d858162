import { z } from 'zod';
import { hostPortSchema } from '../core/splice-wire.js';
import {
  DEFAULT_A_DIAL_TIMEOUT_MS,
  DEFAULT_B_DIAL_TIMEOUT_MS,
  DEFAULT_BUS_REQUEST_TIMEOUT_MS,
  DEFAULT_CHANNEL_IDLE_TIMEOUT_MS,
  DEFAULT_ENVELOPE_MAX_AGE_MS,
  DEFAULT_INSPECTOR_MAX_FINISHED,
  DEFAULT_INSPECTOR_MAX_TIMELINE,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_MAX_BATCH_CALLS,
  DEFAULT_MAX_ENVELOPE_BYTES,
  DEFAULT_MAX_RELAY_SESSIONS,
  DEFAULT_MAX_RELAY_SESSIONS_PER_REQUESTER,
  DEFAULT_RELAY_MAX_BYTES_PER_DIRECTION,
  DEFAULT_RELAY_MAX_DURATION_MS,
  DEFAULT_SPLICE_IDLE_TIMEOUT_MS,
  DEFAULT_NATIVE_RELAY_MODE,
  NATIVE_RELAY_MODES,
  DEFAULT_PROXY_DRAIN_TIMEOUT_MS,
  DEFAULT_NATS_URL,
  DEFAULT_RELAY_DIAL_WITHIN_MS,
  DEFAULT_PREAMBLE_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS,
  DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS,
  DEFAULT_MAX_PENDING_BROKERINGS,
  DEFAULT_MAX_PENDING_BROKERINGS_PER_REQUESTER,
} from '../core/constants.js';

const port = z.number().int().min(0).max(65535);
const ms = z.number().int().positive();
const path = z.string().min(1);

export const listenSchema = z.strictObject({ host: z.string().default('127.0.0.1'), port });

/** A certificate, its key and the root that both sides of every mTLS connection trust. */
export const tlsSchema = z.strictObject({ ca: path, cert: path, key: path });

/**
 * The bus: one nats-server, or the nodes of a cluster (a list, or one string of comma-separated
 * URLs as NATS_URL carries them); the process connects to one and moves to another when it goes.
 * Kept as one comma-separated string, the form NATS_URL overrides it with.
 */
export const natsSchema = z
  .strictObject({
    url: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
      .default(DEFAULT_NATS_URL)
      .transform((u) => (Array.isArray(u) ? u.join(',') : u)),
    /**
     * false: try the URLs in the order listed, the first being this process's own node. nats-server
     * hands a queue group's request to a subscriber on the node it was published on when there is
     * one, so where each process connects decides which proxy brokers for whom (README "Running a
     * cluster"); true (the default) spreads a fleet's connections over the nodes at random.
     */
    randomize: z.boolean().default(true),
  })
  .prefault({});

/** Where the service directory answers, and the name its certificate carries. */
export const directoryClientSchema = z.strictObject({
  url: z.string().url(),
  serverName: z.string().default('sd-1'),
});

/** The live inspector (src/inspector/): off unless enabled; the dev roles enable it. */
export const inspectorSchema = z
  .strictObject({
    enabled: z.boolean().default(false),
    /** Answer clients that are not on loopback too: the page shows who talks to whom. */
    allowRemote: z.boolean().default(false),
    maxFinished: z.number().int().positive().max(100_000).default(DEFAULT_INSPECTOR_MAX_FINISHED),
    maxTimeline: z.number().int().positive().max(10_000).default(DEFAULT_INSPECTOR_MAX_TIMELINE),
  })
  .prefault({});
export type InspectorSettings = z.infer<typeof inspectorSchema>;

export const sdSettingsSchema = z.strictObject({
  name: z.string().min(1),
  nats: natsSchema,
  tls: tlsSchema,
  listen: listenSchema,
  /** Certificates whose holders may submit directory records. */
  admins: z.array(path).min(1),
  maxBodyBytes: z.number().int().positive().default(DEFAULT_MAX_BODY_BYTES),
  /** JetStream stream that persists the record chain. */
  stream: z.string().default('EPS_SD_RECORDS'),
  /**
   * Copies of the stream JetStream keeps, set when sd creates it: 1 on a single nats-server, 3 on
   * a cluster of 3 or more (an existing stream keeps its own: changing it is the bus admin's).
   */
  replicas: z.number().int().min(1).max(5).default(1),
});
export type SdSettings = z.infer<typeof sdSettingsSchema>;

const proxySettingsFields = z.strictObject({
  name: z.string().min(1),
  /** The operator whose identity the proxy uses on the bus (its EPS server's name). */
  operator: z.string().min(1),
  nats: natsSchema,
  tls: tlsSchema,
  directory: directoryClientSchema,
  splice: z.strictObject({
    listen: listenSchema,
    /** host:port that A and B are told to dial; differs from listen behind NAT or a load balancer. */
    endpoint: hostPortSchema,
    /** Connections still sending their preamble, all source addresses together; keep it well under the descriptor limit. */
    maxPending: z.number().int().positive().default(DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS),
    /** The same, from one source address (an IPv6 /64 counts as one). */
    maxPendingPerAddress: z.number().int().positive().default(DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS),
    /**
     * How the native relay moves spliced bytes: `splice` (zero-copy, socket -> pipe -> socket) or
     * `copy` (recv/send through one shared buffer). The JS relay, the fallback, always copies.
     */
    relayMode: z.enum(NATIVE_RELAY_MODES).default(DEFAULT_NATIVE_RELAY_MODE),
  }),
  /** Brokered sessions not yet spliced (B told, or B held waiting for A): refused with -32031 beyond these. */
  brokering: z
    .strictObject({
      maxPending: z.number().int().positive().default(DEFAULT_MAX_PENDING_BROKERINGS),
      /** For one requester (the operator that signed the connection request). */
      maxPendingPerRequester: z.number().int().positive().default(DEFAULT_MAX_PENDING_BROKERINGS_PER_REQUESTER),
    })
    .prefault({}),
  metrics: listenSchema.optional(),
  /** Served on the metrics listener, at /inspect. */
  inspector: inspectorSchema,
  timeouts: z
    .strictObject({
      preambleMs: ms.default(DEFAULT_PREAMBLE_TIMEOUT_MS),
      bDialMs: ms.default(DEFAULT_B_DIAL_TIMEOUT_MS),
      aDialMs: ms.default(DEFAULT_A_DIAL_TIMEOUT_MS),
      busRequestMs: ms.default(DEFAULT_BUS_REQUEST_TIMEOUT_MS),
      /** Every spliced session, brokered or relayed, with no traffic either way for this long is closed. */
      spliceIdleMs: ms.default(DEFAULT_SPLICE_IDLE_TIMEOUT_MS),
      /** On SIGTERM: no new sessions, and this long for the live ones to finish before they are ended. */
      drainMs: ms.default(DEFAULT_PROXY_DRAIN_TIMEOUT_MS),
    })
    .prefault({}),
  envelopeMaxAgeMs: ms.default(DEFAULT_ENVELOPE_MAX_AGE_MS),
  maxEnvelopeBytes: z.number().int().positive().default(DEFAULT_MAX_ENVELOPE_BYTES),
  /** Queue group shared by proxy instances so each connectionRequest is brokered once. */
  queueGroup: z.string().default('eps-proxy'),
  /**
   * Also relay game peers that could not punch, when a rendezvous operator the directory permits
   * calls `relayRequest` (src/relay/protocol.ts).
   */
  gameRelays: z
    .strictObject({
      enabled: z.boolean().default(false),
      dialWithinMs: ms.default(DEFAULT_RELAY_DIAL_WITHIN_MS),
      /** Relay sessions open at once, all requesters together. */
      maxSessions: z.number().int().positive().default(DEFAULT_MAX_RELAY_SESSIONS),
      /** Relay sessions open at once for one requester (the operator that signed the request). */
      maxSessionsPerRequester: z.number().int().positive().default(DEFAULT_MAX_RELAY_SESSIONS_PER_REQUESTER),
      /** Granted with every relay and enforced by the splicer. */
      maxDurationMs: ms.default(DEFAULT_RELAY_MAX_DURATION_MS),
      maxBytesPerDirection: z.number().int().positive().default(DEFAULT_RELAY_MAX_BYTES_PER_DIRECTION),
    })
    .prefault({}),
});

export const proxySettingsSchema = proxySettingsFields.refine((s) => !s.inspector.enabled || s.metrics !== undefined, {
  path: ['inspector', 'enabled'],
  message: 'the inspector is served on the metrics listener: set metrics { host, port } too',
});
export type ProxySettings = z.infer<typeof proxySettingsSchema>;

export const epsSettingsSchema = z.strictObject({
  name: z.string().min(1),
  nats: natsSchema,
  tls: tlsSchema,
  directory: directoryClientSchema,
  jsonrpc: z
    .strictObject({
      listen: listenSchema,
      maxBodyBytes: z.number().int().positive().default(DEFAULT_MAX_BODY_BYTES),
      /** Calls in one batch; beyond it the whole batch is refused -32600 before any call runs. */
      maxBatchCalls: z.number().int().positive().default(DEFAULT_MAX_BATCH_CALLS),
    })
    .optional(),
  /** A gRPC listener for peers that can reach this server directly; hd-2 has none. */
  grpc: z.strictObject({ listen: listenSchema.optional() }).prefault({}),
  timeouts: z
    .strictObject({
      busRequestMs: ms.default(DEFAULT_BUS_REQUEST_TIMEOUT_MS),
      channelIdleMs: ms.default(DEFAULT_CHANNEL_IDLE_TIMEOUT_MS),
      dialMs: ms.default(DEFAULT_A_DIAL_TIMEOUT_MS),
      callMs: ms.default(DEFAULT_BUS_REQUEST_TIMEOUT_MS),
    })
    .prefault({}),
  envelopeMaxAgeMs: ms.default(DEFAULT_ENVELOPE_MAX_AGE_MS),
  maxEnvelopeBytes: z.number().int().positive().default(DEFAULT_MAX_ENVELOPE_BYTES),
  /**
   * Dial the proxy's last endpoint while a connection request is in flight (src/eps/warm-dials.ts).
   * Off for proxies whose instances share a queue group but not an endpoint: the early dial would
   * mostly reach another instance, which closes it unused.
   */
  warmDials: z.boolean().default(true),
});
export type EpsSettings = z.infer<typeof epsSettingsSchema>;

/** NATS_URL in the environment wins over settings, so tests and operators can point anywhere. */
export function natsUrl(settings: { nats: { url: string } }, env: NodeJS.ProcessEnv = process.env): string {
  return env.NATS_URL || settings.nats.url;
}
