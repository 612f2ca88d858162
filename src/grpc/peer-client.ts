// A's gRPC clients to B: over a socket A already holds (brokered through the proxy's splice, or
// dialed directly by the peer-connection machine), and a grpc-js client that dials a peer itself.
export { connectSplicedPeerClient as connectPeerClient } from './spliced-client.js';
export { connectPeerClientDirect } from './grpc-js-client.js';
export {
  PeerTransportError,
  type ExpectedPeer,
  type PeerClient,
  type PeerClientDirectOptions,
  type PeerClientOptions,
  type PeerTransportErrorKind,
} from './peer-transport.js';
