import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RemoteInfo, Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { parseHostPort } from '../../core/splice-wire.js';

// UDP hole punching between a host and a guest that learned each other's candidates through the
// rendezvous, on the very socket they used for STUN (the NAT mapping belongs to that socket).
//
// Authentication. Only the rendezvous and the game's host ever see a guest's peerId (poll answers
// go to the host only, GET /games never shows peer ids), and the host's own peerId is random, so
// nobody else can poll as the host. Both sides derive
//   K = HMAC-SHA256(key = guestPeerId, "eps-p2p punch v2|" + gameName)
// from the whole id, whatever its form, so a guest with any id the rendezvous accepts can punch;
// K is exactly as secret as the id. `games guest` sends `g-<128-bit random hex>` (or an id given
// with --peer-id, which must then be as unguessable), so K keeps 128 bits nobody else knows.
// Every probe carries a fresh random tx and HMAC(K, "ping|<role>|<tx>"); the answer carries
// HMAC(K, "pong|<role>|<tx>") for that same tx. A path counts only when our own fresh tx comes
// back MACed by the other role, so:
//   - a stale candidate (an old mapping now held by someone else, a previous guest, any service
//     that happens to echo datagrams) cannot answer: it does not know this pairing's K;
//   - a third party that sees probes on the path cannot replay them: tx is new per probe, and the
//     role in the MAC stops a probe being reflected back at its sender (or a peer hearing itself
//     through a shared private subnet);
//   - the host's bearer secret is never used or shared.
// It does not stop someone who can read the rendezvous HTTP traffic (they learn the guest id):
// run the rendezvous behind TLS for that.

export type Role = 'host' | 'guest';
export const otherRole = (role: Role): Role => (role === 'host' ? 'guest' : 'host');
const MAGIC = Buffer.from('EPSP1');
/** Announced candidates (16 per peer) plus the peer-reflexive ones a few guests may add. */
const MAX_TARGETS = 64;

/** The pairing key, from the guest's whole peer id (see above): any id works. */
export function punchKey(guestPeerId: string, gameName: string): Buffer {
  return createHmac('sha256', guestPeerId).update(`eps-p2p punch v2|${gameName}`).digest();
}

/** The MAC both the UDP probes and the relay exchange (relay.ts) carry. */
export const mac = (key: Buffer, kind: 'ping' | 'pong', role: Role, tx: string) => createHmac('sha256', key).update(`${kind}|${role}|${tx}`).digest('hex');

export function macOk(key: Buffer, kind: 'ping' | 'pong', role: Role, tx: string, got: string): boolean {
  const want = Buffer.from(mac(key, kind, role, tx), 'hex');
  const have = Buffer.from(got, 'hex');
  return want.length === have.length && timingSafeEqual(want, have);
}

interface Probe {
  t: 'ping' | 'pong';
  role: Role;
  tx: string;
  mac: string;
}

function encode(p: Probe): Buffer {
  return Buffer.concat([MAGIC, Buffer.from(JSON.stringify(p))]);
}

function decode(msg: Buffer): Probe | undefined {
  if (msg.length > 512 || !msg.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  try {
    const p = JSON.parse(msg.subarray(MAGIC.length).toString('utf8')) as Probe;
    if ((p.t !== 'ping' && p.t !== 'pong') || (p.role !== 'host' && p.role !== 'guest')) return undefined;
    if (typeof p.tx !== 'string' || !/^[0-9a-f]{24}$/.test(p.tx) || typeof p.mac !== 'string' || !/^[0-9a-f]{64}$/.test(p.mac)) return undefined;
    return p;
  } catch {
    return undefined;
  }
}


const fmt = (r: { address: string; port: number }) => (isIPv6(r.address) ? `[${r.address}]:${r.port}` : `${r.address}:${r.port}`);

export interface PunchTarget {
  key: Buffer;
  addresses: string[];
}

export interface PunchOptions {
  socket: Socket;
  role: Role;
  /** The other side's candidates, each with the key of that pairing (a host may have several guests). */
  targets: PunchTarget[];
  intervalMs?: number;
  timeoutMs?: number;
  /** Ping-pong rounds on the found path to measure the RTT. */
  rttRounds?: number;
  /** After success, keep answering the other side's probes this long so it can finish too. */
  lingerMs?: number;
  log?: (msg: string) => void;
  /**
   * A datagram from one of the targets that is not a verified probe of this pairing: the other
   * side speaks another protocol (or another version of this one). Called for target addresses
   * only, since several pairings may share the socket.
   */
  onForeign?: (from: string) => void;
}

export interface PunchResult {
  peer: string;
  rttMs: number;
  samples: number[];
}

export class PunchError extends Error {
  override readonly name = 'PunchError';
}

/**
 * Probes every candidate every intervalMs until one answers with a verified pong, then measures
 * the RTT on that path with rttRounds sequential pings. Answers every verified ping meanwhile,
 * and for lingerMs afterwards (the returned `done` resolves when the linger ends).
 */
export async function punch(opts: PunchOptions): Promise<PunchResult & { done: Promise<void> }> {
  const { socket, role } = opts;
  const other = otherRole(role);
  const interval = opts.intervalMs ?? 100;
  const timeout = opts.timeoutMs ?? 5000;
  const rounds = opts.rttRounds ?? 5;
  const log = opts.log ?? (() => {});
  // tx → what it was sent with, so a pong is checked against that key and timed.
  const pending = new Map<string, { key: Buffer; sentAt: number; resolve?: (rinfo: RemoteInfo) => void }>();
  let found: ((v: { rinfo: RemoteInfo; key: Buffer; rtt: number }) => void) | undefined;

  const sendPing = (key: Buffer, host: string, port: number, resolve?: (r: RemoteInfo) => void) => {
    const tx = randomBytes(12).toString('hex');
    pending.set(tx, { key, sentAt: performance.now(), ...(resolve ? { resolve } : {}) });
    socket.send(encode({ t: 'ping', role, tx, mac: mac(key, 'ping', role, tx) }), port, host, () => {});
  };

  const targets = opts.targets.flatMap((t) => t.addresses.map((a) => ({ key: t.key, ...parseHostPort(a) })));
  const isTarget = (r: RemoteInfo) => targets.some((t) => t.host === r.address && t.port === r.port);
  // Several pairings may share the socket (a host with many guests): what comes from elsewhere is
  // another pairing's business, and only what comes from our targets is worth a word.
  const notOurs = (rinfo: RemoteInfo, what: string) => {
    if (!isTarget(rinfo)) return;
    log(`${what} from ${fmt(rinfo)} dropped`);
    opts.onForeign?.(fmt(rinfo));
  };
  const onMessage = (msg: Buffer, rinfo: RemoteInfo) => {
    const p = decode(msg);
    if (!p) return notOurs(rinfo, 'a datagram that is not a punching probe');
    if (p.role !== other) return;
    if (p.t === 'ping') {
      const key = opts.targets.find((t) => macOk(t.key, 'ping', other, p.tx, p.mac))?.key;
      if (!key) return notOurs(rinfo, 'unverified ping');
      // A verified ping from an address nobody announced is the other side's mapping towards us
      // (a NAT that maps each destination to a new port): probe it too, or only the other side
      // would ever find the path and we would give up on one that works.
      if (!isTarget(rinfo) && targets.length < MAX_TARGETS) {
        log(`peer-reflexive candidate ${fmt(rinfo)} added`);
        targets.push({ key, host: rinfo.address, port: rinfo.port });
      }
      // Answer where it came from: behind a NAT that is the mapping, not any announced candidate.
      socket.send(encode({ t: 'pong', role, tx: p.tx, mac: mac(key, 'pong', role, p.tx) }), rinfo.port, rinfo.address, () => {});
      return;
    }
    const sent = pending.get(p.tx);
    if (!sent) return; // another pairing's probe on the same socket
    if (!macOk(sent.key, 'pong', other, p.tx, p.mac)) return notOurs(rinfo, 'unverified pong');
    pending.delete(p.tx);
    const rtt = performance.now() - sent.sentAt;
    if (sent.resolve) sent.resolve(rinfo);
    else found?.({ rinfo, key: sent.key, rtt });
  };
  const onError = (err: Error) => log(`socket error ignored: ${err.message}`);
  socket.on('message', onMessage);
  socket.on('error', onError);
  const cleanup = () => {
    socket.off('message', onMessage);
    socket.off('error', onError);
  };

  let timer: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  try {
    const first = await new Promise<{ rinfo: RemoteInfo; key: Buffer; rtt: number }>((resolve, reject) => {
      found = resolve;
      const burst = () => targets.forEach((t) => sendPing(t.key, t.host, t.port));
      burst();
      timer = setInterval(burst, interval);
      deadline = setTimeout(
        () => reject(new PunchError(`no verified answer from any of ${targets.map((t) => fmt({ address: t.host, port: t.port })).join(', ') || '(no candidates)'} within ${timeout} ms`)),
        timeout,
      );
    });
    clearInterval(timer);
    clearTimeout(deadline);
    found = undefined;
    const peer = first.rinfo;
    const samples = [first.rtt];
    // A few more messages over the found path: each must come back verified from the same peer.
    for (let i = 0; i < rounds; i++) {
      const started = performance.now();
      const ok = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 1000);
        sendPing(first.key, peer.address, peer.port, (r) => {
          clearTimeout(t);
          resolve(r.address === peer.address && r.port === peer.port);
        });
      });
      if (ok) samples.push(performance.now() - started);
    }
    if (samples.length < 2) throw new PunchError(`path to ${fmt(peer)} answered once, then went silent`);
    const sorted = [...samples].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const done = new Promise<void>((resolve) => setTimeout(resolve, opts.lingerMs ?? 1500)).then(cleanup);
    return { peer: fmt(peer), rttMs: Math.round(median * 100) / 100, samples, done };
  } catch (err) {
    clearInterval(timer);
    clearTimeout(deadline);
    cleanup();
    throw err;
  }
}
