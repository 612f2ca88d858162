import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import {
  ATTR,
  decodeErrorCode,
  decodeStun,
  decodeXorAddress,
  encodeSoftware,
  encodeStun,
  MAGIC_COOKIE,
  METHOD_BINDING,
  type TransportAddress,
} from './stun.js';

// A Binding client for peers: it learns the address a NAT maps a socket to. Callers that will
// punch holes pass their own socket, because the mapping belongs to that socket only.

export interface BindingOptions {
  /** Reuse this socket (the one the peer will talk on); otherwise a fresh one is opened and closed. */
  socket?: Socket;
  /** Initial retransmission timeout; RFC 8489 §6.2.1 recommends 500 ms when the RTT is unknown. */
  rtoMs?: number;
  /** Rc: how many requests in all (RFC default 7). */
  maxRequests?: number;
  /** Rm: after the last request, wait this many RTOs (RFC default 16). */
  lastWaitFactor?: number;
  /** A hard cap on the whole exchange: peers poll a rendezvous, they cannot wait 39.5 s here. */
  capMs?: number;
  software?: string;
  fingerprint?: boolean;
}

export interface BindingResult {
  mapped: TransportAddress;
  /** The server's SOFTWARE, when it sent one. */
  software?: string;
  rttMs: number;
  requests: number;
}

export class StunClientError extends Error {
  override readonly name: string = 'StunClientError';
  readonly code: number | undefined;
  constructor(message: string, code?: number) {
    super(message);
    this.code = code;
  }
}

/** No answer at all (the server away, or the path dropping datagrams): worth asking again later. */
export class StunTimeoutError extends StunClientError {
  override readonly name = 'StunTimeoutError';
}

export async function stunBinding(server: { host: string; port: number }, opts: BindingOptions = {}): Promise<BindingResult> {
  const rto = opts.rtoMs ?? 500;
  const maxRequests = opts.maxRequests ?? 7;
  const lastWait = (opts.lastWaitFactor ?? 16) * rto;
  const cap = opts.capMs ?? 5000;
  const owned = !opts.socket;
  const socket = opts.socket ?? createSocket(isIPv6(server.host) ? 'udp6' : 'udp4');
  const transactionId = randomBytes(12);
  const request = encodeStun(
    {
      method: METHOD_BINDING,
      cls: 'request',
      transactionId,
      attributes: opts.software ? [{ type: ATTR.SOFTWARE, value: encodeSoftware(opts.software) }] : [],
    },
    { fingerprint: opts.fingerprint ?? false },
  );
  const started = Date.now();
  let requests = 0;
  const timers: NodeJS.Timeout[] = [];
  let onMessage: ((msg: Buffer) => void) | undefined;
  try {
    return await new Promise<BindingResult>((resolve, reject) => {
      onMessage = (msg: Buffer) => {
        // Other traffic shares a peer's socket: only our transaction's answer counts.
        if (msg.length < 20 || msg.readUInt32BE(4) !== MAGIC_COOKIE || !msg.subarray(8, 20).equals(transactionId)) return;
        const decoded = decodeStun(msg);
        if (decoded.type === 'invalid') return;
        const { message } = decoded;
        const software = message.attributes.find((a) => a.type === ATTR.SOFTWARE)?.value.toString('utf8');
        if (message.cls === 'error') {
          const err = message.attributes.find((a) => a.type === ATTR.ERROR_CODE);
          const parsed = err && decodeErrorCode(err.value);
          reject(new StunClientError(`STUN error ${parsed?.code ?? '?'} ${parsed?.reason ?? ''}`.trim(), parsed?.code));
          return;
        }
        if (message.cls !== 'success') return;
        const xor = message.attributes.find((a) => a.type === ATTR.XOR_MAPPED_ADDRESS);
        const plain = message.attributes.find((a) => a.type === ATTR.MAPPED_ADDRESS);
        // MAPPED-ADDRESS is what pre-RFC 5389 servers send; XOR-MAPPED-ADDRESS wins when both are there.
        const mapped = xor ? decodeXorAddress(xor.value, transactionId) : plain && decodeMapped(plain.value);
        if (!mapped) {
          reject(new StunClientError('Binding success without a usable (XOR-)MAPPED-ADDRESS'));
          return;
        }
        resolve({ mapped, ...(software !== undefined ? { software } : {}), rttMs: Date.now() - started, requests });
      };
      socket.on('message', onMessage);
      const send = () => {
        requests++;
        socket.send(request, server.port, server.host, (err) => err && reject(new StunClientError(`send failed: ${err.message}`)));
      };
      // RFC 8489 §6.2.1: requests at 0, RTO, 3·RTO, 7·RTO, … then Rm·RTO after the last one.
      let at = 0;
      for (let i = 0; i < maxRequests; i++) {
        timers.push(setTimeout(send, at));
        at += rto * 2 ** i;
      }
      const giveUp = Math.min(at - rto * 2 ** (maxRequests - 1) + lastWait, cap);
      timers.push(
        setTimeout(
          () => reject(new StunTimeoutError(`no Binding answer from ${server.host}:${server.port} after ${requests} requests in ${Date.now() - started} ms`)),
          giveUp,
        ),
      );
    });
  } finally {
    for (const t of timers) clearTimeout(t);
    if (onMessage) socket.off('message', onMessage);
    if (owned) socket.close();
  }
}

function decodeMapped(value: Buffer): TransportAddress | undefined {
  const family = value[1];
  if (family === 0x01 && value.length === 8) return { family: 'IPv4', address: [...value.subarray(4)].join('.'), port: value.readUInt16BE(2) };
  if (family === 0x02 && value.length === 20) {
    const groups: string[] = [];
    for (let i = 4; i < 20; i += 2) groups.push(value.readUInt16BE(i).toString(16));
    return { family: 'IPv6', address: groups.join(':'), port: value.readUInt16BE(2) };
  }
  return undefined;
}
