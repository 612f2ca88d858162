import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:dgram';
import { gatherCandidates, givingUp, openSocket, PeerError, POLL_INTERVAL_MS, sleep, type PeerOptions, type PeerResult } from './common.js';
import { punch, PunchError, punchKey } from './punch.js';
import { relayThroughProxy } from './relay.js';
import { problemText, RendezvousClient } from './rendezvous.js';

interface PollAnswer {
  status: 0 | 1;
  guests: { peerId: string; addresses: string[] }[];
}

export interface HostOptions extends PeerOptions {
  /** Leave the game after this many guests were reported; undefined: stay until the signal aborts. */
  maxGuests?: number;
  /** Called once per guest, as soon as its outcome is known. */
  onGuest: (outcome: GuestOutcome) => void;
}

/**
 * What the host reports for one guest. `incompatible`: datagrams came from the guest's address but
 * none was a verified probe of this pairing (a client that swaps addresses and speaks its own
 * protocol over them); `failed`: no path, for the reason in `detail`.
 */
export type GuestOutcome =
  | (PeerResult & { peerId: string })
  | { result: 'incompatible' | 'failed'; peer: string | null; peerId: string; rttMs: null; detail: string };

export const succeeded = (o: GuestOutcome): boolean => o.result === 'direct' || o.result === 'relayed';

/**
 * `games host`: register the game, poll with our candidates, and pair with every guest that joins
 * (punching, then a relay of its own when punching fails), all on the one UDP socket whose
 * mapping STUN reported. The host stays until `maxGuests` guests were reported, the signal aborts
 * (Ctrl-C), or no guest joined for `timeoutMs`; then it deletes the game (the secret from
 * register is used for that and nothing else). Resolves with every guest's outcome.
 */
export async function runHost(opts: HostOptions): Promise<GuestOutcome[]> {
  const log = opts.log ?? (() => {});
  const warn = opts.warn ?? log;
  const client = new RendezvousClient(opts.server, { step: log, warn });
  const socket = await openSocket(opts.bind);
  // One listener a pairing while it punches: more than Node's default of 10 is expected here.
  socket.setMaxListeners(0);
  const leave = new AbortController();
  const stop = opts.signal ? AbortSignal.any([opts.signal, leave.signal]) : leave.signal;
  let secret: string | undefined;
  const pairings: Promise<GuestOutcome>[] = [];
  try {
    const idleMs = opts.timeoutMs;
    let joinedAt = Date.now();
    // Without --timeout the host stays until Ctrl-C, so a failing server is retried as long.
    const deadline = () => (idleMs === undefined ? Number.POSITIVE_INFINITY : joinedAt + idleMs);
    const { candidates } = await gatherCandidates(socket, opts, deadline());
    log(`candidates ${candidates.join(' ')}`);
    // Random, so nobody but the rendezvous can poll (and read guest ids) as this host.
    const peerId = `h-${randomBytes(16).toString('hex')}`;
    const register = async (why: string) => {
      const reg = await client.call<{ secret: string }>('/games/register', { name: opts.name, peerId }, { deadline: deadline(), waitingFor: why, signal: stop });
      if (reg.status !== 201) throw new PeerError(`register "${opts.name}" failed: ${problemText(reg)}`);
      secret = reg.body.secret;
      log(`registered "${opts.name}"`);
    };
    await register('to register the game');
    warn(`hosting "${opts.name}": waiting for guests (${opts.maxGuests === undefined ? 'no limit' : `up to ${opts.maxGuests}`}, ${givingUp(deadline() - Date.now())})`);
    const seen = new Set<string>();
    const pair = pairWith(opts, socket, peerId);
    while (!stop.aborted && (opts.maxGuests === undefined || seen.size < opts.maxGuests)) {
      if (Date.now() > deadline()) {
        if (seen.size === 0) throw new PeerError(`no guest joined "${opts.name}" within ${idleMs} ms`);
        log(`no further guest joined within ${idleMs} ms`);
        break;
      }
      const r = await client.call<PollAnswer>('/games/poll', { name: opts.name, peerId, addresses: candidates }, { deadline: deadline(), waitingFor: 'to poll for guests', signal: stop });
      if (r.status === 404) {
        // The rendezvous forgot the game (it expired while the server or its store was away): a
        // host still here hosts it again, and guests that keep starting find it.
        warn(`"${opts.name}" is gone from the rendezvous (expired during an outage?): registering it again`);
        await register('to register the game again');
        continue;
      }
      if (r.status !== 200) throw new PeerError(`poll failed: ${problemText(r)}`);
      for (const g of r.body.guests) {
        if (seen.has(g.peerId) || g.addresses.length === 0) continue;
        if (opts.maxGuests !== undefined && seen.size >= opts.maxGuests) break;
        seen.add(g.peerId);
        joinedAt = Date.now();
        log(`guest ${g.peerId} joined: ${g.addresses.join(' ')}`);
        pairings.push(pair(g).then((o) => (opts.onGuest(o), o)));
      }
      await sleep(POLL_INTERVAL_MS, stop).catch(() => undefined);
    }
    return await Promise.all(pairings);
  } catch (err) {
    // Ctrl-C while waiting on the rendezvous: a normal way to leave, with what was paired so far.
    if (opts.signal?.aborted) return Promise.all(pairings);
    throw err;
  } finally {
    leave.abort();
    await Promise.allSettled(pairings);
    socket.close();
    if (secret) {
      await fetch(new URL(`/games/${encodeURIComponent(opts.name)}`, opts.server), {
        method: 'DELETE',
        headers: { authorization: `Bearer ${secret}` },
        signal: AbortSignal.timeout(2000),
      }).catch(() => undefined);
    }
  }
}

/** One guest: punch on the shared socket, relay when that finds no path, and say which. */
function pairWith(hostOpts: HostOptions, socket: Socket, hostPeerId: string) {
  // A pairing under way finishes even when the host is told to leave (Ctrl-C): its guest is
  // already punching or dialing the relay, and a half-done pairing helps nobody.
  const { signal: _leaving, ...opts } = hostOpts;
  const log = opts.log ?? (() => {});
  return async (guest: { peerId: string; addresses: string[] }): Promise<GuestOutcome> => {
    const key = punchKey(guest.peerId, opts.name);
    const tag = (m: string) => log(`[${guest.peerId}] ${m}`);
    const failed = (detail: string, peer: string | null = guest.addresses[0] ?? null): GuestOutcome => ({ result: 'failed', peer, peerId: guest.peerId, rttMs: null, detail });
    const relay = async (): Promise<GuestOutcome> => {
      try {
        const r = await relayThroughProxy({ ...opts, log: tag }, { peerId: hostPeerId, guest: guest.peerId, key, role: 'host' });
        return { result: r.result, peer: r.peer, peerId: guest.peerId, rttMs: r.rttMs };
      } catch (err) {
        return failed(`relay: ${(err as Error).message}`);
      }
    };
    if (opts.relay === 'always') return relay();
    const foreign = new Map<string, number>();
    try {
      const result = await punch({
        socket,
        role: 'host',
        targets: [{ key, addresses: guest.addresses }],
        timeoutMs: opts.punchTimeoutMs ?? 5000,
        log: tag,
        onForeign: (from) => foreign.set(from, (foreign.get(from) ?? 0) + 1),
      });
      await result.done;
      return { result: 'direct', peer: result.peer, peerId: guest.peerId, rttMs: result.rttMs };
    } catch (err) {
      if (!(err instanceof PunchError)) return failed((err as Error).message);
      if (foreign.size > 0) {
        // It answered, but not in this protocol: a relay would carry the same mismatch.
        const [from, count] = [...foreign.entries()].sort((a, b) => b[1] - a[1])[0]!;
        return {
          result: 'incompatible',
          peer: from,
          peerId: guest.peerId,
          rttMs: null,
          detail: `${count} datagram(s) from ${from} but no verified punching probe: the guest does not speak this punching protocol (eps-p2p punch v2)`,
        };
      }
      if (opts.relay === 'never') return failed(err.message);
      tag(`punching failed (${err.message}); asking for a relay`);
      return relay();
    }
  };
}
