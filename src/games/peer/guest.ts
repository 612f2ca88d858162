import { randomBytes } from 'node:crypto';
import { api, gatherCandidates, openSocket, PeerError, POLL_INTERVAL_MS, problemText, sleep, type PeerOptions, type PeerResult } from './common.js';
import { punch, punchKey } from './punch.js';
import { directOrRelayed, relayThroughProxy } from './relay.js';

/**
 * `games guest`: start with our candidates until the host's are known (status 1), then punch.
 * The nonce in our peerId reaches only the rendezvous and the host: it keys the probes' MACs.
 */
export async function runGuest(opts: PeerOptions): Promise<PeerResult> {
  const log = opts.log ?? (() => {});
  const socket = await openSocket(opts.bind);
  try {
    const { candidates } = await gatherCandidates(socket, opts);
    log(`candidates ${candidates.join(' ')}`);
    const nonce = randomBytes(16).toString('hex');
    const peerId = `g-${nonce}`;
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    let hostAddresses: string[] = [];
    for (;;) {
      const r = await api<{ status: 0 | 1; addresses: string[] }>(opts.server, '/games/start', { name: opts.name, peerId, addresses: candidates });
      // 404: the host may not have registered yet; keep trying until the deadline.
      if (r.status !== 200 && r.status !== 404) throw new PeerError(`start failed: ${problemText(r)}`);
      if (r.status === 200 && r.body.status === 1 && r.body.addresses.length > 0) {
        hostAddresses = r.body.addresses;
        break;
      }
      if (Date.now() > deadline) throw new PeerError(`"${opts.name}" had no host candidates within ${opts.timeoutMs ?? 60_000} ms (${problemText(r)})`);
      await sleep(POLL_INTERVAL_MS);
    }
    log(`host candidates ${hostAddresses.join(' ')}`);
    const key = punchKey(nonce, opts.name);
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
