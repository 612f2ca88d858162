import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { verifyProof } from '../../src/core/splice-wire.js';
import { Callbacks } from '../../src/eps/callbacks.js';
import { createPeerServer, type PeerServer } from '../../src/grpc/peer-server.js';
import type { Drivers } from './cases.js';
import { A, B, BUS_ADMIN, Blackhole, Directory, PROXY, TLS, TcpServer, Trace, closedByFarSide, closedPort, connectNats, log, makeBus, settle, waitUntil, type Settled } from './harness.js';

// B's callback machine driven through src/eps/callbacks.ts on B's real bus and its real gRPC
// server; P is a test driver: it forwards over the bus and plays the splice endpoint B dials.

export interface CallbackCtx {
  trace: Trace;
  cfg: { sender: string; requester: string; endpoint: 'splice' | 'closed' | 'blackhole'; dialMs: number; answerDelayMs: number };
  ncs: NatsConnection[];
  pBus: Bus;
  bBus: Bus;
  server: PeerServer;
  callbacks: Callbacks;
  /** P's splice endpoint, played by the test: it only reads what B sends. */
  splice: TcpServer;
  received: Buffer;
  blackhole?: Blackhole;
  token: Buffer;
  challenge: Buffer;
  endpoint: string;
  answer: Promise<Settled<unknown>>;
}

export function newCallbackCtx(): CallbackCtx {
  return {
    trace: new Trace('verifying'),
    // The acceptance waits out answerDelayMs unless a path says otherwise: long enough that the
    // paths ending `settling` some other way leave it before the delay does.
    cfg: { sender: PROXY, requester: A, endpoint: 'splice', dialMs: 5_000, answerDelayMs: 5_000 },
    token: randomBytes(32),
    challenge: randomBytes(32),
    received: Buffer.alloc(0),
  } as CallbackCtx;
}

export async function setupCallback(ctx: CallbackCtx, natsUrl: string): Promise<void> {
  // A sender other than the proxy may not publish connectionForward on the bus at all; the
  // admin carries its request so the path reaches B's own check behind the bus's.
  const sender = ctx.cfg.sender === PROXY ? PROXY : BUS_ADMIN;
  ctx.ncs = await Promise.all([connectNats(natsUrl, sender), connectNats(natsUrl, B)]);
  const [ncP, ncB] = ctx.ncs as [NatsConnection, NatsConnection];
  const dirB = new Directory();
  ctx.server = createPeerServer({ tls: TLS[B]!, log, shutdownGraceMs: 100, handle: async () => ({}) });
  ctx.callbacks = new Callbacks({ self: B, signer: createSigner(B, TLS[B]!.key), directory: dirB, log, dialTimeoutMs: ctx.cfg.dialMs, answerDelayMs: ctx.cfg.answerDelayMs, injectSocket: (s) => ctx.server.injectSocket(s), inspect: ctx.trace.inspect });
  ctx.bBus = makeBus(ncB, B, dirB);
  ctx.bBus.serve('connectionForward', ctx.callbacks.handle);
  ctx.pBus = makeBus(ncP, ctx.cfg.sender, new Directory());
  ctx.splice = await TcpServer.start((s) => s.on('data', (d: Buffer) => (ctx.received = Buffer.concat([ctx.received, d]))));
  if (ctx.cfg.endpoint === 'blackhole') ctx.blackhole = await Blackhole.start();
  ctx.endpoint = await endpointOf(ctx);
  await Promise.all(ctx.ncs.map((nc) => nc.flush()));
}

async function endpointOf(ctx: CallbackCtx): Promise<string> {
  if (ctx.cfg.endpoint === 'closed') return closedPort();
  return ctx.cfg.endpoint === 'blackhole' ? ctx.blackhole!.address : ctx.splice.address;
}

export function startCallback(ctx: CallbackCtx): void {
  const params = {
    requester: ctx.cfg.requester,
    token: ctx.token.toString('base64'),
    challenge: ctx.challenge.toString('base64'),
    endpoint: ctx.endpoint,
    sessionId: 'model',
  };
  ctx.answer = settle(ctx.pBus.request(B, 'connectionForward', params, 5_000));
}

/** The path starts once B has the request. */
export const callbackReady = (ctx: CallbackCtx) => waitUntil(() => ctx.trace.entries.length > 0, 'callback started');

export async function teardownCallback(ctx: CallbackCtx): Promise<void> {
  ctx.callbacks?.shutdown();
  ctx.pBus?.close();
  ctx.bBus?.close();
  await ctx.server?.close(100);
  await ctx.splice?.stop();
  await ctx.blackhole?.stop();
  await Promise.all((ctx.ncs ?? []).map((nc) => nc.close()));
}

async function answered(ctx: CallbackCtx, expected: { ok: true } | { code: number; message: RegExp }): Promise<void> {
  const r = await ctx.answer;
  if ('ok' in expected) expect(r).toEqual({ ok: true, value: { accepted: true } });
  else {
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe(expected.code);
      expect(r.error.message).toMatch(expected.message);
    }
  }
}

const outputIs = (ctx: CallbackCtx, output: object) => expect(ctx.trace.last?.output).toMatchObject(output);

/** P has no answer yet: B holds its acceptance while it settles. */
async function notAnsweredYet(ctx: CallbackCtx): Promise<void> {
  const first = await Promise.race([ctx.answer.then(() => 'answered'), new Promise((r) => setTimeout(() => r('waiting'), 100))]);
  expect(first).toBe('waiting');
}
const spliceSide = (ctx: CallbackCtx): Socket => ctx.splice.sockets[0]!;

export const callbackDrivers: Drivers<CallbackCtx> = {
  // Nothing to see outside yet: B answers P once its dial failed, or a while after it went through.
  'always[else]': {},
  'always[isRefused]': {
    variants: {
      'wrong proxy': {
        // hd-1 may send on the bus, but it is not the proxy hd-2's directory entry names.
        arrange: (ctx) => void (ctx.cfg.sender = A),
        check: async (ctx) => {
          await answered(ctx, { code: -32004, message: /^Brokering through the proxy failed: hd-2 is not reachable through hd-1$/ });
          outputIs(ctx, { outcome: 'refused', detail: 'hd-2 is not reachable through hd-1' });
        },
      },
      'unknown requester': {
        arrange: (ctx) => void (ctx.cfg.requester = 'nobody'),
        check: async (ctx) => {
          await answered(ctx, { code: -32004, message: /^Brokering through the proxy failed: nobody is not in the service directory$/ });
          outputIs(ctx, { outcome: 'refused', detail: 'nobody is not in the service directory' });
        },
      },
    },
  },
  'dialProxy.done': {
    // B presents exactly the token P forwarded, first thing on the socket, then its proof for
    // the sender proxy, this session, leg b and P's challenge, signed with B's operator key; and
    // it does not answer the forward yet, while P makes the splice.
    check: async (ctx) => {
      await notAnsweredYet(ctx);
      await waitUntil(() => ctx.received.length >= 34 && ctx.received.length >= 34 + ctx.received.readUInt16BE(32), 'preamble received');
      expect(ctx.received.subarray(0, 32)).toEqual(ctx.token);
      const proof = ctx.received.subarray(34, 34 + ctx.received.readUInt16BE(32));
      const subject = { proxy: ctx.cfg.sender, sessionId: 'model', leg: 'b' as const, token: ctx.token, challenge: ctx.challenge };
      expect(verifyProof(proof, subject, new Directory().entry(B))).toEqual({ ok: true });
    },
  },
  'dialProxy.error': {
    arrange: (ctx) => void (ctx.cfg.endpoint = 'closed'),
    check: async (ctx) => {
      // P hears of the failed dial at once instead of waiting out its bDialTimeout.
      await answered(ctx, { code: -32004, message: /^Brokering through the proxy failed: hd-2 could not dial the proxy: cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/ });
      outputIs(ctx, { outcome: 'dialFailed', detail: expect.stringMatching(/^cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/) });
    },
  },
  'after.dialTimeout': {
    arrange: (ctx) => {
      ctx.cfg.endpoint = 'blackhole';
      ctx.cfg.dialMs = 200;
    },
    check: async (ctx) => {
      outputIs(ctx, { outcome: 'dialFailed', detail: 'no connection to the proxy in time' });
      await answered(ctx, { code: -32004, message: /^Brokering through the proxy failed: hd-2 could not dial the proxy: no connection to the proxy in time$/ });
      await ctx.blackhole!.lateDialClosed();
    },
  },
  'after.answerDelay': {
    arrange: (ctx) => void (ctx.cfg.answerDelayMs = 150),
    check: async (ctx) => {
      await answered(ctx, { ok: true });
      // Answering is all the delay does: B still serves the connection.
      expect(spliceSide(ctx).destroyed).toBe(false);
      expect(ctx.trace.current).toBe('serving.answered');
    },
  },
  SHUTDOWN: {
    arrange: (ctx, step) => {
      if (step.from === 'dialing') ctx.cfg.endpoint = 'blackhole';
    },
    exec: async (ctx, step) => {
      // Shut down once B's dial is really out (its proof is signed off the event loop first).
      if (step.from === 'dialing') await ctx.blackhole!.dialInFlight();
      ctx.callbacks.shutdown();
    },
    check: async (ctx, step) => {
      outputIs(ctx, { outcome: 'shutDown' });
      // Not answered before its dial was through: shutting down is the answer.
      if (step.from === 'dialing') await answered(ctx, { code: -32004, message: /hd-2 is shutting down$/ });
      if (step.from === 'dialing') await ctx.blackhole!.lateDialClosed();
      // B accepted once its dial was through, so it says so on its way out, as it did before
      // the acceptance waited; P then sees B's socket close.
      if (step.from === 'serving.settling') await answered(ctx, { ok: true });
      if (step.from.startsWith('serving')) await closedByFarSide(spliceSide(ctx));
    },
  },
  CONNECTION_CLOSED: {
    exec: (ctx) => void spliceSide(ctx).destroy(),
    check: async (ctx, step) => {
      outputIs(ctx, { outcome: 'closed', detail: 'connection to the proxy closed' });
      if (step.from === 'serving.settling') await answered(ctx, { ok: true });
    },
  },
};
