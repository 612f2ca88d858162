import { existsSync } from 'node:fs';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { nativeSplicer } from '../../src/proxy/native-splice.js';
import { closeAll, counter, gone, pair, RELAY_PATHS, startSplicer } from '../helpers/splicer-harness.js';

// The splicer's two relays: the native addon's (native/splice, built on install) and the JS one
// it falls back to. Half-close, errors and counters on each; that the native one really takes
// over when built; that EPS_SPLICE=js forces the JS one.

afterEach(closeAll);

const ADDON = 'native/splice/build/Release/eps_splice.node';
const settle = (ms = 50) => new Promise((r) => setTimeout(r, ms));
const next = async (socket: Socket): Promise<string> => String((await once(socket, 'data'))[0]);

describe('splicer relay paths', () => {
  it.runIf(existsSync(ADDON) && process.env.EPS_SPLICE !== 'js')(
    'splicer - where the addon is built the native relay takes over: the JS sockets are gone, the addon holds the session, no FIN was sent',
    async () => {
      const native = nativeSplicer().splicer;
      expect(native).toBeDefined();
      const before = native!.stats().sessions;
      const [bProxy, bPeer] = await pair();
      const [aProxy, aPeer] = await pair();
      const s = startSplicer(undefined, { relay: 'native' });
      s.attach('ATTACH_B', bProxy);
      s.attach('ATTACH_A', aProxy, Buffer.from('early'));
      expect(await next(bPeer)).toBe('early');
      await settle();
      expect([aProxy.destroyed, bProxy.destroyed]).toEqual([true, true]);
      expect(native!.stats().sessions).toBe(before + 1);
      // Destroying the JS sockets closed only their descriptors: both peers are still connected.
      expect([aPeer.readableEnded, bPeer.readableEnded]).toEqual([false, false]);
      aPeer.write('ping');
      expect(await next(bPeer)).toBe('ping');
      bPeer.write('pong');
      expect(await next(aPeer)).toBe('pong');
      s.stop();
      await Promise.all([gone(aPeer), gone(bPeer)]);
      expect(native!.stats().sessions).toBe(before);
    },
  );

  it('splicer - EPS_SPLICE=js forces the JS relay', async () => {
    vi.stubEnv('EPS_SPLICE', 'js');
    vi.resetModules();
    try {
      const fresh = await import('../../src/proxy/splicer.js');
      expect(fresh.relayPath()).toEqual({ path: 'js', why: 'EPS_SPLICE=js' });
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });

  describe.each(RELAY_PATHS)('%s relay', (relay) => {
    it('splicer - half-close: A finishes sending, B still answers, then B finishes: completed, with byte counts', async () => {
      const [bProxy, bPeer] = await pair();
      const [aProxy, aPeer] = await pair();
      const s = startSplicer(undefined, { relay });
      s.attach('ATTACH_B', bProxy);
      s.attach('ATTACH_A', aProxy);
      const aGot = counter(aPeer);
      aPeer.end('question');
      expect(await next(bPeer)).toBe('question');
      await once(bPeer, 'end');
      await settle();
      expect(s.current()).toBeUndefined();
      bPeer.write(Buffer.alloc(100_000, 1));
      bPeer.end();
      expect(await s.ended()).toEqual({ reason: 'completed', bytesAToB: 8, bytesBToA: 100_000 });
      await gone(aPeer);
      expect(aGot()).toBe(100_000);
      s.stop();
    });

    it('splicer - a peer resetting its connection ends the splice with its side error, and the other peer is closed', async () => {
      for (const side of ['a', 'b'] as const) {
        const [bProxy, bPeer] = await pair();
        const [aProxy, aPeer] = await pair();
        const s = startSplicer(undefined, { relay });
        s.attach('ATTACH_B', bProxy);
        s.attach('ATTACH_A', aProxy);
        await settle();
        (side === 'a' ? aPeer : bPeer).resetAndDestroy();
        expect((await s.ended()).reason).toBe(`${side}Error`);
        await gone(side === 'a' ? bPeer : aPeer);
        s.stop();
      }
    });

    it('splicer - every relayed byte reaches onRelayed, per direction, by the end of the session', async () => {
      const relayed = { aToB: 0, bToA: 0 };
      const [bProxy, bPeer] = await pair();
      const [aProxy, aPeer] = await pair();
      const s = startSplicer(undefined, { relay, onRelayed: (direction, bytes) => (relayed[direction] += bytes) });
      s.attach('ATTACH_B', bProxy, Buffer.alloc(10, 2));
      s.attach('ATTACH_A', aProxy, Buffer.alloc(20, 1));
      const bGot = counter(bPeer);
      aPeer.end(Buffer.alloc(300_000, 3));
      bPeer.end(Buffer.alloc(5_000, 4));
      expect(await s.ended()).toEqual({ reason: 'completed', bytesAToB: 300_020, bytesBToA: 5_010 });
      expect(relayed).toEqual({ aToB: 300_020, bToA: 5_010 });
      await gone(bPeer);
      expect(bGot()).toBe(300_020);
      s.stop();
    });
  });
});
