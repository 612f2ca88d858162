// Named defaults, each with the reason it has this value. Settings override most of them.
export const second = 1000;
export const minute = 60 * second;

/** Length of a splice token on the wire: 32 random bytes, as the EPS proxy uses. */
export const TOKEN_BYTES = 32;

/**
 * Largest dialer's proof the splice preamble accepts: an ECDSA P-521 DER signature is at most 139
 * bytes, Ed25519 64, RSA-4096 512. Anything longer is refused before it is read.
 */
export const MAX_PROOF_BYTES = 512;

/**
 * A dialer that cannot send its preamble in this long is slow or hostile; drop it. A preamble is
 * at most 546 bytes, one segment sent right after the handshake, so an honest dialer needs one
 * trip; 3 s still covers two retransmissions on a slow path, and every silent connection holds
 * a pending slot (and a descriptor) for this long.
 */
export const DEFAULT_PREAMBLE_TIMEOUT_MS = 3 * second;

/**
 * Splice connections still sending their preamble, all source addresses together: bounds the
 * descriptors and timers silent connections can hold, well below a proxy's descriptor limit.
 */
export const DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS = 1024;

/**
 * The same, per source address (an IPv6 /64 counts as one): an honest operator dials one leg per
 * session it brokers, each sending its preamble at once, so a few in flight at a time at most.
 */
export const DEFAULT_MAX_PENDING_SPLICE_CONNECTIONS_PER_ADDRESS = 16;

/** Refusals of one reason are logged at most once per this long, with a count of the rest. */
export const DEFAULT_REFUSAL_LOG_INTERVAL_MS = 10 * second;

/**
 * Brokered sessions not yet spliced (waiting for B, or holding B's socket for A), all
 * requesters together: each holds an actor, a pending bus request and soon one of B's sockets.
 */
export const DEFAULT_MAX_PENDING_BROKERINGS = 1024;

/**
 * The same, for one requester: an operator brokers one channel per peer it calls and keeps it
 * until idle, so even a busy one has a few brokerings in flight, never hundreds.
 */
export const DEFAULT_MAX_PENDING_BROKERINGS_PER_REQUESTER = 64;

/** How long P waits for B to dial back after forwarding A's request. */
export const DEFAULT_B_DIAL_TIMEOUT_MS = 10 * second;

/** How long P holds B's socket waiting for A to dial with the confirmed token. */
export const DEFAULT_A_DIAL_TIMEOUT_MS = 10 * second;

/** How long a bus request waits for its reply before the caller gives up. */
export const DEFAULT_BUS_REQUEST_TIMEOUT_MS = 15 * second;

/** Envelopes older (or further in the future) than this are stale: bounds the replay cache. */
export const DEFAULT_ENVELOPE_MAX_AGE_MS = 30 * second;

/** A brokered gRPC channel unused for this long is closed; the next call brokers again. */
export const DEFAULT_CHANNEL_IDLE_TIMEOUT_MS = 60 * second;

/** JSON-RPC bodies above this are refused with HTTP 413 before they are parsed. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** Calls in one JSON-RPC batch: each may broker a channel, so a batch is work bounded by this. */
export const DEFAULT_MAX_BATCH_CALLS = 100;
/** Nesting of a JSON-RPC body: no method needs more, and a deeper one must not reach a recursive parser or logger. */
export const MAX_JSON_DEPTH = 64;

/** Bus envelopes above this are refused before their signature is checked. */
export const DEFAULT_MAX_ENVELOPE_BYTES = 256 * 1024;

/** The dev bus: its own port, so an open nats-server on 4222 is never used by mistake. */
export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4333';

/** Finished sessions the inspector keeps listed: enough to look back over a burst, a few MB at most. */
export const DEFAULT_INSPECTOR_MAX_FINISHED = 200;

/** Timeline entries kept per session: a brokering takes about ten; a long-lived game is trimmed. */
export const DEFAULT_INSPECTOR_MAX_TIMELINE = 100;

/** Live sessions the inspector tracks at most (a games instance cannot see games end elsewhere). */
export const DEFAULT_INSPECTOR_MAX_LIVE = 10_000;

/** Both game peers must dial a relay within this long of its grant (punching already cost them ~5 s). */
export const DEFAULT_RELAY_DIAL_WITHIN_MS = 10 * second;

/** Relay sessions a proxy holds at once: bounds what a flood of relay requests can take. */
export const DEFAULT_MAX_RELAY_SESSIONS = 1000;

/**
 * Relay sessions one requester (a rendezvous operator) holds at once: one misbehaving or
 * compromised rendezvous cannot take the whole proxy's capacity from the others.
 */
export const DEFAULT_MAX_RELAY_SESSIONS_PER_REQUESTER = 500;

/** A relayed game session ends after this long: games are minutes long, a stuck one is not. */
export const DEFAULT_RELAY_MAX_DURATION_MS = 60 * minute;

/** Bytes a relayed game session may carry in each direction: game traffic, not a file transfer. */
export const DEFAULT_RELAY_MAX_BYTES_PER_DIRECTION = 256 * 1024 * 1024;

/**
 * Every spliced session (brokered or relayed) with no byte either way for this long is closed.
 * Longer than an EPS channel's own idle timeout (DEFAULT_CHANNEL_IDLE_TIMEOUT_MS), so healthy
 * peers always close first; this only reclaims sockets whose peers went silent for good.
 */
export const DEFAULT_SPLICE_IDLE_TIMEOUT_MS = 2 * minute;
/**
 * How the native relay moves a session's bytes: `splice` socket -> pipe -> socket in the kernel,
 * `copy` recv() into one buffer the relay thread shares and send() it on (native/splice/splice.c).
 */
export const NATIVE_RELAY_MODES = ['splice', 'copy'] as const;
/** splice.relayMode's default: see the README's relay benchmarks. */
export const DEFAULT_NATIVE_RELAY_MODE: (typeof NATIVE_RELAY_MODES)[number] = 'splice';
/**
 * Copy mode's bytes per recv(), one buffer for the whole relay thread. Also the most a direction
 * whose destination is full keeps (the tail of one recv), as a 256 KiB pipe does in splice mode.
 */
export const DEFAULT_NATIVE_RELAY_COPY_BYTES = 256 * 1024;
/**
 * Copy mode's bytes per send(): 16 KiB sends cost the relay less than whole 256 KiB recvs and
 * the endpoints about what they pay behind haproxy's 16 KiB buffers (bench/relay.ts, README).
 */
export const DEFAULT_NATIVE_RELAY_SEND_BYTES = 16 * 1024;
/**
 * A proxy told to stop (SIGTERM) takes no new sessions and lets its live ones finish for this
 * long before it ends them: a rolling restart behind a queue group then cuts no call short unless
 * a channel outlives it. Shorter than systemd's default stop timeout (90 s), so the proxy ends
 * its sessions itself rather than being killed.
 */
export const DEFAULT_PROXY_DRAIN_TIMEOUT_MS = 30 * second;
