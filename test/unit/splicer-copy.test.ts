import { afterEach, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { nativeRelayOptions, nativeSplicer, setNativeRelayOptions } from '../../src/proxy/native-splice.js';
import { readRoleFolders } from '../../src/settings/load.js';
import { proxySettingsSchema } from '../../src/settings/schemas.js';
import { digest, pattern, receive, send } from '../helpers/byte-streams.js';
import { closeAll, pair, pausedSessions, RELAY_PATHS, startSplicer, TEST_COPY_BYTES } from '../helpers/splicer-harness.js';

// The native relay's copy mode (native/splice/splice.c, pump_copy): bytes go through one buffer
// the relay thread shares, and only the tail a full destination did not take is kept, in a
// buffer of the direction's own, while its source is not read. These check that a stalled
// reader stops the relay reading (no unbounded buffering), that every byte still arrives in
// order once readers resume, and that a session holds no buffer once drained. Limits,
// half-close, resets and counters run in copy mode with the other relays' tests
// (RELAY_PATHS includes native-copy).

afterEach(() => {
  closeAll();
  vi.unstubAllEnvs();
});

const MiB = 1024 * 1024;
const leftovers = (): number => nativeSplicer().splicer!.stats().copyLeftovers;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.runIf(RELAY_PATHS.includes('native-copy'))('native relay, copy mode', () => {
  it('splicer - copy mode: a paused reader stops the relay reading its sender; the stream then arrives byte for byte and no buffer is left', async () => {
    // Far more than loopback's socket buffers hold (tcp_wmem 4 MiB, a paused reader's receive
    // buffer does not grow): if the relay kept reading a stalled direction it would take it all.
    const bytes = 96 * MiB;
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    let relayedAToB = 0;
    const s = startSplicer(undefined, { relay: 'native-copy', onRelayed: (direction, n) => direction === 'aToB' && (relayedAToB += n) });
    s.attach('ATTACH_B', bProxy);
    s.attach('ATTACH_A', aProxy);
    bPeer.pause();
    const aToB = pattern(bytes, 5);
    const sent = send(aPeer, aToB, 0);
    // Counters arrive once a second: stalled is two readings a collect apart that agree.
    let previous = -1;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline && relayedAToB !== previous; ) {
      previous = relayedAToB;
      await sleep(1_200);
    }
    expect(relayedAToB).toBe(previous);
    expect(relayedAToB).toBeGreaterThan(0);
    expect(relayedAToB).toBeLessThan(bytes / 2);
    // It stopped with the tail of one recv kept, never more than a recv.
    expect(leftovers()).toBe(1);

    const atB = receive(bPeer);
    bPeer.resume();
    await sent;
    bPeer.end();
    const got = await atB;
    expect(got.length).toBe(bytes);
    expect(digest(got)).toBe(digest(aToB));
    expect(await s.ended(10_000)).toEqual({ reason: 'completed', bytesAToB: bytes, bytesBToA: 0 });
    expect(leftovers()).toBe(0);
  }, 60_000);

  it('splicer - copy mode: 24 sessions with paused readers each hold at most one leftover per direction, and every byte arrives once they read', async () => {
    const SESSIONS = 24;
    const bytes = 4 * MiB;
    const { drained } = await pausedSessions(SESSIONS, bytes, 'native-copy', 300);
    // Some directions stall with a leftover (how many depends on how the kernel sized the
    // sockets' buffers); none holds more than one.
    let most = 0;
    for (const deadline = Date.now() + 3_000; Date.now() < deadline; await sleep(50)) most = Math.max(most, leftovers());
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(2 * SESSIONS);
    await drained();
    expect(leftovers()).toBe(0);
  }, 60_000);

  it('splicer - copy mode: a session idle after bulk both ways holds no buffer and still relays small messages', async () => {
    const [bProxy, bPeer] = await pair();
    const [aProxy, aPeer] = await pair();
    const s = startSplicer(undefined, { relay: 'native-copy' });
    s.attach('ATTACH_B', bProxy);
    s.attach('ATTACH_A', aProxy);
    const exchange = async (from: typeof aPeer, to: typeof aPeer, message: Buffer) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const all = new Promise<void>((resolve) => {
        const onData = (c: Buffer) => {
          chunks.push(c);
          got += c.length;
          if (got >= message.length) {
            to.off('data', onData);
            resolve();
          }
        };
        to.on('data', onData);
      });
      from.write(message);
      await all;
      expect(digest(Buffer.concat(chunks))).toBe(digest(message));
    };
    const pipes = nativeSplicer().splicer!.stats().pipes;
    // Several recvs' worth each way, then small messages.
    await exchange(aPeer, bPeer, pattern(10 * TEST_COPY_BYTES, 21));
    await exchange(bPeer, aPeer, pattern(10 * TEST_COPY_BYTES, 22));
    expect(leftovers()).toBe(0);
    // Copied, not spliced: no pipe was taken.
    expect(nativeSplicer().splicer!.stats().pipes).toBe(pipes);
    await exchange(aPeer, bPeer, Buffer.from('hello'));
    await exchange(bPeer, aPeer, Buffer.from('world'));
    expect(nativeSplicer().splicer!.stats().sessions).toBe(1);
    s.stop();
  });
});

describe('native relay mode', () => {
  it("settings - the proxy's splice.relayMode is splice unless set, copy when set, and nothing else", () => {
    const { tree } = readRoleFolders([join(import.meta.dirname, '..', '..', 'settings', 'dev', 'roles', 'public-proxy-1')]);
    const withMode = (relayMode?: unknown) => ({ ...tree, splice: { ...(tree.splice as object), ...(relayMode === undefined ? {} : { relayMode }) } });
    expect(proxySettingsSchema.parse(withMode()).splice.relayMode).toBe('splice');
    expect(proxySettingsSchema.parse(withMode('copy')).splice.relayMode).toBe('copy');
    expect(proxySettingsSchema.safeParse(withMode('zero-copy')).success).toBe(false);
  });

  it('splicer - EPS_RELAY_MODE and EPS_RELAY_COPY_BYTES win over what the proxy set (benches and tests run both modes)', () => {
    setNativeRelayOptions({ mode: 'splice' });
    expect(nativeRelayOptions().mode).toBe('splice');
    vi.stubEnv('EPS_RELAY_MODE', 'copy');
    vi.stubEnv('EPS_RELAY_COPY_BYTES', String(32 * 1024));
    expect(nativeRelayOptions()).toMatchObject({ mode: 'copy', copyBytes: 32 * 1024 });
    vi.stubEnv('EPS_RELAY_MODE', 'nonsense');
    expect(nativeRelayOptions().mode).toBe('splice');
  });
});
