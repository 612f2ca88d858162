import { connect, type Socket } from 'node:net';
import { parseHostPort, presentationBytes, type Presentation } from './splice-wire.js';
import { timelineMark } from './timeline.js';

export interface DialOptions {
  /** Gives up (and destroys the socket) when the dial is not done in this long. */
  timeoutMs?: number;
  /**
   * Bytes to send first (a splice preamble). Written as the dial starts: Node holds them until the
   * connection is up and hands them to the kernel as it completes, before `connect` resolves the
   * dial, so what the dialer writes next follows them without waiting for a write callback.
   */
  first?: Buffer;
}

/**
 * Opens a TCP connection with Nagle off: every socket on a relayed path needs it, or each small
 * gRPC exchange stalls ~40 ms on Nagle's algorithm meeting delayed ACKs.
 */
export function dialTcp(hostPort: string, options: DialOptions = {}): Promise<Socket> {
  const { host, port } = parseHostPort(hostPort);
  return new Promise((resolve, reject) => {
    timelineMark('dial');
    const socket = connect({ host, port, noDelay: true });
    if (options.first) socket.write(options.first);
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
      timelineMark('dial.connected');
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
  // Signed before the dial, sent as it completes: a 100-byte write on a new connection is taken
  // by the kernel at once, so the deadline covers the connection, and nothing waits a turn of
  // the event loop for the write's callback.
  const socket = await dialTcp(hostPort, { ...options, first: presentationBytes(presentation) });
  socket.on('error', () => {});
  return socket;
}
