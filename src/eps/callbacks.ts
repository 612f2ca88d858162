import type { Socket } from 'node:net';
import { createActor, fromPromise, type Actor, type InspectionEvent } from 'xstate';
import { z } from 'zod';
import { callbackMachine, type CallbackInput } from '../../machines/callback.js';
import type { Signer } from '../bus/envelope.js';
import { dialAndPresent } from '../core/dial.js';
import { RpcError } from '../core/errors.js';
import { childOnDemand, type Logger } from '../core/logger.js';
import { isRecord, isText, onlyKeys, parseWithTwin } from '../core/shape.js';
import { challengeBase64Schema, hostPortSchema, isHostPortText, isTokenBase64, tokenBase64Schema } from '../core/splice-wire.js';
import type { DirectoryEntry } from '../directory/types.js';

/** What P forwards to B: A's request, B's leg token, the challenge B's proof signs, and the endpoint to dial. */
export const connectionForwardSchema = z.strictObject({
  requester: z.string().min(1).max(128),
  token: tokenBase64Schema,
  challenge: challengeBase64Schema,
  endpoint: hostPortSchema,
  sessionId: z.string().min(1).max(128),
});

const CONNECTION_FORWARD_KEYS = new Set(['requester', 'token', 'challenge', 'endpoint', 'sessionId']);
/** connectionForwardSchema's twin (src/core/shape.ts): a cold zod parse on every brokering's path. */
export function connectionForwardTwin(raw: unknown): z.output<typeof connectionForwardSchema> | undefined {
  if (!isRecord(raw) || !onlyKeys(raw, CONNECTION_FORWARD_KEYS)) return undefined;
  const { requester, token, challenge, endpoint, sessionId } = raw;
  if (!isText(requester, 1, 128) || !isTokenBase64(token) || !isTokenBase64(challenge) || !isHostPortText(endpoint) || !isText(sessionId, 1, 128)) return undefined;
  return { requester, token, challenge, endpoint, sessionId };
}

/** One forwarded request's I/O and secrets, which the machine must not hold. */
interface Forward {
  proxy: string;
  token: string;
  challenge: string;
  sessionId: string;
  socket: Socket | undefined;
  resolve(answer: { accepted: true }): void;
  reject(err: RpcError): void;
  actor: Actor<typeof callbackMachine>;
}

export interface CallbacksOptions {
  self: string;
  /** B's operator key (the one that signs its bus envelopes): it proves B's dial to the proxy. */
  signer: Signer;
  directory: { entry(name: string): DirectoryEntry | undefined };
  log: Logger;
  dialTimeoutMs: number;
  /**
   * How long B's acceptance of a forward waits after its dial went through (machines/callback.ts,
   * `settling`): past the few milliseconds in which P confirms A and the splice is made, so that
   * the answer P will not read takes no CPU from them. Unset, the machine's own default (100 ms).
   */
  answerDelayMs?: number;
  /** Gives an outbound socket to the gRPC server; from then on the server owns it. */
  injectSocket: (socket: Socket) => void;
  /** xstate's inspection hook for every callback actor: how tests and tools see each transition. */
  inspect?: (event: InspectionEvent) => void;
}

/**
 * B's side: each forwarded connection request becomes a callback machine. The bus handler's
 * reply to P is the machine's answer: refused, accepted once B's dial is through, or dial failed.
 */
export class Callbacks {
  private readonly live = new Set<Actor<typeof callbackMachine>>();
  /**
   * Each forward's I/O, by the actor system of its machine (one per createActor): the machine is
   * provided once, since provide() rebuilds every state node (~0.2 ms per forward, more than the
   * rest of the actor's life), and its actors and actions find their forward here.
   */
  private readonly io = new WeakMap<object, Forward>();
  private readonly machine;

  constructor(private readonly opts: CallbacksOptions) {
    this.machine = this.provideMachine();
  }

  get liveCount(): number {
    return this.live.size;
  }

  /** The bus handler for `connectionForward`, sent by the proxy operator `proxy`. */
  handle = async (params: Record<string, unknown>, proxy: string): Promise<{ accepted: true }> => {
    const checked = parseWithTwin(connectionForwardSchema, connectionForwardTwin, params);
    if (!checked.success) {
      throw new RpcError('INVALID_PARAMS', checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    }
    const { requester, token, challenge, endpoint, sessionId } = checked.data;
    const { opts } = this;
    // Made on first use: a pino child costs ~40 µs on the cold path B's dial waits for.
    const log = childOnDemand(opts.log, { component: 'callback', requester, proxySessionId: sessionId });
    return new Promise((resolve, reject) => {
      const refusal = this.check(requester, proxy);
      const actor = createActor(this.machine, { input: { requester, proxy, endpoint, ...(refusal ? { refusal } : {}) }, inspect: opts.inspect });
      this.io.set(actor.system, { proxy, token, challenge, sessionId, socket: undefined, resolve, reject, actor });
      this.live.add(actor);
      actor.subscribe((snap) => {
        if (snap.status !== 'done') return;
        // Shut down while still verifying: answer P now rather than leave it to its bus timeout.
        // (A no-op when the machine already answered.)
        if (snap.output?.outcome === 'shutDown') reject(new RpcError('BROKERING_FAILED', `${opts.self} is shutting down`));
        this.live.delete(actor);
        log().info({ outcome: snap.output }, 'callback ended');
      });
      actor.start();
    });
  };

  private provideMachine() {
    const { opts } = this;
    return callbackMachine.provide({
      actors: {
        dialProxy: fromPromise(async ({ input: { endpoint }, signal, system }: { input: { endpoint: string }; signal: AbortSignal; system: object }) => {
          const forward = this.forwardOf(system);
          const { proxy } = forward;
          const dialed = await dialAndPresent(endpoint, {
            token: Buffer.from(forward.token, 'base64'),
            prove: { key: opts.signer.key, subject: { proxy, sessionId: forward.sessionId, leg: 'b', challenge: Buffer.from(forward.challenge, 'base64') } },
          });
          // The machine gave up on this dial (timeout, shutdown) and closeSocket already ran:
          // a late socket would hold P's session with nobody serving it.
          if (signal.aborted) dialed.destroy();
          else forward.socket = dialed;
        }),
      },
      actions: {
        answerAccepted: ({ system }) => this.forwardOf(system).resolve({ accepted: true }),
        // B's own refusal, distinct from the directory denying the proxy (PERMISSION_DENIED).
        answerRefused: ({ context, system }) => this.forwardOf(system).reject(new RpcError('BROKERING_FAILED', context.detail)),
        answerDialFailed: ({ context, system }) =>
          this.forwardOf(system).reject(new RpcError('BROKERING_FAILED', `${opts.self} could not dial the proxy: ${context.detail}`)),
        injectSocket: ({ system }) => {
          const forward = this.forwardOf(system);
          const s = forward.socket!;
          s.once('close', () => forward.actor.send({ type: 'CONNECTION_CLOSED', detail: 'connection to the proxy closed' }));
          opts.injectSocket(s);
        },
        closeSocket: ({ system }) => this.forwardOf(system).socket?.destroy(),
      },
      // provide() merges delays, so an unset answerDelayMs leaves the machine's default in place.
      delays: { dialTimeout: opts.dialTimeoutMs, ...(opts.answerDelayMs === undefined ? {} : { answerDelay: opts.answerDelayMs }) },
    });
  }

  private forwardOf(system: object): Forward {
    const forward = this.io.get(system);
    if (!forward) throw new Error('callback actor without its forward');
    return forward;
  }

  /** B accepts only requests its own proxy forwards, from operators the directory knows. */
  private check(requester: string, proxy: string): CallbackInput['refusal'] {
    const own = this.opts.directory.entry(this.opts.self);
    const grpc = own?.channels.find((c) => c.type === 'grpc_server');
    if (!grpc?.proxy || grpc.proxy !== proxy) return { reason: 'wrongProxy', detail: `${this.opts.self} is not reachable through ${proxy}` };
    if (!this.opts.directory.entry(requester)) return { reason: 'unknownPeer', detail: `${requester} is not in the service directory` };
    return undefined;
  }

  shutdown(): void {
    for (const a of this.live) a.send({ type: 'SHUTDOWN' });
  }
}
