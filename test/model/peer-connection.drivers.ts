import type { NatsConnection } from '@nats-io/transport-node';
import { expect } from 'vitest';
import type { Bus } from '../../src/bus/bus.js';
import { createSigner } from '../../src/bus/envelope.js';
import { Callbacks } from '../../src/eps/callbacks.js';
import { PeerChannels } from '../../src/eps/peer-channels.js';
import { createPeerServer, type PeerServer } from '../../src/grpc/peer-server.js';
import type { Drivers } from './cases.js';
import {
  A,
  B,
  Blackhole,
  Directory,
  PROXY,
  ProxyHarness,
  TLS,
  TcpServer,
  Trace,
  closedPort,
  connectNats,
  log,
  makeBus,
  settle,
  sleep,
  startRelay,
  waitUntil,
  type Settled,
} from './harness.js';

// A's peer-connection machine driven through src/eps/peer-channels.ts: a real gRPC server B over
// mTLS, reached directly (through a relay the test can cut) or brokered by the real proxy pieces
// with B's real callback code dialing out.

type DirectTarget = 'relay' | 'closed' | 'blackhole' | 'silent' | 'hangup';

export interface PeerCtx {
  trace: Trace;
  /** P's session, when the route goes through the proxy. */
  pTrace: Trace;
  cfg: {
    route: 'proxy' | 'direct' | 'none' | 'unknown';
    directTo: DirectTarget;
    wrongFingerprint: boolean;
    method: '_ping' | 'slow';
    idleMs: number;
    dialMs: number;
    proxyOnBus: boolean;
    bKnowsA: boolean;
    holdConfirm: boolean;
  };
  ncs: NatsConnection[];
  proxy?: ProxyHarness;
  aBus: Bus;
  bBus: Bus;
  server: PeerServer;
  callbacks: Callbacks;
  channels: PeerChannels;
  relay?: Awaited<ReturnType<typeof startRelay>>;
  blackhole?: Blackhole;
  tcp?: TcpServer;
  call: Promise<Settled<unknown>>;
}

export const SLOW_CALL_MS = 400;

export function newPeerCtx(): PeerCtx {
  return {
    trace: new Trace('resolving'),
    pTrace: new Trace('requested.notifying'),
    cfg: {
      route: 'proxy',
      directTo: 'relay',
      wrongFingerprint: false,
      method: '_ping',
      idleMs: 10_000,
      dialMs: 5_000,
      proxyOnBus: true,
      bKnowsA: true,
      holdConfirm: false,
    },
  } as PeerCtx;
}

export async function setupPeer(ctx: PeerCtx, natsUrl: string): Promise<void> {
  const { cfg } = ctx;
  ctx.ncs = await Promise.all([connectNats(natsUrl, PROXY), connectNats(natsUrl, A), connectNats(natsUrl, B)]);
  const [ncP, ncA, ncB] = ctx.ncs as [NatsConnection, NatsConnection, NatsConnection];
  const dirA = new Directory();
  const dirB = new Directory();
  if (!cfg.bKnowsA) dirB.entries.delete(A);

  ctx.server = createPeerServer({
    tls: TLS[B]!,
    log,
    shutdownGraceMs: 100,
    handle: async (call) => {
      if (call.method === 'slow') await sleep(SLOW_CALL_MS);
      return { served: call.method, by: B };
    },
  });
  ctx.bBus = makeBus(ncB, B, dirB);
  ctx.callbacks = new Callbacks({ self: B, signer: createSigner(B, TLS[B]!.key), directory: dirB, log, dialTimeoutMs: 5_000, injectSocket: (s) => ctx.server.injectSocket(s) });
  ctx.bBus.serve('connectionForward', ctx.callbacks.handle);
  if (cfg.proxyOnBus) {
    ctx.proxy = await ProxyHarness.start({ nc: ncP, directory: new Directory(), bDialMs: 5_000, aDialMs: 5_000, busRequestMs: 5_000, trace: ctx.pTrace });
    ctx.proxy.gate.hold = cfg.holdConfirm;
  }

  if (cfg.route === 'direct') {
    let address: string;
    if (cfg.directTo === 'relay') {
      ctx.relay = await startRelay(await ctx.server.listen('127.0.0.1', 0));
      address = ctx.relay.address;
    } else if (cfg.directTo === 'closed') {
      address = await closedPort();
    } else if (cfg.directTo === 'blackhole') {
      ctx.blackhole = await Blackhole.start();
      address = ctx.blackhole.address;
    } else {
      // silent: accepts and never answers the ClientHello; hangup: accepts and closes at once.
      ctx.tcp = await TcpServer.start((s) => (cfg.directTo === 'hangup' ? s.destroy() : undefined));
      address = ctx.tcp.address;
    }
    dirA.setChannel(B, { address });
  }
  if (cfg.route === 'none') dirA.setChannel(B, undefined);
  // A believes B holds another certificate than the one B presents.
  if (cfg.wrongFingerprint) dirA.entries.get(B)!.fingerprint = TLS[A]!.fingerprint;

  ctx.aBus = makeBus(ncA, A, dirA, 5_000);
  ctx.channels = new PeerChannels({
    self: A,
    tls: TLS[A]!,
    signer: createSigner(A, TLS[A]!.key),
    directory: dirA,
    bus: ctx.aBus,
    log,
    timeouts: { dialMs: cfg.dialMs, channelIdleMs: cfg.idleMs, callMs: 5_000, busRequestMs: 5_000 },
    inspect: ctx.trace.inspect,
  });
  await Promise.all(ctx.ncs.map((nc) => nc.flush()));
}

export function startPeer(ctx: PeerCtx): void {
  ctx.call = settle(ctx.channels.call(ctx.cfg.route === 'unknown' ? 'nobody' : B, ctx.cfg.method, {}, '1'));
}

export async function teardownPeer(ctx: PeerCtx): Promise<void> {
  ctx.channels?.close();
  ctx.proxy?.gate.pending.resolve();
  await ctx.proxy?.close();
  ctx.callbacks?.shutdown();
  ctx.aBus?.close();
  ctx.bBus?.close();
  await ctx.server?.close(100);
  await ctx.relay?.stop();
  await ctx.tcp?.stop();
  await ctx.blackhole?.stop();
  await Promise.all((ctx.ncs ?? []).map((nc) => nc.close()));
}

async function callFailed(ctx: PeerCtx, code: number, message: RegExp): Promise<void> {
  const r = await ctx.call;
  expect(r.ok, 'the call must fail').toBe(false);
  if (!r.ok) {
    expect(r.error.code).toBe(code);
    expect(r.error.message).toMatch(message);
  }
}

async function callServed(ctx: PeerCtx): Promise<void> {
  const r = await ctx.call;
  expect(r).toEqual({ ok: true, value: { served: ctx.cfg.method, by: B } });
}

const outputIs = (ctx: PeerCtx, output: object) => expect(ctx.trace.last?.output).toMatchObject(output);

export const peerConnectionDrivers: Drivers<PeerCtx> = {
  'always[viaProxy]': { arrange: (ctx) => void (ctx.cfg.route = 'proxy') },
  'always[else]': { arrange: (ctx) => void (ctx.cfg.route = 'direct') },
  'always[hasNoRoute]': {
    variants: {
      'unknown peer': {
        arrange: (ctx) => void (ctx.cfg.route = 'unknown'),
        check: (ctx) => callFailed(ctx, -32001, /nobody is not in the service directory$/),
      },
      'no route': {
        arrange: (ctx) => void (ctx.cfg.route = 'none'),
        check: (ctx) => callFailed(ctx, -32003, /noRoute: hd-2 has no gRPC server channel in the directory$/),
      },
    },
  },
  'requestConnection.done': {
    // A only dials once P holds B's socket: P's session is past bConnected by now.
    check: (ctx) => expect(ctx.pTrace.entries.map((e) => e.leaf)).toContain('holding.confirmed'),
  },
  'requestConnection.error': {
    variants: {
      'B refuses (it does not know A)': {
        arrange: (ctx) => void (ctx.cfg.bKnowsA = false),
        check: (ctx) =>
          callFailed(ctx, -32004, /^Brokering through the proxy failed: public-proxy-eps-1: hd-2 refused the connection: hd-1 is not in the service directory$/),
      },
      'the proxy is not on the bus': {
        arrange: (ctx) => void (ctx.cfg.proxyOnBus = false),
        check: (ctx) => callFailed(ctx, -32004, /^Brokering through the proxy failed: public-proxy-eps-1: public-proxy-eps-1.connectionRequest: nobody serves it on the bus$/),
      },
    },
  },
  'dialPeer.done': {},
  'dialPeer.error': {
    arrange: (ctx) => void (ctx.cfg.directTo = 'closed'),
    check: (ctx) => callFailed(ctx, -32003, /dialFailed: cannot connect to 127\.0\.0\.1:\d+: connect ECONNREFUSED/),
  },
  'after.dialTimeout': {
    arrange: (ctx) => {
      ctx.cfg.directTo = 'blackhole';
      ctx.cfg.dialMs = 200;
    },
    check: async (ctx) => {
      await callFailed(ctx, -32005, /no connection to hd-2 in time$/);
      await ctx.blackhole!.lateDialClosed();
    },
  },
  'openChannel.done': {},
  'openChannel.error': {
    variants: {
      'wrong fingerprint': { arrange: (ctx) => void (ctx.cfg.wrongFingerprint = true) },
      'B hangs up during TLS': { arrange: (ctx) => void (ctx.cfg.directTo = 'hangup') },
    },
    check: async (ctx) => {
      await callFailed(ctx, -32003, /tlsFailed: /);
      outputIs(ctx, { outcome: 'failed', reason: 'tlsFailed' });
    },
  },
  CONNECTION_LOST: {
    exec: async (ctx) => {
      await callServed(ctx);
      ctx.relay!.cut();
    },
    check: (ctx) => outputIs(ctx, { outcome: 'closed', detail: 'lost' }),
    cannot: {
      securing:
        'openChannel subscribes to the connection only once TLS is up; a connection lost before that fails openChannel (openChannel.error) instead',
    },
  },
  CALL_STARTED: {},
  CALL_FINISHED: { check: callServed },
  'after.idleTimeout[isIdle]': {
    arrange: (ctx) => void (ctx.cfg.idleMs = 200),
    check: async (ctx) => {
      await callServed(ctx);
      outputIs(ctx, { outcome: 'closed', detail: 'idle' });
    },
  },
  'after.idleTimeout[else]': {
    // The idle timer fires while the slow call is still in flight: the channel must stay.
    arrange: (ctx) => {
      ctx.cfg.idleMs = 150;
      ctx.cfg.method = 'slow';
    },
    check: async (ctx) => {
      expect(ctx.channels.states()).toEqual({ [B]: 'open' });
      await callServed(ctx);
    },
  },
  CLOSE: {
    arrange: (ctx, step) => {
      if (step.from === 'requesting') ctx.cfg.holdConfirm = true;
      if (step.from === 'dialing') ctx.cfg.directTo = 'blackhole';
      if (step.from === 'securing') ctx.cfg.directTo = 'silent';
    },
    exec: async (ctx, step) => {
      // Held in requesting by P's confirmation: wait until P holds B's socket.
      if (step.from === 'requesting') await waitUntil(() => ctx.pTrace.entries.some((e) => e.leaf === 'holding.bConnected'), 'P holds B');
      if (step.from === 'open') await callServed(ctx);
      if (step.from === 'dialing') await ctx.blackhole!.dialInFlight();
      ctx.channels.close();
    },
    check: async (ctx, step) => {
      if (step.from !== 'open') await callFailed(ctx, -32003, /cancelled: channel to hd-2 closed by its owner$/);
      outputIs(ctx, { outcome: 'failed', reason: 'cancelled' });
      if (step.from === 'dialing') await ctx.blackhole!.lateDialClosed();
    },
  },
};

export const peerConnectionScenarios = {
  'brokered call through the proxy, then idle close': [
    'always[viaProxy]',
    'requestConnection.done',
    'dialPeer.done',
    'openChannel.done',
    'CALL_STARTED',
    'CALL_FINISHED',
    'after.idleTimeout[isIdle]',
  ],
};
