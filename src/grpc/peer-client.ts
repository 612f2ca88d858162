// A's gRPC clients to B: over a socket A already holds (brokered through the proxy's splice, or
// dialed directly by the peer-connection machine), and a grpc-js client that dials a peer itself.
export { connectSplicedPeerClient as connectPeerClient, startSplicedPeerClient as startPeerClient, type StartedPeerClient } from './spliced-client.js';
export { HeldFirstFlight } from './held-first-flight.js';
export { connectPeerClientDirect } from './grpc-js-client.js';
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  PeerTransportError,
  type ExpectedPeer,
  type PeerClient,
  type PeerClientDirectOptions,
  type PeerClientOptions,
  type PeerTransportErrorKind,
} from './peer-transport.js';
