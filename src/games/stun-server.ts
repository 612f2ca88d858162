import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from '../core/logger.js';
import { answerBinding, transportAddress } from './stun.js';

export interface StunServer {
  port: number;
  close(): Promise<void>;
}

/** Answers Binding requests on one UDP socket; the rules live in stun.ts, this only moves bytes. */
export async function startStunServer(opts: { host: string; port: number; software: string; fingerprint: boolean; log: Logger }): Promise<StunServer> {
  const socket: Socket = createSocket({ type: isIPv6(opts.host) ? 'udp6' : 'udp4' });
  socket.on('message', (datagram, rinfo) => {
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
  opts.log.info({ host: opts.host, port }, 'stun listening');
  return { port, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}
