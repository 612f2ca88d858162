import { connect, type Socket } from 'node:net';

export function splitHostPort(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(':');
  const port = Number(hostPort.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`${hostPort} is not host:port`);
  return { host: hostPort.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port };
}

/**
 * Opens a TCP connection with Nagle off: every socket on a relayed path needs it, or each small
 * gRPC exchange stalls ~40 ms on Nagle's algorithm meeting delayed ACKs.
 */
export function dialTcp(hostPort: string): Promise<Socket> {
  const { host, port } = splitHostPort(hostPort);
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
