import { connect, type Socket } from 'node:net';
import { parseHostPort, presentPreamble, type Presentation } from './splice-wire.js';

export interface DialOptions {
  /** Gives up (and destroys the socket) when the dial is not done in this long. */
  timeoutMs?: number;
}

/**
 * Opens a TCP connection with Nagle off: every socket on a relayed path needs it, or each small
 * gRPC exchange stalls ~40 ms on Nagle's algorithm meeting delayed ACKs.
 */
export function dialTcp(hostPort: string, options: DialOptions = {}): Promise<Socket> {
  const { host, port } = parseHostPort(hostPort);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            socket.destroy();
            reject(new Error(`cannot connect to ${hostPort}: no connection within ${options.timeoutMs} ms`));
          }, options.timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to ${hostPort}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * Dials a splice endpoint and presents a leg's preamble (the mirror of readPreamble): the one way
 * B, A and relay peers open a splice connection. Errors after this surface as 'close'.
 */
export async function dialAndPresent(hostPort: string, presentation: Presentation, options: DialOptions = {}): Promise<Socket> {
  const startedAt = Date.now();
  const socket = await dialTcp(hostPort, options);
  socket.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    const presented = presentPreamble(socket, presentation);
    if (options.timeoutMs === undefined) await presented;
    else {
      // What is left of the same deadline: a proxy that accepts but never reads must not hold us.
      const left = Math.max(0, options.timeoutMs - (Date.now() - startedAt));
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the preamble to ${hostPort} was not sent within ${options.timeoutMs} ms`)), left);
      });
      await Promise.race([presented, late]);
    }
  } catch (err) {
    socket.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return socket;
}
