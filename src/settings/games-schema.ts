import { z } from 'zod';
import { directoryClientSchema, inspectorSchema, natsSchema, tlsSchema } from './schemas.js';
import { DEFAULT_ENVELOPE_MAX_AGE_MS, DEFAULT_MAX_ENVELOPE_BYTES, minute, second } from '../core/constants.js';

// Kept apart from schemas.ts so the games process can evolve without touching the settings every
// other process shares; the defaults are named here because only this process uses them.

/** A host that has not polled for this long has gone: its game expires. */
export const DEFAULT_HOST_POLL_TIMEOUT_MS = 30 * second;
/** How often each instance looks for games whose host went silent (any instance may expire any game). */
export const DEFAULT_SWEEP_INTERVAL_MS = 5 * second;
/** Bounds one game's KV record: every guest's candidates live in it. */
export const DEFAULT_MAX_GUESTS = 32;
/** Every request body is a name, a peer id and a few candidates: 16 KiB is generous. */
export const DEFAULT_GAMES_BODY_LIMIT = 16 * 1024;
/** Hosts and guests poll about once a second; 300 a minute leaves room for several peers behind one NAT. */
export const DEFAULT_RATE_LIMIT_MAX = 300;
export const DEFAULT_RATE_LIMIT_WINDOW_MS = minute;
/** Addresses each instance counts at once: a flood from more addresses forgets the least recent ones, memory stays flat. */
export const DEFAULT_RATE_LIMIT_MAX_ADDRESSES = 10_000;
/** How often an instance shares its request counts: what one address can get past the limit is what the other instances admit in this time. */
export const DEFAULT_RATE_LIMIT_SYNC_MS = 250;
export const DEFAULT_GAMES_BUCKET = 'EPS_GAMES';
/** The proxy answers a relay request from memory; longer than this means it is not there. */
export const DEFAULT_RELAY_REQUEST_TIMEOUT_MS = 5 * second;

/**
 * Games the rendezvous holds at once, every instance together (the lobby's entries are counted).
 * A game costs a KV record of about 1 KiB plus its guests' candidates, and a lobby entry.
 */
export const DEFAULT_MAX_GAMES = 100_000;
/** Registrations one client address may make per window, every instance together: a host registers once per game. */
export const DEFAULT_REGISTER_LIMIT_MAX = 30;
/**
 * Game records each instance keeps in memory, fresh from a KV watch, so a poll that writes nothing
 * makes no round trip (src/games/game-cache.ts). A record is about 1 KiB plus its guests' candidates.
 */
export const DEFAULT_CACHE_GAMES = 10_000;
/** A lobby page read is answered again for this long: a new game shows up in a list at most this late. */
export const DEFAULT_LOBBY_PAGE_TTL_MS = 1_000;
/** Calls made with one host secret (rename, delete) per window: a host renames or deletes a game a few times at most. */
export const DEFAULT_SECRET_LIMIT_MAX = 30;
/** Wrong host secrets one client address may present per window before it is answered 429 instead of 403. */
export const DEFAULT_BAD_SECRET_LIMIT_MAX = 10;

/**
 * STUN answers per source address: a peer sends one Binding request and retransmits a few times
 * on loss, and a NAT may hide a room full of players, hence a burst well above one peer's need.
 */
export const DEFAULT_STUN_PER_SECOND = 20;
export const DEFAULT_STUN_BURST = 50;
/** STUN answers per second in all: at 40 bytes an answer, 2,000 a second is 80 kB/s at most, whatever a flood spoofs. */
export const DEFAULT_STUN_TOTAL_PER_SECOND = 2_000;
export const DEFAULT_STUN_MAX_ADDRESSES = 10_000;

/**
 * Relay sessions one client address may hold at once (a session counts from its grant until the
 * proxy would end it at the latest: dial deadline plus the grant's maxDurationMs). Several
 * players behind one NAT share an address, hence room for more than one duel.
 */
export const DEFAULT_RELAY_MAX_PER_CLIENT = 16;
/** Relay sessions one game name may hold at once: half of the default maxGuests pairings. */
export const DEFAULT_RELAY_MAX_PER_GAME = 16;

const port = z.number().int().min(0).max(65535);
const ms = z.number().int().positive();

/** A count per window (a minute unless set), shared by every instance through the store (src/games/shared-limits.ts). */
const windowLimit = (max: number) =>
  z
    .strictObject({
      max: z.number().int().positive().default(max),
      windowMs: ms.default(minute),
    })
    .prefault({});

const gamesSettingsFields = z.strictObject({
  name: z.string().min(1),
  nats: natsSchema,
  /**
   * The rendezvous operator's certificate and key (dev: games-1): nats-server maps it to the games
   * principal, and the rendezvous signs relay requests on the bus as that operator (the
   * certificate's CN) and checks the proxy's signed grants.
   */
  tls: tlsSchema,
  /** Where the service directory answers: the proxy's grants are checked against it. */
  directory: directoryClientSchema.optional(),
  envelopeMaxAgeMs: ms.default(DEFAULT_ENVELOPE_MAX_AGE_MS),
  maxEnvelopeBytes: z.number().int().positive().default(DEFAULT_MAX_ENVELOPE_BYTES),
  /** Served at /inspect on the http listener, to loopback clients only unless allowRemote. */
  inspector: inspectorSchema,
  http: z.strictObject({
    host: z.string().default('0.0.0.0'),
    port,
    bodyLimit: z.number().int().positive().default(DEFAULT_GAMES_BODY_LIMIT),
    rateLimit: z
      .strictObject({
        max: z.number().int().positive().default(DEFAULT_RATE_LIMIT_MAX),
        windowMs: ms.default(DEFAULT_RATE_LIMIT_WINDOW_MS),
        maxAddresses: z.number().int().positive().default(DEFAULT_RATE_LIMIT_MAX_ADDRESSES),
        /** 0: this instance counts alone (nothing is shared through the store). */
        syncMs: z.number().int().min(0).default(DEFAULT_RATE_LIMIT_SYNC_MS),
      })
      .prefault({}),
  }),
  stun: z
    .strictObject({
      host: z.string().default('0.0.0.0'),
      port,
      /** RFC 8489 makes FINGERPRINT optional for a Binding-only server; clients that check it like it. */
      fingerprint: z.boolean().default(true),
      /** SOFTWARE in every answer: 20 bytes more per answer, so off unless a client wants to see it. */
      software: z.boolean().default(false),
      /** What the server answers at most (src/games/stun-limit.ts): source addresses can be spoofed. */
      rateLimit: z
        .strictObject({
          perSecond: z.number().positive().default(DEFAULT_STUN_PER_SECOND),
          burst: z.number().int().positive().default(DEFAULT_STUN_BURST),
          totalPerSecond: z.number().positive().default(DEFAULT_STUN_TOTAL_PER_SECOND),
          maxAddresses: z.number().int().positive().default(DEFAULT_STUN_MAX_ADDRESSES),
        })
        .prefault({}),
    })
    .optional(),
  games: z
    .strictObject({
      bucket: z.string().regex(/^[A-Za-z0-9_-]+$/, 'expected a KV bucket name (letters, digits, _ and -)').default(DEFAULT_GAMES_BUCKET),
      /** Copies JetStream keeps of each bucket, set when the first instance creates them: 3 on a cluster. */
      replicas: z.number().int().min(1).max(5).default(1),
      hostPollTimeoutMs: ms.default(DEFAULT_HOST_POLL_TIMEOUT_MS),
      sweepIntervalMs: ms.default(DEFAULT_SWEEP_INTERVAL_MS),
      maxGuests: z.number().int().positive().max(256).default(DEFAULT_MAX_GUESTS),
      maxGames: z.number().int().positive().default(DEFAULT_MAX_GAMES),
      /** How long a lobby page is answered again from memory (0: every list reads the lobby). */
      lobbyPageTtlMs: z.number().int().min(0).default(DEFAULT_LOBBY_PAGE_TTL_MS),
      /** Game records held in memory per instance (0: every read goes to the store). */
      cacheGames: z.number().int().min(0).default(DEFAULT_CACHE_GAMES),
      registerLimit: windowLimit(DEFAULT_REGISTER_LIMIT_MAX),
      /** Calls with one host secret (rename, delete), every instance together. */
      secretLimit: windowLimit(DEFAULT_SECRET_LIMIT_MAX),
      /** Wrong host secrets per client address, every instance together. */
      badSecretLimit: windowLimit(DEFAULT_BAD_SECRET_LIMIT_MAX),
    })
    .prefault({}),
  /** Where peers that cannot punch are relayed: the P2P proxy serving relays for this operator. */
  relay: z
    .strictObject({
      proxy: z.string().min(1),
      timeoutMs: ms.default(DEFAULT_RELAY_REQUEST_TIMEOUT_MS),
      maxPerClient: z.number().int().positive().default(DEFAULT_RELAY_MAX_PER_CLIENT),
      maxPerGame: z.number().int().positive().default(DEFAULT_RELAY_MAX_PER_GAME),
    })
    .optional(),
});

/** A relay is asked for on the signed bus: the rendezvous checks the proxy's grants against the directory. */
export const gamesSettingsSchema = gamesSettingsFields.superRefine((s, ctx) => {
  if (!s.relay) return;
  if (!s.directory) ctx.addIssue({ code: 'custom', path: ['directory'], message: 'relay is set: the proxy\'s grants are checked against the directory, so set directory { url }' });
});
export type GamesSettings = z.infer<typeof gamesSettingsSchema>;
