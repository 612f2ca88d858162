import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { stunBinding, StunTimeoutError } from '../stun-client.js';

// What host and guest share: the one UDP socket, its candidates, and the rendezvous client.

export interface PeerOptions {
  /** The rendezvous base URL, e.g. http://203.0.113.1:8000 */
  server: string;
  name: string;
  /** STUN server; default: the rendezvous host on 3478. */
  stun?: { host: string; port: number };
  /** Local address and port for the UDP socket (default 0.0.0.0, any port). */
  bind?: { host: string; port: number };
  /** Give up on the rendezvous after this long. */
  timeoutMs?: number;
  punchTimeoutMs?: number;
  /** auto: relay through the P2P proxy when punching fails; always: skip punching; never: fail instead. */
  relay?: RelayMode;
  /** Give up on the relay (grant, dial, exchange) after this long. */
  relayTimeoutMs?: number;
  /** Every step (--verbose). */
  log?: (msg: string) => void;
  /** What the peer waits for and every call that failed: always shown. */
  warn?: (msg: string) => void;
  /** Ends the run early (Ctrl-C): the host leaves its game cleanly. */
  signal?: AbortSignal;
}

export type RelayMode = 'auto' | 'always' | 'never';

export interface PeerResult {
  result: 'direct' | 'relayed';
  /** The other peer's address for a direct path; the proxy's splice endpoint for a relayed one. */
  peer: string;
  rttMs: number;
}

export class PeerError extends Error {
  override readonly name = 'PeerError';
}

export const POLL_INTERVAL_MS = 500;
/** The first STUN retransmission: the rendezvous answers from memory, so a quarter second is plenty. */
const STUN_RTO_MS = 250;

export function stunServerOf(opts: PeerOptions): { host: string; port: number } {
  return opts.stun ?? { host: new URL(opts.server).hostname.replace(/^\[|\]$/g, ''), port: 3478 };
}

export async function openSocket(bind: PeerOptions['bind']): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(bind?.port ?? 0, bind?.host ?? '0.0.0.0', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return socket;
}

/**
 * Local non-internal IPv4 addresses with the socket's port, then the STUN-mapped one
 * (deduplicated). STUN is asked again, with a word on stderr, until `deadline`: it is served by
 * the rendezvous, which may be restarting.
 */
export async function gatherCandidates(socket: Socket, opts: PeerOptions, deadline: number): Promise<{ candidates: string[]; mapped: string }> {
  const port = socket.address().port;
  const bound = opts.bind?.host;
  const local =
    bound && bound !== '0.0.0.0'
      ? [bound]
      : Object.values(networkInterfaces())
          .flat()
          .filter((i) => i && i.family === 'IPv4' && !i.internal)
          .map((i) => i!.address);
  const mapped = await stunMapping(socket, opts, deadline);
  const candidates = [...new Set([...local.map((a) => `${a}:${port}`), mapped])].slice(0, 16);
  return { candidates, mapped };
}

async function stunMapping(socket: Socket, opts: PeerOptions, deadline: number): Promise<string> {
  const stun = stunServerOf(opts);
  for (;;) {
    let why: string;
    try {
      // One exchange lasts at most 4 s, and never past the deadline.
      const capMs = Math.max(STUN_RTO_MS, Math.min(4000, deadline - Date.now()));
      const { mapped } = await stunBinding(stun, { socket, rtoMs: STUN_RTO_MS, capMs, software: 'eps-p2p games peer' });
      if (mapped.family === 'IPv4') return `${mapped.address}:${mapped.port}`;
      why = `it mapped us to an IPv6 address ${mapped.address}: only IPv4 is supported`;
      throw new PeerError(`STUN ${stun.host}:${stun.port} failed: ${why}`);
    } catch (err) {
      if (err instanceof PeerError) throw err;
      // Only silence is retried (the server away): an answer that refuses us will not change.
      if (!(err instanceof StunTimeoutError)) throw new PeerError(`STUN ${stun.host}:${stun.port} failed: ${(err as Error).message}`);
      why = err.message;
    }
    const left = deadline - Date.now();
    if (left <= 0) throw new PeerError(`STUN ${stun.host}:${stun.port} failed: ${why}`);
    opts.warn?.(`STUN ${stun.host}:${stun.port} failed (${why}); waiting for it, next try at once (${givingUp(left)})`);
    opts.signal?.throwIfAborted();
  }
}

/** How long a wait may still last, as the wait messages say it: a host without --timeout waits until Ctrl-C. */
export const givingUp = (leftMs: number): string => (Number.isFinite(leftMs) ? `gives up in ${Math.ceil(leftMs / 1000)} s` : 'until Ctrl-C');

/** Rejects with an AbortError when `signal` aborts first (Ctrl-C while waiting). */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> => delay(ms, undefined, signal ? { signal } : undefined);
