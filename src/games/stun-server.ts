import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from '../core/logger.js';
import { answerBinding, looksLikeStun, transportAddress } from './stun.js';
import { StunRateLimiter, type StunLimits } from './stun-limit.js';

export interface StunServer {
  port: number;
  close(): Promise<void>;
}

export interface StunServerOptions {
  host: string;
  port: number;
  /** The SOFTWARE attribute of every answer; absent: none (20 bytes less an answer). */
  software?: string;
  fingerprint: boolean;
  /** What the server answers at most; absent: no limit (tests of the protocol only). */
  limits?: StunLimits;
  log: Logger;
}

/** How often answers held back by the rate limit are summed up in the log. */
const LIMITED_LOG_INTERVAL_MS = 10_000;

/** Answers Binding requests on one UDP socket; the rules live in stun.ts, this only moves bytes. */
export async function startStunServer(opts: StunServerOptions): Promise<StunServer> {
  const socket: Socket = createSocket({ type: isIPv6(opts.host) ? 'udp6' : 'udp4' });
  const limiter = opts.limits ? new StunRateLimiter(opts.limits, Date.now) : undefined;
  // A flood is made of refusals: one log line per interval with the count, not one per datagram.
  let limited = 0;
  const limitedLog = setInterval(() => {
    if (limited === 0) return;
    opts.log.warn({ count: limited, intervalMs: LIMITED_LOG_INTERVAL_MS, tracked: limiter?.tracked }, 'stun answers held back by the rate limit (stun.rateLimit)');
    limited = 0;
  }, LIMITED_LOG_INTERVAL_MS);
  limitedLog.unref();
  socket.on('message', (datagram, rinfo) => {
    // The limit comes before any work on the datagram beyond a glance at its header: a flood
    // costs a map lookup each, not a parse, a CRC and an encoding.
    if (looksLikeStun(datagram) && limiter && !limiter.admit(rinfo.address)) {
      limited++;
      return;
    }
    const answer = answerBinding(datagram, transportAddress(rinfo.address, rinfo.port), opts);
    if (answer.type === 'drop') {
      // Debug only: anyone can spray junk at a public UDP port.
      opts.log.debug({ from: `${rinfo.address}:${rinfo.port}`, reason: answer.reason }, 'stun datagram dropped');
      return;
    }
    if (answer.kind === 'error') opts.log.debug({ from: `${rinfo.address}:${rinfo.port}`, code: answer.code }, 'stun error answered');
    socket.send(answer.bytes, rinfo.port, rinfo.address);
  });
  // A send to a vanished peer can surface as an ICMP error on the socket; it must not kill it.
  socket.on('error', (err) => opts.log.warn({ err }, 'stun socket error'));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(opts.port, opts.host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  const port = socket.address().port;
  opts.log.info({ host: opts.host, port, limits: opts.limits }, 'stun listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        clearInterval(limitedLog);
        socket.close(() => resolve());
      }),
  };
}
