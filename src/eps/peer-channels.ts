import type { Socket } from 'node:net';
import { createActor, fromPromise, type Actor, type InspectionEvent } from 'xstate';
import { z } from 'zod';
import {
  PeerConnectionError,
  peerConnectionMachine,
  type PeerConnectionInput,
  type PeerConnectionOutput,
  type Route,
} from '../../machines/peer-connection.js';
import type { Bus } from '../bus/bus.js';
import type { Signer } from '../bus/envelope.js';
import { dialTcp } from '../core/dial.js';
import { RpcError } from '../core/errors.js';
import { childOnDemand, type Logger } from '../core/logger.js';
import { timelineMark } from '../core/timeline.js';
import type { TlsMaterial } from '../core/tls-material.js';
import { isRecord, isText, onlyKeys, parseWithTwin } from '../core/shape.js';
import { challengeBase64Schema, hostPortSchema, isHostPortText, isTokenBase64, presentationBytes, tokenBase64Schema } from '../core/splice-wire.js';
import type { DirectoryEntry } from '../directory/types.js';
import { connectPeerClient, DEFAULT_CONNECT_TIMEOUT_MS, HeldFirstFlight, PeerTransportError, startPeerClient, type PeerClient, type StartedPeerClient } from '../grpc/peer-client.js';
import { DEFAULT_WARM_DIALS, WarmDials, type WarmDial, type WarmDialsOptions } from './warm-dials.js';

export interface PeerChannelsOptions {
  self: string;
  tls: TlsMaterial;
  /** A's operator key (the one that signs its bus envelopes): it proves A's dial to the proxy. */
  signer: Signer;
  directory: { entry(name: string): DirectoryEntry | undefined };
  bus: Bus;
  log: Logger;
  timeouts: { dialMs: number; channelIdleMs: number; callMs: number; busRequestMs: number };
  /** xstate's inspection hook for every channel actor: how tests and tools see each transition. */
  inspect?: (event: InspectionEvent) => void;
  /** Early dials to a proxy's last endpoint while a request is in flight (src/eps/warm-dials.ts); false: none. */
  warmDials?: WarmDialsOptions | false;
}

/** The proxy's confirmation to A: A's leg token, the challenge A's proof signs, and where to present them. */
export const confirmationSchema = z.strictObject({
  token: tokenBase64Schema,
  challenge: challengeBase64Schema,
  endpoint: hostPortSchema,
  sessionId: z.string().min(1).max(128),
});

const CONFIRMATION_KEYS = new Set(['token', 'challenge', 'endpoint', 'sessionId']);
/** confirmationSchema's twin (src/core/shape.ts): a cold zod parse on every brokering's path. */
export function confirmationTwin(raw: unknown): z.output<typeof confirmationSchema> | undefined {
  if (!isRecord(raw) || !onlyKeys(raw, CONFIRMATION_KEYS)) return undefined;
  const { token, challenge, endpoint, sessionId } = raw;
  if (!isTokenBase64(token) || !isTokenBase64(challenge) || !isHostPortText(endpoint) || !isText(sessionId, 1, 128)) return undefined;
  return { token, challenge, endpoint, sessionId };
}

/** One channel to one peer: the machine's actor plus the I/O objects the machine must not hold. */
interface Channel {
  actor: Actor<typeof peerConnectionMachine>;
  /** The channel's logger, made on first use: a pino child costs ~40 µs on a cold brokering's path. */
  log: () => Logger;
  ready: Promise<PeerClient>;
  /** The channel's client as soon as it exists (before TLS is through); rejects as `ready` does. */
  started: Promise<PeerClient>;
  start: (client: PeerClient) => void;
  confirmation?: z.infer<typeof confirmationSchema> & { proxy: string };
  /** A dial to the proxy started with the request, presented on once the confirmation names it. */
  warm?: WarmDial;
  /**
   * A's TLS client to B, started while the request is on the bus: its first flight waits in
   * `flight` until the dial to the proxy is through and leaves behind the preamble. It checks B
   * against `fingerprint`, the directory's entry for B when it started.
   */
  early?: { flight: HeldFirstFlight; client: StartedPeerClient; fingerprint: string };
  /** Set by releaseChannel: nothing may be dialed for this channel any more. */
  released?: boolean;
  socket?: Socket;
  client?: PeerClient;
}

/**
 * A's side: one brokered (or direct) gRPC channel per peer, kept open for later calls. Each
 * channel is a peer-connection machine; this class provides its I/O and maps its outcome to the
 * JSON-RPC error the caller sees.
 */
export class PeerChannels {
  private readonly channels = new Map<string, Channel>();
  /**
   * Each channel's I/O objects, by the actor system of its machine (one per createActor): the
   * machine is provided once, since provide() rebuilds every state node of the machine (~0.3-0.6 ms
   * per call, more than the rest of the actor's life), and its actors and actions find their
   * channel here. Looked up once when an actor starts, so a late promise still holds the channel it
   * started with, never a newer one to the same peer.
   */
  private readonly io = new WeakMap<object, Channel>();
  private readonly machine;
  private readonly warmDials: WarmDials | undefined;

  constructor(private readonly opts: PeerChannelsOptions) {
    this.machine = this.provideMachine();
    this.warmDials = opts.warmDials === false ? undefined : new WarmDials(opts.warmDials ?? DEFAULT_WARM_DIALS);
  }

  async call(peer: string, method: string, params: unknown, id: string): Promise<unknown> {
    timelineMark('a.call');
    const channel = this.channelTo(peer);
    // A new channel's call is made as soon as its client exists, so it leaves with the TLS
    // handshake's last flight rather than after B's HTTP/2 settings, a round trip through the
    // splice later (src/grpc/spliced-client.ts holds it until B's identity is checked). Whether
    // the channel opened is still the machine's call: if it did not, the caller gets its error.
    const client = await channel.started;
    const pending = client.call(method, params, id);
    pending.catch(() => {}); // read below, or dropped for the channel's own error
    await channel.ready;
    channel.actor.send({ type: 'CALL_STARTED' });
    try {
      const result = await pending;
      timelineMark('a.call.done');
      return result;
    } catch (err) {
      // Without this, a transport failure reached the caller as a bare -32603 Internal error.
      if (err instanceof PeerTransportError) {
        throw new RpcError(err.kind === 'timeout' ? 'PEER_TIMEOUT' : 'PEER_UNREACHABLE', `${peer}.${method}: ${err.message}`, { cause: err });
      }
      throw err;
    } finally {
      channel.actor.send({ type: 'CALL_FINISHED' });
    }
  }

  /** How many channels exist, by state: for logs and tests. */
  states(): Record<string, string> {
    return Object.fromEntries([...this.channels].map(([peer, c]) => [peer, String(c.actor.getSnapshot().value)]));
  }

  close(): void {
    for (const c of this.channels.values()) c.actor.send({ type: 'CLOSE' });
  }

  private channelTo(peer: string): Channel {
    const existing = this.channels.get(peer);
    if (existing && existing.actor.getSnapshot().status === 'active') return existing;

    const { opts } = this;
    const bindings = { component: 'peer-connection', peer };
    const log = childOnDemand(opts.log, bindings);
    const channel = { log } as Channel;
    channel.actor = createActor(this.machine, { input: this.routeInput(peer), inspect: opts.inspect });
    this.io.set(channel.actor.system, channel);
    channel.ready = new Promise<PeerClient>((resolve, reject) => {
      channel.actor.subscribe((snap) => {
        if (snap.value === 'open' && channel.client) resolve(channel.client);
        if (snap.status === 'error') {
          log().error({ err: snap.error }, 'peer channel machine failed');
          reject(new RpcError('INTERNAL_ERROR', `channel to ${peer} failed`));
          if (this.channels.get(peer) === channel) this.channels.delete(peer);
        }
        if (snap.status === 'done') {
          reject(toRpcError(peer, snap.output!));
          if (this.channels.get(peer) === channel) this.channels.delete(peer);
          log().info({ outcome: snap.output }, 'peer channel ended');
        }
      });
    });
    channel.ready.catch(() => {}); // the caller awaiting it gets the error; nobody else must crash
    channel.started = new Promise<PeerClient>((resolve, reject) => {
      channel.start = resolve;
      channel.ready.catch(reject);
    });
    channel.started.catch(() => {});
    this.channels.set(peer, channel);
    channel.actor.start();
    // Debug, not info: the line costs ~0.25 ms on the cold path of every brokering, and the channel's
    // end is logged at info with its outcome. The child's line, without making the child.
    opts.log.debug(bindings, 'peer channel opening');
    return channel;
  }

  private provideMachine() {
    const { opts } = this;
    return peerConnectionMachine.provide({
      actors: {
        requestConnection: fromPromise(async ({ input: { peer, proxy }, system }: { input: { peer: string; proxy: string }; system: object }) => {
          const channel = this.channelOf(system);
          let answer: unknown;
          const request = opts.bus.request(proxy, 'connectionRequest', { to: peer, channel: 'grpc_server' }, opts.timeouts.busRequestMs);
          // Dialed once the request is sealed and on its way (setImmediate runs after the
          // request's first turn): the proxy accepts it while the request crosses the bus.
          const warmDials = this.warmDials;
          // The TLS client too: its set-up is ~1.3 ms of CPU that would otherwise come between
          // the confirmation and the first byte to B.
          setImmediate(() => {
            // Nor once the confirmation is in (an answer within the turn): the dial has gone ahead
            // without them, and a client started now would sit unused until the channel ends.
            if (channel.released || channel.confirmation) return;
            if (warmDials) channel.warm = warmDials.start(proxy);
            channel.early = this.startEarlyClient(peer);
          });
          try {
            answer = await request;
          } catch (err) {
            channel.warm?.discard();
            channel.early?.client.close();
            const e = err instanceof RpcError ? err : new RpcError('BROKERING_FAILED', String(err));
            throw new PeerConnectionError('brokeringFailed', `${proxy}: ${e.detail}`, e.code);
          }
          const checked = parseWithTwin(confirmationSchema, confirmationTwin, answer);
          if (!checked.success) {
            channel.warm?.discard();
            channel.early?.client.close();
            throw new PeerConnectionError('brokeringFailed', `${proxy} sent a malformed confirmation`);
          }
          // Only a confirmation whose envelope verified as the proxy's gets this far.
          this.warmDials?.learn(proxy, checked.data.endpoint);
          channel.confirmation = { ...checked.data, proxy };
          return { endpoint: checked.data.endpoint };
        }),
        dialPeer: fromPromise(async ({ input: { peer, route }, signal, system }: { input: { peer: string; route: Route }; signal: AbortSignal; system: object }) => {
          const channel = this.channelOf(system);
          let first: Buffer | undefined;
          if (route.type === 'proxy') {
            // The preamble is the routing key: P reads exactly it (A's token and proof), then
            // splices. Signed before the dial and sent as it completes (src/core/dial.ts).
            const { token, challenge, sessionId, proxy } = channel.confirmation!;
            try {
              first = presentationBytes({
                token: Buffer.from(token, 'base64'),
                prove: { key: opts.signer.key, subject: { proxy, sessionId, leg: 'a', challenge: Buffer.from(challenge, 'base64') } },
              });
            } catch (err) {
              throw new PeerConnectionError('dialFailed', `presenting the splice preamble to ${proxy} failed: ${(err as Error).message}`);
            }
          }
          const warm = route.type === 'proxy' ? channel.warm?.take(channel.confirmation!.endpoint) : undefined;
          if (warm) timelineMark('dial.warm');
          // Not when the directory has named another certificate for B since the early client
          // started (B's replaced or revoked during the request): TLS then starts on the socket with
          // the entry of now, as it did before there were early clients.
          const early = route.type === 'proxy' && stillNamed(opts.directory.entry(peer), channel.early) ? channel.early : undefined;
          // A warm socket is connected already: the preamble goes out now, TLS right after it (with
          // an early client, in the same write).
          if (warm) present(warm, first!, early);
          const socket = warm ?? (await dialOrFail(route.type === 'direct' ? route.address : channel.confirmation!.endpoint, early ? undefined : first));
          // The machine gave up on this dial (timeout, CLOSE) and released the channel already:
          // a late socket would be nobody's, and through P it would even be spliced to B.
          if (signal.aborted) {
            socket.destroy();
            return;
          }
          if (!warm && early) present(socket, first!, early);
          channel.socket = socket;
        }),
        openChannel: fromPromise(async ({ input: { peer }, system }: { input: { peer: string }; system: object }) => {
          const channel = this.channelOf(system);
          const entry = opts.directory.entry(peer);
          if (!entry) throw new PeerConnectionError('unknownPeer', `${peer} left the directory`);
          const early = channel.early?.flight.attached ? channel.early.client : undefined;
          // Its ClientHello is out, so no other TLS client can start on this socket; and B is
          // accepted only while the directory still names the certificate the client checks for.
          if (early && !stillNamed(entry, channel.early)) {
            throw new PeerConnectionError('tlsFailed', `${peer}'s certificate in the directory changed while the channel was set up`);
          }
          // A client started for a dial that never used it (a direct route, or an entry for B that
          // changed before the dial) sent nothing.
          if (!early) channel.early?.client.close();
          let client: PeerClient;
          if (early) {
            // Its call, if one waits, is made now, as connectPeerClient's onStarted would.
            channel.start(early);
            await early.ready(DEFAULT_CONNECT_TIMEOUT_MS);
            client = early;
          } else {
            client = await connectPeerClient({
              tls: opts.tls,
              expectedPeer: { name: peer, fingerprint: entry.fingerprint },
              socket: channel.socket!,
              log: opts.log,
              callTimeoutMs: opts.timeouts.callMs,
              onStarted: channel.start,
            });
          }
          channel.client = client;
          client.onClose(() => channel.actor.send({ type: 'CONNECTION_LOST', detail: 'the connection to the peer closed' }));
        }),
      },
      actions: {
        releaseChannel: ({ system }) => {
          const channel = this.channelOf(system);
          channel.released = true;
          channel.warm?.discard();
          channel.early?.client.close();
          channel.client?.close();
          channel.socket?.destroy();
        },
      },
      delays: { dialTimeout: opts.timeouts.dialMs, idleTimeout: opts.timeouts.channelIdleMs },
    });
  }

  /** A's TLS client to `peer` on a held first flight, or none when the directory lost the peer. */
  private startEarlyClient(peer: string): Channel['early'] {
    const entry = this.opts.directory.entry(peer);
    if (!entry) return undefined;
    const flight = new HeldFirstFlight();
    try {
      const client = startPeerClient({
        tls: this.opts.tls,
        expectedPeer: { name: peer, fingerprint: entry.fingerprint },
        socket: flight,
        log: this.opts.log,
        callTimeoutMs: this.opts.timeouts.callMs,
      });
      return { flight, client, fingerprint: entry.fingerprint };
    } catch (err) {
      // Run from setImmediate, a throw here would end the process; without an early client the
      // channel starts TLS after its dial, where a failure fails only that channel.
      this.opts.log.debug({ err, peer }, 'early TLS client not started');
      flight.destroy();
      return undefined;
    }
  }

  private channelOf(system: object): Channel {
    const channel = this.io.get(system);
    if (!channel) throw new Error('peer channel actor without its channel');
    return channel;
  }

  /** The peer's route as the directory gives it now, or why there is none: the machine's input. */
  private routeInput(peer: string): PeerConnectionInput {
    const entry = this.opts.directory.entry(peer);
    if (!entry) return { peer, failure: { reason: 'unknownPeer', detail: `${peer} is not in the service directory` } };
    const grpc = entry.channels.find((c) => c.type === 'grpc_server');
    if (grpc?.proxy) return { peer, route: { type: 'proxy', proxy: grpc.proxy } };
    if (grpc?.address) return { peer, route: { type: 'direct', address: grpc.address } };
    return { peer, failure: { reason: 'noRoute', detail: `${peer} has no gRPC server channel in the directory` } };
  }
}

/** Whether the directory's entry for B still names the certificate the early client checks B against. */
function stillNamed(entry: DirectoryEntry | undefined, early: Channel['early']): early is NonNullable<Channel['early']> {
  return early !== undefined && entry?.fingerprint === early.fingerprint;
}

/** Sends the preamble on a connection to the proxy: with the early client's first flight behind it, or alone. */
function present(socket: Socket, preamble: Buffer, early: Channel['early']): void {
  if (early) early.flight.attach(socket, preamble);
  else socket.write(preamble);
}

async function dialOrFail(hostPort: string, first?: Buffer): Promise<Socket> {
  try {
    return await dialTcp(hostPort, first ? { first } : {});
  } catch (err) {
    throw new PeerConnectionError('dialFailed', (err as Error).message);
  }
}

function toRpcError(peer: string, output: PeerConnectionOutput): RpcError {
  if (output.outcome === 'closed') return new RpcError('PEER_UNREACHABLE', `channel to ${peer} closed (${output.detail})`);
  switch (output.reason) {
    case 'unknownPeer':
      return new RpcError('UNKNOWN_OPERATOR', output.detail);
    case 'dialTimedOut':
      return new RpcError('PEER_TIMEOUT', output.detail);
    case 'brokeringFailed':
      return new RpcError('BROKERING_FAILED', output.detail);
    default:
      return new RpcError('PEER_UNREACHABLE', `${output.reason}: ${output.detail}`);
  }
}
