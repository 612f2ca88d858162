import { once } from 'node:events';
import type { Socket } from 'node:net';

/** Everything the peer sends until it half-closes, as text. */
export function readUntilEnd(socket: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return once(socket, 'end').then(() => Buffer.concat(chunks).toString());
}

/** What the peer sent up to and including `text`; stops listening once it has arrived. */
export function readUntil(socket: Socket, text: string): Promise<string> {
  let got = '';
  return new Promise((resolve) => {
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.includes(text)) {
        socket.off('data', onData);
        resolve(got);
      }
    };
    socket.on('data', onData);
  });
}
