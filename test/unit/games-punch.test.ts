import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { punch, PunchError, punchKey } from '../../src/games/peer/punch.js';

const open: Socket[] = [];
async function udp(): Promise<Socket> {
  const s = createSocket('udp4');
  open.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}
const addr = (s: Socket) => `127.0.0.1:${s.address().port}`;
afterEach(() => open.splice(0).forEach((s) => s.close()));

describe('punch (authenticated UDP probes)', () => {
  it('games punch - two sides with the same pairing key find each other and measure the RTT', async () => {
    const [h, g] = await Promise.all([udp(), udp()]);
    const key = punchKey('00'.repeat(16), 'duel');
    const [hr, gr] = await Promise.all([
      punch({ socket: h, role: 'host', targets: [{ key, addresses: [addr(g)] }], lingerMs: 200 }),
      punch({ socket: g, role: 'guest', targets: [{ key, addresses: [addr(h)] }], lingerMs: 200 }),
    ]);
    expect(hr.peer).toBe(addr(g));
    expect(gr.peer).toBe(addr(h));
    expect(hr.samples.length).toBeGreaterThan(1);
    await Promise.all([hr.done, gr.done]);
  });

  it('games punch - a verified ping from an unannounced address is probed too (peer-reflexive), so both sides find the path', async () => {
    // The host was told a candidate that leads nowhere (the guest's NAT maps each destination to
    // a new port); only the guest's own probes show where it really is.
    const [h, g, elsewhere] = await Promise.all([udp(), udp(), udp()]);
    const key = punchKey('11'.repeat(16), 'duel');
    const lines: string[] = [];
    const [hr, gr] = await Promise.all([
      punch({ socket: h, role: 'host', targets: [{ key, addresses: [addr(elsewhere)] }], lingerMs: 200, timeoutMs: 2000, log: (m) => lines.push(m) }),
      punch({ socket: g, role: 'guest', targets: [{ key, addresses: [addr(h)] }], lingerMs: 200, timeoutMs: 2000 }),
    ]);
    expect(hr.peer).toBe(addr(g));
    expect(gr.peer).toBe(addr(h));
    expect(lines).toContain(`peer-reflexive candidate ${addr(g)} added`);
    await Promise.all([hr.done, gr.done]);
  });

  it('games punch - a stale candidate answering with another pairing key is not a path', async () => {
    const [h, stale] = await Promise.all([udp(), udp()]);
    // The stale side is a real peer of an older pairing: it answers every ping it can verify, and
    // its own probes carry its (wrong) key, so the guest must neither accept them nor answer them.
    const old = punch({ socket: stale, role: 'host', targets: [{ key: punchKey('11'.repeat(16), 'duel'), addresses: [addr(h)] }], timeoutMs: 600 });
    const fresh = punch({ socket: h, role: 'guest', targets: [{ key: punchKey('22'.repeat(16), 'duel'), addresses: [addr(stale)] }], timeoutMs: 600 });
    const [f, o] = await Promise.allSettled([fresh, old]);
    expect(f.status === 'rejected' && f.reason).toBeInstanceOf(PunchError);
    expect(o.status === 'rejected' && o.reason).toBeInstanceOf(PunchError);
  });

  it('games punch - a probe reflected back at its sender (same role) does not count', async () => {
    const s = await udp();
    const key = punchKey('33'.repeat(16), 'duel');
    // Pinging itself: it sees its own host-role pings, which it must not answer as the guest would.
    await expect(punch({ socket: s, role: 'host', targets: [{ key, addresses: [addr(s)] }], timeoutMs: 500 })).rejects.toThrow(/no verified answer/);
  });
  it('games punch - a guest id of any form keys the probes; a target speaking another protocol is reported, a stranger is not', async () => {
    const [h, g, seed, stranger] = await Promise.all([udp(), udp(), udp(), udp()]);
    const key = punchKey('3b241101-e2bb-4255-8caf-4136c566a962', 'lobby');
    const foreign: string[] = [];
    const hello = setInterval(() => {
      seed.send('hello', h.address().port, '127.0.0.1');
      stranger.send('hello', h.address().port, '127.0.0.1');
    }, 50);
    try {
      const [hr, gr, seedPunch] = await Promise.all([
        punch({ socket: h, role: 'host', targets: [{ key, addresses: [addr(g)] }], lingerMs: 100 }),
        punch({ socket: g, role: 'guest', targets: [{ key, addresses: [addr(h)] }], lingerMs: 100 }),
        // The same socket punching to a seed-style client at the same time (as a host with several guests does).
        punch({ socket: h, role: 'host', targets: [{ key: punchKey('player-7', 'lobby'), addresses: [addr(seed)] }], timeoutMs: 400, onForeign: (from) => foreign.push(from) }).catch((e: unknown) => e),
      ]);
      expect(hr.peer).toBe(addr(g));
      expect(gr.peer).toBe(addr(h));
      expect(seedPunch).toBeInstanceOf(PunchError);
      expect(foreign.length).toBeGreaterThan(0);
      expect(new Set(foreign)).toEqual(new Set([addr(seed)]));
      await Promise.all([hr.done, gr.done]);
    } finally {
      clearInterval(hello);
    }
  });
});
