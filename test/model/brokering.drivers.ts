import type { Socket } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { Bus } from '../../src/bus/bus.js';
import { RpcError } from '../../src/core/errors.js';
import type { Confirmation } from '../../src/proxy/connection-requests.js';
import type { Drivers } from './cases.js';
import {
  A,
  B,
  PROXY,
  Dialer,
  Directory,
  ProxyHarness,
  Trace,
  closedByFarSide,
  connectNats,
  deferred,
  legPreamble,
  makeBus,
  passOf,
  settle,
  waitUntil,
  type Settled,
} from './harness.js';
import { readUntil, readUntilEnd } from '../helpers/socket-reads.js';

// P's brokering machine driven through the real proxy pieces: A and B are test drivers on the
// real bus and real sockets, doing exactly what each step's event says.

export const TIMEOUTS = { bDialMs: 400, aDialMs: 250, slowBusMs: 5_000, fastBusMs: 150 };

interface Forward {
  token: Buffer;
  challenge: Buffer;
  sessionId: string;
  endpoint: string;
}

export interface BrokeringCtx {
  trace: Trace;
  cfg: { busRequestMs: number; bServes: boolean; denyForward: boolean; proxyBusDies: boolean };
  ncs: NatsConnection[];
  proxy: ProxyHarness;
  aBus: Bus;
  bBus: Bus;
  /** What P forwarded to B: B's token, the challenge its proof signs, the session and the endpoint. */
  forward: ReturnType<typeof deferred<Forward>>;
  /** B's bus answer to the forward: accept, or the error B replies with. */
  bAnswer: ReturnType<typeof deferred<'accept' | Error>>;
  aReply: Promise<Settled<Confirmation>>;
  dialer: Dialer;
  bSocket?: Socket;
  aSocket?: Socket;
}

export function newBrokeringCtx(): BrokeringCtx {
  return {
    trace: new Trace('requested.notifying'),
    cfg: { busRequestMs: TIMEOUTS.slowBusMs, bServes: true, denyForward: false, proxyBusDies: false },
    forward: deferred(),
    bAnswer: deferred(),
    dialer: new Dialer(),
  } as BrokeringCtx;
}

export async function setupBrokering(ctx: BrokeringCtx, natsUrl: string): Promise<void> {
  ctx.ncs = await Promise.all([connectNats(natsUrl, PROXY), connectNats(natsUrl, A), connectNats(natsUrl, B)]);
  const [ncP, ncA, ncB] = ctx.ncs as [NatsConnection, NatsConnection, NatsConnection];
  const dirB = new Directory();
  if (ctx.cfg.denyForward) dirB.permit = (caller, _target, method) => !(caller === PROXY && method === 'connectionForward');
  ctx.proxy = await ProxyHarness.start({
    nc: ncP,
    directory: new Directory(),
    bDialMs: TIMEOUTS.bDialMs,
    aDialMs: TIMEOUTS.aDialMs,
    busRequestMs: ctx.cfg.busRequestMs,
    trace: ctx.trace,
  });
  // Every path that passes bConnected says when A's confirmation is delivered.
  ctx.proxy.gate.hold = true;
  ctx.aBus = makeBus(ncA, A, new Directory(), 10_000);
  ctx.bBus = makeBus(ncB, B, dirB);
  if (ctx.cfg.bServes) {
    ctx.bBus.serve('connectionForward', async (params) => {
      ctx.forward.resolve({
        token: Buffer.from(String(params.token), 'base64'),
        challenge: Buffer.from(String(params.challenge), 'base64'),
        sessionId: String(params.sessionId),
        endpoint: String(params.endpoint),
      });
      // P's NATS connection goes away while its forward waits for B's answer.
      if (ctx.cfg.proxyBusDies) await ncP.close();
      const answer = await ctx.bAnswer.promise;
      if (answer instanceof Error) throw answer;
      return { accepted: true };
    });
  }
  // Subscriptions must be live on the server before A's request makes P forward to B.
  await Promise.all(ctx.ncs.map((nc) => nc.flush()));
}

export function startBrokering(ctx: BrokeringCtx): void {
  ctx.aReply = settle(ctx.aBus.request(PROXY, 'connectionRequest', { to: B }, 10_000) as Promise<Confirmation>);
}

/** The path starts once P has opened the session (it is then in requested.notifying). */
export const brokeringReady = (ctx: BrokeringCtx) => waitUntil(() => ctx.trace.entries.length > 0, 'session opened');

export async function teardownBrokering(ctx: BrokeringCtx): Promise<void> {
  ctx.bAnswer.resolve(new RpcError('BROKERING_FAILED', 'test over'));
  ctx.proxy?.gate.pending.resolve();
  await ctx.proxy?.close();
  ctx.aBus?.close();
  ctx.bBus?.close();
  ctx.dialer.destroyAll();
  await Promise.all((ctx.ncs ?? []).map((nc) => nc.close()));
}

const portOf = (endpoint: string) => Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));

async function aFailed(ctx: BrokeringCtx, code: number, message: RegExp): Promise<void> {
  const reply = await ctx.aReply;
  expect(reply.ok, 'A must not be confirmed').toBe(false);
  if (!reply.ok) {
    expect(reply.error.code).toBe(code);
    expect(reply.error.message).toMatch(message);
  }
}

const stillOpen = (s: Socket | undefined) => expect(s && !s.closed && !s.readableEnded, 'socket still open').toBe(true);

async function bDials(ctx: BrokeringCtx): Promise<void> {
  const forward = await ctx.forward.promise;
  ctx.bSocket = await ctx.dialer.dial(portOf(forward.endpoint), legPreamble(forward, 'b'));
}

/** A's pass as P opened it: A is confirmed only later, but a path may need it earlier. */
const aPass = (ctx: BrokeringCtx) => passOf(ctx.proxy.sessions[0]!, 'a');

export const brokeringDrivers: Drivers<BrokeringCtx> = {
  'notifyB.done[isAccepted]': {
    exec: async (ctx) => {
      await ctx.forward.promise;
      ctx.bAnswer.resolve('accept');
    },
  },
  'notifyB.done[isNotPermitted]': {
    // The directory does not let P call B: B's bus refuses before any handler runs.
    arrange: (ctx) => void (ctx.cfg.denyForward = true),
    check: (ctx) => aFailed(ctx, -32002, /^Permission denied by the service directory: public-proxy-eps-1 may not forward connection requests to hd-2: .*public-proxy-eps-1 may not call hd-2\.connectionForward$/),
  },
  'notifyB.done[else]': {
    variants: {
      'B refuses': {
        exec: async (ctx) => {
          await ctx.forward.promise;
          ctx.bAnswer.resolve(new RpcError('BROKERING_FAILED', 'busy'));
        },
        check: (ctx) => aFailed(ctx, -32004, /^Brokering through the proxy failed: hd-2 refused the connection: busy$/),
      },
      'B is not on the bus': {
        arrange: (ctx) => void (ctx.cfg.bServes = false),
        check: (ctx) => aFailed(ctx, -32004, /^Brokering through the proxy failed: hd-2 refused the connection: hd-2 is not on the bus$/),
      },
    },
  },
  'notifyB.error': {
    // P's bus connection closes while the forward waits for B: the forward fails as a bus
    // failure. (A short busRequestMs no longer does: the forward waits past bDialMs, so a silent B
    // ends as bNeverDialed, below, whatever P's bus timeout.) A hears nothing: P's bus is gone.
    arrange: (ctx) => void (ctx.cfg.proxyBusDies = true),
    check: async (ctx) => {
      const done = await ctx.proxy.sessions[0]!.done;
      expect(done).toMatchObject({ outcome: 'busFailed', detail: expect.stringMatching(/hd-2\.connectionForward: the bus connection failed/) });
    },
  },
  'after.bDialTimeout': {
    // B never answers nor dials, and P's bus timeout is shorter than bDialMs: still bNeverDialed.
    arrange: (ctx) => void (ctx.cfg.busRequestMs = TIMEOUTS.fastBusMs),
    check: async (ctx) => {
      await aFailed(ctx, -32004, new RegExp(`^Brokering through the proxy failed: hd-2 never dialed the proxy within ${TIMEOUTS.bDialMs} ms$`));
      // The token died with the session: B dialing late is a stranger.
      const late = await ctx.dialer.dial(ctx.proxy.port, legPreamble(await ctx.forward.promise, 'b'));
      await closedByFarSide(late);
      expect(ctx.proxy.rejections).toContain('UNKNOWN_TOKEN');
    },
  },
  B_DIALED: {
    exec: async (ctx, step) => {
      if (step.from.startsWith('requested')) return bDials(ctx);
      // B dials a second time with its own token and a valid proof: the machine refuses it and
      // keeps the socket it holds.
      const again = await ctx.dialer.dial(ctx.proxy.port, legPreamble(await ctx.forward.promise, 'b'));
      await closedByFarSide(again);
    },
    check: async (ctx, step) => {
      stillOpen(ctx.bSocket);
      if (step.from.startsWith('requested')) return;
      expect(ctx.proxy.rejections).toEqual(['TOKEN_USED']);
      expect(ctx.proxy.registry.liveCount()).toBe(1);
      if (step.from === 'holding.spliced') {
        ctx.aSocket!.write('after B redialed');
        expect(await readUntil(ctx.bSocket!, 'after B redialed')).toBe('after B redialed');
      }
    },
  },
  'confirmToA.done': {
    exec: (ctx) => ctx.proxy.gate.pending.resolve(),
    check: async (ctx) => {
      const reply = await ctx.aReply;
      expect(reply.ok).toBe(true);
      if (reply.ok) {
        // A's own token, not B's, and the same challenge B was sent.
        const forward = await ctx.forward.promise;
        expect(Buffer.from(reply.value.token, 'base64')).toEqual(ctx.proxy.sessions[0]!.tokens.a);
        expect(Buffer.from(reply.value.token, 'base64')).not.toEqual(forward.token);
        expect(Buffer.from(reply.value.challenge, 'base64')).toEqual(forward.challenge);
        expect(reply.value.sessionId).toBe(forward.sessionId);
        expect(reply.value.endpoint).toBe(`127.0.0.1:${ctx.proxy.port}`);
      }
      stillOpen(ctx.bSocket);
    },
  },
  'confirmToA.error': {
    // A fault at P's seam: ConnectionRequests.confirmToA itself only fails once A's request is
    // no longer pending, which today's code never causes.
    exec: (ctx) => ctx.proxy.gate.pending.reject(new Error('the confirmation could not be delivered to A')),
    check: async (ctx) => {
      await aFailed(ctx, -32004, /^Brokering through the proxy failed: the bus failed while brokering: the confirmation could not be delivered to A$/);
      await closedByFarSide(ctx.bSocket!);
    },
  },
  A_DIALED: {
    exec: async (ctx, step) => {
      if (step.from.startsWith('requested') || step.from === 'holding.bConnected') {
        // A dials with its own token and a valid proof before its confirmation (it learned them
        // some other way): too early, refused, and the session carries on.
        const early = await ctx.dialer.dial(ctx.proxy.port, legPreamble(aPass(ctx), 'a'));
        await closedByFarSide(early);
        return;
      }
      if (step.from === 'holding.confirmed') {
        const reply = await ctx.aReply;
        if (!reply.ok) throw new Error(`A was not confirmed: ${reply.error.message}`);
        const pass = { sessionId: reply.value.sessionId, token: Buffer.from(reply.value.token, 'base64'), challenge: Buffer.from(reply.value.challenge, 'base64') };
        ctx.aSocket = await ctx.dialer.dial(portOf(reply.value.endpoint), Buffer.concat([legPreamble(pass, 'a'), Buffer.from('hello')]));
        return;
      }
      // holding.spliced: A presents its token (and proof) a second time.
      const again = await ctx.dialer.dial(ctx.proxy.port, legPreamble(aPass(ctx), 'a'));
      await closedByFarSide(again);
    },
    check: async (ctx, step) => {
      if (step.from.startsWith('requested') || step.from === 'holding.bConnected') {
        expect(ctx.proxy.rejections).toEqual(['WRONG_STATE']);
        expect(ctx.proxy.registry.liveCount()).toBe(1);
        if (step.from === 'holding.bConnected') stillOpen(ctx.bSocket);
      } else if (step.from === 'holding.confirmed') {
        // What A sent with its token reaches B once spliced.
        expect(await readUntil(ctx.bSocket!, 'hello')).toBe('hello');
        expect(await ctx.proxy.splicedCount()).toBe(1);
      } else {
        expect(ctx.proxy.rejections).toEqual(['TOKEN_USED']);
        ctx.aSocket!.write('still here');
        expect(await readUntil(ctx.bSocket!, 'still here')).toBe('still here');
      }
    },
  },
  B_CLOSED: {
    variants: {
      'B ends its stream': { exec: (ctx) => void ctx.bSocket!.end() },
      'B resets': { exec: (ctx) => void ctx.bSocket!.resetAndDestroy() },
    },
    check: async (ctx, step) => {
      if (step.from === 'holding.bConnected') {
        await aFailed(ctx, -32004, /^Brokering through the proxy failed: session ended as peerClosedEarly: B (ended its stream|closed|failed) before A dialed/);
        return;
      }
      // A was confirmed already: its token now opens nothing.
      const reply = await ctx.aReply;
      if (!reply.ok) throw new Error('A should have been confirmed');
      const late = await ctx.dialer.dial(ctx.proxy.port, legPreamble(aPass(ctx), 'a'));
      await closedByFarSide(late);
      expect(ctx.proxy.rejections).toEqual(['UNKNOWN_TOKEN']);
    },
  },
  SPLICE_ENDED: {
    variants: {
      // Half-close: the side that finished sending still gets the answer.
      'A half-closes first': {
        exec: async (ctx) => {
          const bGot = readUntilEnd(ctx.bSocket!);
          ctx.aSocket!.end(' request from A');
          expect(await bGot).toContain(' request from A');
          const aGot = readUntilEnd(ctx.aSocket!);
          ctx.bSocket!.end('reply from B');
          expect(await aGot).toBe('reply from B');
        },
        check: (ctx) => expect(ctx.trace.last?.output).toEqual({ outcome: 'closed', detail: 'completed' }),
      },
      'B half-closes first': {
        exec: async (ctx) => {
          const aGot = readUntilEnd(ctx.aSocket!);
          ctx.bSocket!.end('news from B');
          expect(await aGot).toBe('news from B');
          const bGot = readUntilEnd(ctx.bSocket!);
          ctx.aSocket!.end('ack from A');
          expect(await bGot).toContain('ack from A');
        },
        check: (ctx) => expect(ctx.trace.last?.output).toEqual({ outcome: 'closed', detail: 'completed' }),
      },
      'A resets': {
        exec: (ctx) => void ctx.aSocket!.resetAndDestroy(),
        check: async (ctx) => {
          await closedByFarSide(ctx.bSocket!);
          expect(ctx.trace.last?.output).toMatchObject({ outcome: 'closed', detail: expect.stringMatching(/^a(Closed|Error)$/) });
        },
      },
    },
  },
  SHUTDOWN: {
    exec: (ctx) => ctx.proxy.close(),
    check: async (ctx, step) => {
      if (step.from.startsWith('requested') || step.from === 'holding.bConnected') {
        await aFailed(ctx, -32004, /^Brokering through the proxy failed: the proxy is shutting down$/);
      }
      await Promise.all([ctx.bSocket, ctx.aSocket].filter((s): s is Socket => !!s).map(closedByFarSide));
    },
  },
  'after.aDialTimeout': {
    variants: {
      'A never dials': {},
      'A hangs up mid-token': {
        exec: async (ctx) => {
          const reply = await ctx.aReply;
          if (!reply.ok) throw new Error('A should have been confirmed');
          const partial = await ctx.dialer.dial(ctx.proxy.port, legPreamble(aPass(ctx), 'a').subarray(0, 40));
          partial.end();
          await closedByFarSide(partial);
          expect(ctx.proxy.rejections).toEqual(['PREAMBLE_CLOSED']);
        },
      },
    },
    check: async (ctx) => {
      await closedByFarSide(ctx.bSocket!);
      expect(ctx.trace.last?.output).toEqual({ outcome: 'aNeverDialed', detail: 'A did not dial in time' });
    },
  },
};

export const brokeringScenarios = {
  'happy path': ['notifyB.done[isAccepted]', 'B_DIALED', 'confirmToA.done', 'A_DIALED', 'SPLICE_ENDED'],
};
