import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { PeerError, sleep, type PeerOptions, type PeerResult } from './common.js';
import { dialAndPresent } from '../../core/dial.js';
import { mac, macOk, otherRole, PunchError, type Role } from './punch.js';
import { problemText, RendezvousClient } from './rendezvous.js';

// The fallback when punching finds no path (a NAT that maps every destination to a new port):
// ask the rendezvous for a relay, dial the P2P proxy's splice endpoint with the token it hands
// this peer (the other peer has its own, for the other leg of the same session), and prove over the spliced stream, with the same MACs as the UDP probes, that the
// other end is the peer of this pairing. The proxy sees those messages (the relay is not
// encrypted end to end): a game that needs privacy runs its own TLS or DTLS over the path.

const MAX_LINE = 1024;

/** What POST /games/relay answers a peer: its own view of the proxy's grant. */
interface Grant {
  sessionId: string;
  /** This peer's own token, single use. */
  token: string;
  endpoint: string;
  dialWithinMs: number;
  /** The proxy ends the relayed session at these. */
  limits?: { maxDurationMs: number; maxBytesPerDirection: number };
}

/**
 * POST /games/relay until the rendezvous grants one. 409 (the other side's candidates have not
 * been answered yet) is waited out here; 429 and 503 (a cap, the proxy or the store away) by the
 * client's backoff, which honours Retry-After. Anything else waiting cannot fix.
 */
async function askForRelay(opts: PeerOptions, peerId: string, guest: string | undefined, deadline: number): Promise<Grant> {
  const client = new RendezvousClient(opts.server, { step: opts.log ?? (() => {}), warn: opts.warn ?? opts.log ?? (() => {}) });
  for (;;) {
    const r = await client.call<Grant>('/games/relay', { name: opts.name, peerId, ...(guest ? { guest } : {}) }, {
      deadline,
      waitingFor: 'to grant a relay',
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (r.status === 200) return r.body;
    if (r.status !== 409) throw new PeerError(`relay refused: ${problemText(r)}`);
    if (Date.now() > deadline) throw new PeerError(`no relay granted in time (${problemText(r)})`);
    await sleep(500, opts.signal);
  }
}

/** The shared dialer, under one deadline for the connection and the preamble. */
async function dial(endpoint: string, token: Buffer, timeoutMs: number): Promise<Socket> {
  try {
    // The splice preamble without a proof: game peers hold no operator key.
    return await dialAndPresent(endpoint, { token }, { timeoutMs });
  } catch (err) {
    throw new PeerError(`relay ${endpoint}: ${(err as Error).message}`);
  }
}

type Line = { t: 'ping' | 'pong'; role: Role; tx: string; mac: string } | { t: 'done'; role: Role };

function parseLine(text: string): Line | undefined {
  try {
    const m = JSON.parse(text) as Line;
    if (m.role !== 'host' && m.role !== 'guest') return undefined;
    if (m.t === 'done') return m;
    if ((m.t === 'ping' || m.t === 'pong') && /^[0-9a-f]{24}$/.test(m.tx) && /^[0-9a-f]{64}$/.test(m.mac)) return m;
  } catch {
    // Not ours: reported by the caller as an unverified line.
  }
  return undefined;
}

export interface RelayExchangeOptions {
  socket: Socket;
  key: Buffer;
  role: Role;
  /** Verified ping-pong rounds; the first also waits for the other peer to attach. */
  rounds?: number;
  timeoutMs: number;
  log?: (msg: string) => void;
}

/**
 * Sends `rounds` pings one after the other and answers every verified ping of the other role;
 * each side says `done` after its last pong and closes once both have. Resolves with the RTT
 * samples after the first round (which includes the wait for the other peer to dial).
 */
export function exchangeOverRelay(opts: RelayExchangeOptions): Promise<number[]> {
  const { socket, key, role } = opts;
  const other = otherRole(role);
  const rounds = opts.rounds ?? 5;
  const log = opts.log ?? (() => {});
  const send = (m: Line) => socket.write(`${JSON.stringify(m)}\n`);
  return new Promise((resolve, reject) => {
    const samples: number[] = [];
    let pending: { tx: string; sentAt: number } | undefined;
    let answered = 0;
    let ourDone = false;
    let theirDone = false;
    let buffered = '';
    const timer = setTimeout(() => fail(`the relay exchange did not finish within ${opts.timeoutMs} ms (${answered} of ${rounds} answers)`), opts.timeoutMs);

    const ping = () => {
      const tx = randomBytes(12).toString('hex');
      pending = { tx, sentAt: performance.now() };
      send({ t: 'ping', role, tx, mac: mac(key, 'ping', role, tx) });
    };
    const finishIfBoth = () => {
      if (!ourDone || !theirDone) return;
      clearTimeout(timer);
      socket.end();
      resolve(samples.slice(1));
    };
    function fail(why: string) {
      clearTimeout(timer);
      socket.destroy();
      reject(new PeerError(why));
    }
    const onLine = (text: string) => {
      const m = parseLine(text);
      if (!m || m.role !== other) return log('unverified line on the relay dropped');
      if (m.t === 'done') {
        theirDone = true;
        return finishIfBoth();
      }
      if (m.t === 'ping') {
        if (!macOk(key, 'ping', other, m.tx, m.mac)) return log('unverified ping on the relay dropped');
        send({ t: 'pong', role, tx: m.tx, mac: mac(key, 'pong', role, m.tx) });
        return;
      }
      if (!pending || m.tx !== pending.tx || !macOk(key, 'pong', other, m.tx, m.mac)) return log('unverified pong on the relay dropped');
      samples.push(performance.now() - pending.sentAt);
      pending = undefined;
      if (++answered < rounds) return ping();
      ourDone = true;
      send({ t: 'done', role });
      finishIfBoth();
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MAX_LINE * 4) return fail('the relay sent lines longer than any message of this protocol');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        onLine(line);
      }
    });
    socket.on('error', (err) => fail(`relay connection failed: ${err.message}`));
    socket.on('close', () => {
      if (!ourDone || !theirDone) fail(answered === 0 ? 'the relay closed the connection before the other peer answered (token refused or the other peer never dialed)' : `the relay closed after ${answered} of ${rounds} answers`);
    });
    ping();
  });
}

export interface RelayPlan {
  peerId: string;
  /** The host names the guest it relays to; a guest names nobody. */
  guest?: string;
  key: Buffer;
  role: Role;
}

/** Asks for a relay, dials it, and proves the path: the `relayed` outcome of a peer. */
export async function relayThroughProxy(opts: PeerOptions, plan: RelayPlan): Promise<PeerResult> {
  const log = opts.log ?? (() => {});
  const timeoutMs = opts.relayTimeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  const grant = await askForRelay(opts, plan.peerId, plan.guest, deadline);
  const limits = grant.limits ? `, at most ${grant.limits.maxDurationMs} ms and ${grant.limits.maxBytesPerDirection} bytes each way` : '';
  log(`relay granted at ${grant.endpoint} (session ${grant.sessionId}, dial within ${grant.dialWithinMs} ms${limits})`);
  const socket = await dial(grant.endpoint, Buffer.from(grant.token, 'base64'), 5000);
  const samples = await exchangeOverRelay({ socket, key: plan.key, role: plan.role, timeoutMs: Math.max(1000, deadline - Date.now()), log });
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  return { result: 'relayed', peer: grant.endpoint, rttMs: Math.round(median * 100) / 100 };
}

/**
 * What both peers do once they know each other's candidates: punch (unless told to relay at
 * once), and when no path answers, relay (unless told never to).
 */
export async function directOrRelayed(opts: PeerOptions, direct: () => Promise<PeerResult>, relay: () => Promise<PeerResult>): Promise<PeerResult> {
  if (opts.relay === 'always') return relay();
  try {
    return await direct();
  } catch (err) {
    if (!(err instanceof PunchError) || opts.relay === 'never') throw err;
    opts.log?.(`punching failed (${err.message}); asking for a relay`);
    return relay();
  }
}
