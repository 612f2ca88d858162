import { randomBytes } from 'node:crypto';
import { gatherCandidates, givingUp, openSocket, PeerError, POLL_INTERVAL_MS, sleep, type PeerOptions, type PeerResult } from './common.js';
import { punch, punchKey } from './punch.js';
import { directOrRelayed, relayThroughProxy } from './relay.js';
import { problemText, RendezvousClient } from './rendezvous.js';

export interface GuestOptions extends PeerOptions {
  /** The id sent to the rendezvous; default g-<128 random bits>. The punch key derives from it. */
  peerId?: string;
}

/**
 * `games guest`: start with our candidates until the host's are known (status 1), then punch.
 * Our peerId reaches only the rendezvous and the host: it keys the probes' MACs. Failed calls are
 * retried until the game's deadline (timeoutMs), so a rendezvous restart only delays the duel.
 */
export async function runGuest(opts: GuestOptions): Promise<PeerResult> {
  const log = opts.log ?? (() => {});
  const client = new RendezvousClient(opts.server, { step: log, warn: opts.warn ?? log });
  const socket = await openSocket(opts.bind);
  try {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    const { candidates } = await gatherCandidates(socket, opts, deadline);
    log(`candidates ${candidates.join(' ')}`);
    const peerId = opts.peerId ?? `g-${randomBytes(16).toString('hex')}`;
    let hostAddresses: string[] = [];
    let lastWait = '';
    for (;;) {
      const r = await client.call<{ status: 0 | 1; addresses: string[] }>('/games/start', { name: opts.name, peerId, addresses: candidates }, {
        deadline,
        waitingFor: "to answer the host's candidates",
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      // 404: the host may not have registered yet; keep trying until the deadline.
      if (r.status !== 200 && r.status !== 404) throw new PeerError(`start failed: ${problemText(r)}`);
      if (r.status === 200 && r.body.status === 1 && r.body.addresses.length > 0) {
        hostAddresses = r.body.addresses;
        break;
      }
      if (Date.now() > deadline) throw new PeerError(`"${opts.name}" had no host candidates within ${opts.timeoutMs ?? 60_000} ms (${problemText(r)})`);
      // What we wait for, said once per reason: a quiet guest would look hung.
      const waiting = r.status === 404 ? `no game "${opts.name}" yet: waiting for its host to register it` : `waiting for the host of "${opts.name}" to poll with its candidates`;
      if (waiting !== lastWait) (opts.warn ?? log)(`${waiting} (${givingUp(deadline - Date.now())})`);
      lastWait = waiting;
      await sleep(POLL_INTERVAL_MS, opts.signal);
    }
    log(`host candidates ${hostAddresses.join(' ')}`);
    const key = punchKey(peerId, opts.name);
    const relay = () => relayThroughProxy(opts, { peerId, key, role: 'guest' });
    return await directOrRelayed(
      opts,
      async () => {
        const result = await punch({
          socket,
          role: 'guest',
          targets: [{ key, addresses: hostAddresses }],
          // The host learns about us on its next poll: allow for that on top of the punching time.
          timeoutMs: (opts.punchTimeoutMs ?? 5000) + 2 * POLL_INTERVAL_MS,
          log,
        });
        await result.done;
        return { result: 'direct', peer: result.peer, rttMs: result.rttMs };
      },
      relay,
    );
  } finally {
    socket.close();
  }
}
