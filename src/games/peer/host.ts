import { randomBytes } from 'node:crypto';
import { api, gatherCandidates, openSocket, PeerError, POLL_INTERVAL_MS, problemText, sleep, type PeerOptions, type PeerResult } from './common.js';
import { punch, punchKey } from './punch.js';
import { directOrRelayed, relayThroughProxy } from './relay.js';

interface PollAnswer {
  status: 0 | 1;
  guests: { peerId: string; addresses: string[] }[];
}

/**
 * `games host`: register the game, poll with our candidates until a guest is ready, punch to it,
 * and delete the game when done (the secret from register is used for that and nothing else).
 */
export async function runHost(opts: PeerOptions): Promise<PeerResult> {
  const log = opts.log ?? (() => {});
  const socket = await openSocket(opts.bind);
  let secret: string | undefined;
  try {
    const { candidates } = await gatherCandidates(socket, opts);
    log(`candidates ${candidates.join(' ')}`);
    // Random, so nobody but the rendezvous can poll (and read guest nonces) as this host.
    const peerId = `h-${randomBytes(16).toString('hex')}`;
    const reg = await api<{ secret: string }>(opts.server, '/games/register', { name: opts.name, peerId });
    if (reg.status !== 201) throw new PeerError(`register "${opts.name}" failed: ${problemText(reg)}`);
    secret = reg.body.secret;
    log(`registered "${opts.name}"`);
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    let guests: PollAnswer['guests'] = [];
    for (;;) {
      const r = await api<PollAnswer>(opts.server, '/games/poll', { name: opts.name, peerId, addresses: candidates });
      if (r.status !== 200) throw new PeerError(`poll failed: ${problemText(r)}`);
      guests = r.body.guests.filter((g) => /^g-[0-9a-f]{32}$/.test(g.peerId) && g.addresses.length > 0);
      if (guests.length > 0) break;
      if (Date.now() > deadline) throw new PeerError(`no guest joined "${opts.name}" within ${opts.timeoutMs ?? 60_000} ms`);
      await sleep(POLL_INTERVAL_MS);
    }
    log(`guests ready: ${guests.map((g) => g.addresses.join(' ')).join(' | ')}`);
    const targets = guests.map((g) => ({ key: punchKey(g.peerId.slice(2), opts.name), addresses: g.addresses }));
    // A relay carries one pairing: the first guest that joined.
    const relay = () => relayThroughProxy(opts, { peerId, guest: guests[0]!.peerId, key: targets[0]!.key, role: 'host' });
    return await directOrRelayed(
      opts,
      async () => {
        const result = await punch({ socket, role: 'host', targets, timeoutMs: opts.punchTimeoutMs ?? 5000, log });
        await result.done;
        return { result: 'direct', peer: result.peer, rttMs: result.rttMs };
      },
      relay,
    );
  } finally {
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
