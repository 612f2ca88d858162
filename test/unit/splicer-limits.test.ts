import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { assign, createActor, sendTo, setup, waitFor } from 'xstate';
import type { SplicerEvent } from '../../machines/brokering.js';
import { createSplicer, type SpliceLimits } from '../../src/proxy/splicer.js';

// The splicer actor alone, in a minimal parent that hands it two sockets and records how it
// ended: the limits a relay grant carries, and the idle timeout every splice has. The sockets are
// loopback pairs (the proxy's side goes to the splicer, the peer's side stays with the test).

type Ended = { reason: string; bytesAToB: number; bytesBToA: number };

const log = pino({ level: 'silent' });
const servers: Server[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) s.close();
});

/** One loopback connection: [the proxy's end, the peer's end]. */
async function pair(): Promise<[Socket, Socket]> {
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

function start(limits: SpliceLimits | undefined, idleMs = 0) {
  const machine = setup({
    types: { context: {} as { ended: Ended | undefined }, events: {} as SplicerEvent | ({ type: 'SPLICE_ENDED' } & Ended) | { type: 'B_CLOSED' } },
    actors: { splicer: createSplicer({ log, idleMs, limitsOf: () => limits }) },
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
const gone = (socket: Socket): Promise<unknown> => {
  socket.resume();
  return socket.readableEnded || socket.destroyed ? Promise.resolve() : Promise.race([once(socket, 'end'), once(socket, 'close')]);
};

const counter = (socket: Socket) => {
  let n = 0;
  socket.on('data', (c: Buffer) => (n += c.length));
  return () => n;
};

describe('splicer limits', () => {
  it('splicer - relays up to the byte limit of a direction, then ends both sockets with byteLimit', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = start({ maxBytesPerDirection: 10_000 });
    s.attach('ATTACH_B', bProxy);
    s.attach('ATTACH_A', aProxy);
    const bGot = counter(bPeer);
    aPeer.write(Buffer.alloc(25_000, 1));
    expect(await s.ended()).toEqual({ reason: 'byteLimit', bytesAToB: 10_000, bytesBToA: 0 });
    await Promise.all([gone(aPeer), gone(bPeer)]);
    expect(bGot()).toBeLessThanOrEqual(10_000);
    s.stop();
  });

  it('splicer - each direction has its own byte budget: just under it both ways carries on', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = start({ maxBytesPerDirection: 1_000 });
    s.attach('ATTACH_B', bProxy);
    s.attach('ATTACH_A', aProxy);
    const aGot = counter(aPeer);
    const bGot = counter(bPeer);
    aPeer.write(Buffer.alloc(1_000, 1));
    bPeer.write(Buffer.alloc(1_000, 2));
    await new Promise((r) => setTimeout(r, 200));
    expect([aGot(), bGot()]).toEqual([1_000, 1_000]);
    expect(s.current()).toBeUndefined();
    bPeer.write(Buffer.alloc(1, 3));
    expect(await s.ended()).toEqual({ reason: 'byteLimit', bytesAToB: 1_000, bytesBToA: 1_000 });
    s.stop();
  });

  it("splicer - bytes B sent before A attached count against B's direction", async () => {
    const [bProxy] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = start({ maxBytesPerDirection: 100 });
    s.attach('ATTACH_B', bProxy, Buffer.alloc(150, 7));
    s.attach('ATTACH_A', aProxy);
    expect(await s.ended()).toEqual({ reason: 'byteLimit', bytesAToB: 0, bytesBToA: 100 });
    await gone(aPeer);
    s.stop();
  });

  it('splicer - the duration limit ends a busy splice with durationLimit, counted from the splice', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = start({ maxDurationMs: 300 });
    s.attach('ATTACH_B', bProxy);
    // Held alone for longer than the limit: the duration is the splice's, not the wait's.
    await new Promise((r) => setTimeout(r, 350));
    expect(s.current()).toBeUndefined();
    const splicedAt = Date.now();
    s.attach('ATTACH_A', aProxy);
    const beat = setInterval(() => aPeer.write('.'), 50);
    const ended = await s.ended();
    clearInterval(beat);
    expect(ended.reason).toBe('durationLimit');
    expect(ended.bytesAToB).toBeGreaterThan(0);
    expect(Date.now() - splicedAt).toBeGreaterThanOrEqual(290);
    await gone(bPeer);
    s.stop();
  });

  it('splicer - without limits a splice carries on; with an idle timeout a silent one ends with idle', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const open = start(undefined);
    open.attach('ATTACH_B', bProxy);
    open.attach('ATTACH_A', aProxy);
    aPeer.write(Buffer.alloc(50_000));
    await new Promise((r) => setTimeout(r, 400));
    expect(open.current()).toBeUndefined();
    open.stop();
    await gone(bPeer);

    const [b2, b2Peer] = await pair();
    const [a2] = await pair();
    const idle = start(undefined, 200);
    idle.attach('ATTACH_B', b2);
    idle.attach('ATTACH_A', a2);
    expect((await idle.ended()).reason).toBe('idle');
    await gone(b2Peer);
    idle.stop();
  });
});
