import type { Server } from 'node:https';
import { RpcError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { connectBus } from '../core/nats.js';
import { readTlsMaterial } from '../core/tls-material.js';
import { createPeerServer } from '../grpc/peer-server.js';
import { startJsonRpcServer } from '../jsonrpc/server.js';
import type { Bus } from '../bus/bus.js';
import { joinAsOperator, presenceOptionsFrom } from '../operator/presence.js';
import { natsUrl, type EpsSettings } from '../settings/schemas.js';
import { Callbacks } from './callbacks.js';
import { createGatewayHandler } from './gateway.js';
import { PeerChannels } from './peer-channels.js';
import { ping } from './ping.js';

export interface RunningEpsServer {
  close(): Promise<void>;
}

/**
 * One EPS server: its presence on the bus, its gRPC server channel (on a listener when it has a
 * direct address, and on sockets it dials out to a proxy otherwise), its peer channels to other
 * operators, and, when configured, the JSON-RPC gateway for its operator's own tools.
 */
export async function startEpsServer(settings: EpsSettings, log: Logger): Promise<RunningEpsServer> {
  const self = settings.name;
  const tls = readTlsMaterial(settings.tls);
  if (tls.commonName !== self) {
    throw new Error(`settings name ${self} does not match the certificate's CN ${tls.commonName} (${settings.tls.cert})`);
  }
  const nc = await connectBus({ url: natsUrl(settings), randomize: settings.nats.randomize, name: `eps:${self}`, tls }, log);
  // One operator key signs its bus envelopes and proves its splice dials.
  const { directory, bus, signer } = joinAsOperator({
    nc,
    operator: self,
    tls,
    ...presenceOptionsFrom(settings),
    log,
  });

  const localMethods: Record<string, (params: unknown) => Promise<unknown>> = {
    _ping: async (params) => ping(params, directory.entry(self) ?? { name: self }),
  };
  const callLocal = async (method: string, params: unknown) => {
    const fn = Object.hasOwn(localMethods, method) ? localMethods[method] : undefined;
    if (!fn) throw new RpcError('METHOD_NOT_FOUND', `${self}.${method}`);
    return fn(params);
  };

  const peerServer = createPeerServer({
    tls,
    log: log.child({ component: 'grpc-server' }),
    handle: async (call, peer) => {
      // The TLS layer proved the peer holds a certificate of our root; the directory says which
      // certificate is this operator's and what it may call.
      const entry = directory.entry(peer.commonName);
      if (!entry || entry.fingerprint !== peer.fingerprint) {
        throw new RpcError('PERMISSION_DENIED', `${peer.commonName}'s certificate is not the one the directory lists`);
      }
      // A listed operator may learn that a method does not exist (-32601) before being told it may
      // not call one that does: the directory has already said who it is.
      if (!Object.hasOwn(localMethods, call.method)) throw new RpcError('METHOD_NOT_FOUND', `${self}.${call.method}`);
      if (!directory.isPermitted(peer.commonName, self, call.method)) {
        throw new RpcError('PERMISSION_DENIED', `${peer.commonName} may not call ${self}.${call.method}`);
      }
      return callLocal(call.method, call.params);
    },
  });
  if (settings.grpc.listen) await peerServer.listen(settings.grpc.listen.host, settings.grpc.listen.port);

  const callbacks = new Callbacks({
    self,
    signer,
    directory,
    log,
    dialTimeoutMs: settings.timeouts.dialMs,
    injectSocket: (socket) => peerServer.injectSocket(socket),
  });
  // Until the chain is loaded no envelope verifies: a forward answered now would be refused as
  // from an unknown operator, which P reports to A as a permission denial. Not serving yet makes
  // P tell A the truth at once (B is not on the bus yet).
  let closing = false;
  void directory.ready().then(() => {
    if (closing) return;
    bus.serve('connectionForward', callbacks.handle);
    bus.serve('_ping', async (params) => callLocal('_ping', params));
  });

  const channels = new PeerChannels({ self, tls, signer, directory, bus, log, timeouts: settings.timeouts, ...(settings.warmDials ? {} : { warmDials: false as const }) });

  let gateway: Server | undefined;
  if (settings.jsonrpc) {
    gateway = await startJsonRpcServer({
      tls,
      host: settings.jsonrpc.listen.host,
      port: settings.jsonrpc.listen.port,
      maxBodyBytes: settings.jsonrpc.maxBodyBytes,
      maxBatchCalls: settings.jsonrpc.maxBatchCalls,
      log: log.child({ component: 'gateway' }),
      handle: createGatewayHandler({
        self: { name: self, fingerprint: tls.fingerprint },
        isKnownOperator: (name) => directory.entry(name) !== undefined,
        callLocal,
        // A peer with a gRPC server channel is called over it (brokered through its proxy when it
        // has one); an operator the directory lists without one (a proxy's own server, such as the
        // Hyper edition's) is reachable only on the bus, as a signed request its directory
        // permissions allow or refuse.
        callRemote: (op, method, params, id) =>
          hasGrpcServerChannel(directory.entry(op)) ? channels.call(op, method, params, id) : callOverBus(bus, op, method, params),
      }),
    });
    log.info({ host: settings.jsonrpc.listen.host, port: settings.jsonrpc.listen.port }, 'JSON-RPC gateway listening');
  }
  log.info({ grpcListener: settings.grpc.listen ?? 'none (reachable through its proxy only)' }, 'EPS server running');

  return {
    async close() {
      closing = true;
      await new Promise<void>((resolve) => (gateway ? gateway.close(() => resolve()) : resolve()));
      gateway?.closeAllConnections();
      channels.close();
      callbacks.shutdown();
      bus.close();
      await peerServer.close();
      await directory.close();
      await nc.drain().catch(() => {});
    },
  };
}

function hasGrpcServerChannel(entry: { channels: { type: string }[] } | undefined): boolean {
  return entry?.channels.some((c) => c.type === 'grpc_server') ?? false;
}

function callOverBus(bus: Bus, operator: string, method: string, params: unknown): Promise<unknown> {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new RpcError('INVALID_PARAMS', `${operator}.${method} is called over the bus, which takes named params (an object)`);
  }
  return bus.request(operator, method, params as Record<string, unknown>);
}
