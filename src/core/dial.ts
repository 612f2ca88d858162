import { connect, type Socket } from 'node:net';
import { parseHostPort, presentPreamble, type Presentation } from './splice-wire.js';

/**
 * Opens a TCP connection with Nagle off: every socket on a relayed path needs it, or each small
 * gRPC exchange stalls ~40 ms on Nagle's algorithm meeting delayed ACKs.
 */
export function dialTcp(hostPort: string): Promise<Socket> {
  const { host, port } = parseHostPort(hostPort);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    const onError = (err: Error) => reject(new Error(`cannot connect to ${hostPort}: ${err.message}`, { cause: err }));
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * Dials a splice endpoint and presents a leg's preamble (the mirror of readPreamble): the one way
 * B, A and relay peers open a splice connection. Errors after this surface as 'close'.
 */
export async function dialAndPresent(hostPort: string, presentation: Presentation): Promise<Socket> {
  const socket = await dialTcp(hostPort);
  socket.on('error', () => {});
  try {
    await presentPreamble(socket, presentation);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}
