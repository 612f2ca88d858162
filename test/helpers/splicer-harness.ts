// The splicer actor alone, in a minimal parent that hands it two sockets and records how it
// ended; the sockets are loopback pairs (the proxy's side goes to the splicer, the peer's side
// stays with the test). Shared by the splicer's unit tests; `closeAll()` belongs in afterEach.
import { once } from 'node:events';
import { expect } from 'vitest';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { assign, createActor, sendTo, setup, waitFor } from 'xstate';
import type { SplicerEvent } from '../../machines/brokering.js';
import { DEFAULT_NATIVE_RELAY_SEND_BYTES } from '../../src/core/constants.js';
import type { RelayPath } from '../../src/proxy/native-splice.js';
import { createSplicer, relayPath, type SpliceLimits, type SplicerOptions } from '../../src/proxy/splicer.js';
import { digest, pattern, receive, send } from './byte-streams.js';

export type Ended = { reason: string; bytesAToB: number; bytesBToA: number };

const log = pino({ level: 'silent' });
const servers: Server[] = [];
const sockets: Socket[] = [];

export function closeAll(): void {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
}

/** One loopback connection: [the proxy's end, the peer's end]. */
export async function pair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const peer = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  peer.on('error', () => {});
  const [proxySide] = await accepted;
  proxySide.on('error', () => {});
  sockets.push(peer, proxySide);
  return [proxySide, peer];
}

/** A relay path, and for the native one its mode: `native` splices, `native-copy` copies. */
export type RelayVariant = RelayPath | 'native-copy';

/** Both relays (the native one in both modes) where the addon is built, else the JS one alone: for describe.each. */
export const RELAY_PATHS: RelayVariant[] = relayPath().path === 'native' ? ['native', 'native-copy', 'js'] : ['js'];

/** The copy mode's size per recv in these tests: small, so that a test's megabytes take many recvs and partial sends. */
export const TEST_COPY_BYTES = 64 * 1024;

export interface HarnessOptions {
  idleMs?: number;
  /** Default js; tests over both relays pass each of RELAY_PATHS. */
  relay?: RelayVariant;
  /** native-copy's bytes per recv; default TEST_COPY_BYTES. */
  copyBytes?: number;
  /** native-copy's bytes per send; default the proxy's (16 KiB: a recv goes out in several sends). */
  sendBytes?: number;
  reuseReadBuffers?: boolean;
  onRelayed?: SplicerOptions['onRelayed'];
}

export function startSplicer(
  limits: SpliceLimits | undefined,
  { idleMs = 0, relay = 'js', copyBytes = TEST_COPY_BYTES, sendBytes = DEFAULT_NATIVE_RELAY_SEND_BYTES, reuseReadBuffers = true, onRelayed }: HarnessOptions = {},
) {
  // Explicit either way, so that EPS_RELAY_MODE in the environment does not change what a test runs.
  const nativeRelay = { mode: relay === 'native-copy' ? 'copy' : 'splice', copyBytes, sendBytes } as const;
  const path: RelayPath = relay === 'js' ? 'js' : 'native';
  const machine = setup({
    types: { context: {} as { ended: Ended | undefined }, events: {} as SplicerEvent | ({ type: 'SPLICE_ENDED' } & Ended) | { type: 'B_CLOSED' } },
    actors: { splicer: createSplicer({ log, idleMs, limitsOf: () => limits, reuseReadBuffers, relay: path, nativeRelay, onRelayed }) },
  }).createMachine({
    context: { ended: undefined },
    invoke: { id: 'splicer', src: 'splicer', input: { sessionId: 'unit' } },
    on: {
      ATTACH_B: { actions: sendTo('splicer', ({ event }) => event) },
      ATTACH_A: { actions: sendTo('splicer', ({ event }) => event) },
      SPLICE_ENDED: { actions: assign({ ended: ({ event }) => ({ reason: event.reason, bytesAToB: event.bytesAToB, bytesBToA: event.bytesBToA }) }) },
    },
  });
  const actor = createActor(machine).start();
  return {
    attach: (type: 'ATTACH_A' | 'ATTACH_B', socket: Socket, rest: Buffer = Buffer.alloc(0)) => actor.send({ type, socket, rest }),
    ended: async (timeout = 3_000) => (await waitFor(actor, (s) => s.context.ended !== undefined, { timeout })).context.ended!,
    current: () => actor.getSnapshot().context.ended,
    stop: () => actor.stop(),
  };
}

/** The proxy closed its end: the peer (half-open) sees FIN or RST. */
export const gone = (socket: Socket): Promise<unknown> => {
  socket.resume();
  // once() rejects on 'error': an RST (the proxy closed with bytes unread) is a way of being gone too.
  return socket.readableEnded || socket.destroyed ? Promise.resolve() : Promise.race([once(socket, 'end'), once(socket, 'close')]).catch(() => undefined);
};

export const counter = (socket: Socket) => {
  let n = 0;
  socket.on('data', (c: Buffer) => (n += c.length));
  return () => n;
};

/**
 * `count` spliced sessions over `relay`, each streaming `bytes` both ways (seeded from `seed`) into
 * peers that do not read yet, so that the relay's writes back up; `drained()` then lets them read
 * and checks that every byte arrived in order and each session completed.
 */
export async function pausedSessions(count: number, bytes: number, relay: RelayVariant, seed: number) {
  const sessions = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const [bProxy, bPeer] = await pair();
      const [aProxy, aPeer] = await pair();
      const splicer = startSplicer(undefined, { relay });
      splicer.attach('ATTACH_B', bProxy);
      splicer.attach('ATTACH_A', aProxy);
      bPeer.pause();
      aPeer.pause();
      const aToB = pattern(bytes, seed + i);
      const bToA = pattern(bytes, seed + 100 + i);
      const sent = Promise.all([send(aPeer, aToB, i), send(bPeer, bToA, i + 3)]);
      return { splicer, aPeer, bPeer, aToB, bToA, sent };
    }),
  );
  const drained = () =>
    Promise.all(
      sessions.map(async (s) => {
        const received = Promise.all([receive(s.bPeer), receive(s.aPeer)]);
        s.bPeer.resume();
        s.aPeer.resume();
        const [[atB, atA]] = await Promise.all([received, s.sent]);
        expect(digest(atB)).toBe(digest(s.aToB));
        expect(digest(atA)).toBe(digest(s.bToA));
        expect(await s.splicer.ended(10_000)).toEqual({ reason: 'completed', bytesAToB: bytes, bytesBToA: bytes });
      }),
    );
  return { sessions, drained };
}
