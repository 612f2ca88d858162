import { afterEach, describe, expect, it } from 'vitest';
import { closeAll, counter, gone, pair, RELAY_PATHS, startSplicer } from '../helpers/splicer-harness.js';

// The splicer actor alone, in a minimal parent that hands it two sockets and records how it
// ended: the limits a relay grant carries, and the idle timeout every splice has, on both relays
// (the native addon's where it is built, and the JS one). The sockets are
// loopback pairs (the proxy's side goes to the splicer, the peer's side stays with the test).

afterEach(closeAll);

describe.each(RELAY_PATHS)('splicer limits (%s relay)', (relay) => {
  it('splicer - relays up to the byte limit of a direction, then ends both sockets with byteLimit', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = startSplicer({ maxBytesPerDirection: 10_000 }, { relay });
    s.attach('ATTACH_B', bProxy);
    s.attach('ATTACH_A', aProxy);
    const bGot = counter(bPeer);
    aPeer.write(Buffer.alloc(25_000, 1));
    expect(await s.ended()).toEqual({ reason: 'byteLimit', bytesAToB: 10_000, bytesBToA: 0 });
    await Promise.all([gone(aPeer), gone(bPeer)]);
    expect(bGot()).toBeLessThanOrEqual(10_000);
    s.stop();
  });

  it('splicer - each direction has its own byte budget: just under it both ways carries on', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = startSplicer({ maxBytesPerDirection: 1_000 }, { relay });
    s.attach('ATTACH_B', bProxy);
    s.attach('ATTACH_A', aProxy);
    const aGot = counter(aPeer);
    const bGot = counter(bPeer);
    aPeer.write(Buffer.alloc(1_000, 1));
    bPeer.write(Buffer.alloc(1_000, 2));
    // Until both budgets' worth arrived (a fixed 200 ms raced a loaded host), then exactly that.
    for (const deadline = Date.now() + 5_000; (aGot() < 1_000 || bGot() < 1_000) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
    expect([aGot(), bGot()]).toEqual([1_000, 1_000]);
    expect(s.current()).toBeUndefined();
    bPeer.write(Buffer.alloc(1, 3));
    expect(await s.ended()).toEqual({ reason: 'byteLimit', bytesAToB: 1_000, bytesBToA: 1_000 });
    s.stop();
  });

  it("splicer - bytes B sent before A attached count against B's direction", async () => {
    const [bProxy] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = startSplicer({ maxBytesPerDirection: 100 }, { relay });
    s.attach('ATTACH_B', bProxy, Buffer.alloc(150, 7));
    s.attach('ATTACH_A', aProxy);
    expect(await s.ended()).toEqual({ reason: 'byteLimit', bytesAToB: 0, bytesBToA: 100 });
    await gone(aPeer);
    s.stop();
  });

  it('splicer - the duration limit ends a busy splice with durationLimit, counted from the splice', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = startSplicer({ maxDurationMs: 300 }, { relay });
    s.attach('ATTACH_B', bProxy);
    // Held alone for longer than the limit: the duration is the splice's, not the wait's.
    await new Promise((r) => setTimeout(r, 350));
    expect(s.current()).toBeUndefined();
    const splicedAt = Date.now();
    s.attach('ATTACH_A', aProxy);
    const beat = setInterval(() => aPeer.write('.'), 50);
    const ended = await s.ended();
    clearInterval(beat);
    expect(ended.reason).toBe('durationLimit');
    expect(ended.bytesAToB).toBeGreaterThan(0);
    expect(Date.now() - splicedAt).toBeGreaterThanOrEqual(290);
    await gone(bPeer);
    s.stop();
  });

  it('splicer - without limits a splice carries on; with an idle timeout a silent one ends with idle', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const open = startSplicer(undefined, { relay });
    open.attach('ATTACH_B', bProxy);
    open.attach('ATTACH_A', aProxy);
    aPeer.write(Buffer.alloc(50_000));
    await new Promise((r) => setTimeout(r, 400));
    expect(open.current()).toBeUndefined();
    open.stop();
    await gone(bPeer);

    const [b2, b2Peer] = await pair();
    const [a2] = await pair();
    const idle = startSplicer(undefined, { idleMs: 200, relay });
    idle.attach('ATTACH_B', b2);
    idle.attach('ATTACH_A', a2);
    expect((await idle.ended()).reason).toBe('idle');
    await gone(b2Peer);
    idle.stop();
  });
});
