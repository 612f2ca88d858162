import { describe, expect, it } from 'vitest';
import { createActor, initialTransition, SimulatedClock, transition } from 'xstate';
import { gameSessionMachine, type GameSessionEvent } from '../../machines/game-session.js';

const input = { name: 'chess', hostPeerId: 'host-1', at: 1_000, hostPollTimeoutMs: 30_000, maxGuests: 2 };
type Snapshot = ReturnType<typeof initialTransition<typeof gameSessionMachine>>[0];
const start = () => initialTransition(gameSessionMachine, input)[0];
const step = (s: Snapshot, ...events: GameSessionEvent[]) => events.reduce((acc, e) => transition(gameSessionMachine, acc, e)[0], s);
const HOST = ['203.0.113.1:4000'];
const G1 = ['198.51.100.1:5000'];
const G2 = ['198.51.100.2:5000'];

describe('game-session machine (pure transitions)', () => {
  it('game-session - starts registered with the registration as the first sign of life', () => {
    const [s, actions] = initialTransition(gameSessionMachine, input);
    expect(s.value).toEqual({ open: 'registered' });
    expect(s.context).toMatchObject({ name: 'chess', hostPeerId: 'host-1', createdAt: 1_000, lastPollAt: 1_000, guests: [] });
    // The named delay is scheduled for a live actor; a pure step only describes it.
    const timer = actions.find((a) => a.type === 'xstate.raise');
    expect(timer?.params).toMatchObject({ id: 'xstate.after.hostPollTimeout.game.open', delay: 30_000 });
  });

  it('game-session - a poll without candidates keeps it registered but refreshes lastPollAt', () => {
    const s = step(start(), { type: 'HOST_POLLED', at: 5_000, addresses: [] });
    expect(s.value).toEqual({ open: 'registered' });
    expect(s.context.lastPollAt).toBe(5_000);
  });

  it('game-session - the host polling with candidates makes it hosting', () => {
    const s = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST });
    expect(s.value).toEqual({ open: 'hosting' });
    expect(s.context.hostAddresses).toEqual(HOST);
  });

  it('game-session - a guest then a host poll swaps candidates: paired', () => {
    let s = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 2_500, peerId: 'g1', addresses: G1 });
    // The guest has the host's candidates, the host not yet the guest's.
    expect(s.value).toEqual({ open: 'hosting' });
    expect(s.context.guests[0]).toMatchObject({ peerId: 'g1', guestHasCandidates: true, hostHasCandidates: false, status: 'waiting' });
    s = step(s, { type: 'HOST_POLLED', at: 3_000, addresses: HOST });
    expect(s.value).toEqual({ open: 'paired' });
    expect(s.context.guests[0]?.status).toBe('swapped');
  });

  it('game-session - a guest before the host has candidates waits until it starts again', () => {
    let s = step(start(), { type: 'GUEST_STARTED', at: 1_500, peerId: 'g1', addresses: G1 }, { type: 'HOST_POLLED', at: 2_000, addresses: HOST });
    expect(s.value).toEqual({ open: 'hosting' });
    expect(s.context.guests[0]).toMatchObject({ hostHasCandidates: true, guestHasCandidates: false });
    s = step(s, { type: 'GUEST_STARTED', at: 2_100, peerId: 'g1', addresses: G1 });
    expect(s.value).toEqual({ open: 'paired' });
  });

  it('game-session - many guests pair independently, up to maxGuests', () => {
    let s = step(
      start(),
      { type: 'HOST_POLLED', at: 2_000, addresses: HOST },
      { type: 'GUEST_STARTED', at: 2_100, peerId: 'g1', addresses: G1 },
      { type: 'GUEST_STARTED', at: 2_200, peerId: 'g2', addresses: G2 },
      { type: 'GUEST_STARTED', at: 2_300, peerId: 'g3', addresses: ['192.0.2.3:1'] },
    );
    expect(s.context.guests.map((g) => g.peerId)).toEqual(['g1', 'g2']);
    s = step(s, { type: 'HOST_POLLED', at: 3_000, addresses: HOST });
    expect(s.context.guests.map((g) => g.status)).toEqual(['swapped', 'swapped']);
    // A returning guest always fits, and new candidates must reach the host again.
    s = step(s, { type: 'GUEST_STARTED', at: 3_100, peerId: 'g2', addresses: ['192.0.2.9:9'] });
    expect(s.context.guests[1]).toMatchObject({ addresses: ['192.0.2.9:9'], hostHasCandidates: false, status: 'waiting' });
    expect(s.value).toEqual({ open: 'paired' });
  });

  it('game-session - the guard expires a game whose host stopped polling (injected clock)', () => {
    const hosting = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST });
    expect(step(hosting, { type: 'CLOCK_TICKED', at: 32_000 }).status).toBe('active');
    const s = step(hosting, { type: 'CLOCK_TICKED', at: 32_001 });
    expect(s.status).toBe('done');
    expect(s.value).toBe('expired');
    expect(s.output).toEqual({ outcome: 'expired', name: 'chess', guests: 0, detail: 'the host did not poll for 30000 ms' });
  });

  it('game-session - guests do not keep a game alive, and silent guests are pruned', () => {
    let s = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 3_000, peerId: 'g1', addresses: G1 });
    s = step(s, { type: 'HOST_POLLED', at: 30_000, addresses: HOST }, { type: 'CLOCK_TICKED', at: 34_000 });
    expect(s.context.guests).toEqual([]);
    s = step(s, { type: 'GUEST_STARTED', at: 50_000, peerId: 'g2', addresses: G2 }, { type: 'CLOCK_TICKED', at: 60_001 });
    expect(s.value).toBe('expired');
  });

  it('game-session - rename changes the name and keeps the state', () => {
    const s = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST }, { type: 'RENAMED', newName: 'chess-2' });
    expect(s.value).toEqual({ open: 'hosting' });
    expect(s.context.name).toBe('chess-2');
  });

  it('game-session - delete closes it with output', () => {
    const s = step(start(), { type: 'GUEST_STARTED', at: 1_100, peerId: 'g1', addresses: G1 }, { type: 'DELETED' });
    expect(s.status).toBe('done');
    expect(s.output).toEqual({ outcome: 'closed', name: 'chess', guests: 1, detail: 'deleted by the host' });
  });

  it('game-session - a record rebuilt with resolveState steps like the original', () => {
    const original = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 2_100, peerId: 'g1', addresses: G1 });
    const rebuilt = gameSessionMachine.resolveState({ value: { open: 'hosting' }, context: structuredClone(original.context) });
    const poll: GameSessionEvent = { type: 'HOST_POLLED', at: 3_000, addresses: HOST };
    expect(step(rebuilt, poll).value).toEqual(step(original, poll).value);
    expect(step(rebuilt, poll).context).toEqual(step(original, poll).context);
  });
});

describe('game-session machine (live actor, named delay)', () => {
  it('game-session - hostPollTimeout expires a live session; each host poll restarts it', () => {
    const clock = new SimulatedClock();
    const actor = createActor(gameSessionMachine, { input, clock }).start();
    clock.increment(20_000);
    actor.send({ type: 'HOST_POLLED', at: 21_000, addresses: HOST });
    clock.increment(20_000);
    // A guest starting must not restart the host's timer.
    actor.send({ type: 'GUEST_STARTED', at: 41_000, peerId: 'g1', addresses: G1 });
    expect(actor.getSnapshot().status).toBe('active');
    clock.increment(10_001);
    expect(actor.getSnapshot().value).toBe('expired');
    expect(actor.getSnapshot().output?.outcome).toBe('expired');
  });
  it('game-session - a relay is granted only to a swapped pairing, and a live grant is kept over a concurrent one', () => {
    const grant = (sessionId: string, expiresAt: number) => ({
      sessionId,
      tokens: { host: `${sessionId}-host`, guest: `${sessionId}-guest` },
      endpoint: '203.0.113.9:9999',
      expiresAt,
      limits: { maxDurationMs: 60_000, maxBytesPerDirection: 1 << 20 },
    });
    let s = step(start(), { type: 'HOST_POLLED', at: 2_000, addresses: HOST }, { type: 'GUEST_STARTED', at: 2_500, peerId: 'g1', addresses: G1 });
    // Still waiting for the host to see g1: no relay yet, nothing changes.
    const refused = step(s, { type: 'RELAY_GRANTED', at: 2_600, peerId: 'g1', relay: grant('s0', 12_600) });
    expect(refused.context).toEqual(s.context);
    s = step(s, { type: 'HOST_POLLED', at: 3_000, addresses: HOST }, { type: 'RELAY_GRANTED', at: 3_100, peerId: 'g1', relay: grant('s1', 13_100) });
    expect(s.value).toEqual({ open: 'paired' });
    expect(s.context.guests[0]).toMatchObject({ status: 'relayed', relay: { sessionId: 's1' } });
    // A second grant while the first is live (two instances asked at once) does not replace it.
    s = step(s, { type: 'RELAY_GRANTED', at: 4_000, peerId: 'g1', relay: grant('s2', 14_000) });
    expect(s.context.guests[0]?.relay?.sessionId).toBe('s1');
    // Once the proxy stopped waiting for a dial, a new grant replaces the dead one.
    s = step(s, { type: 'RELAY_GRANTED', at: 13_100, peerId: 'g1', relay: grant('s3', 23_100) });
    expect(s.context.guests[0]?.relay?.sessionId).toBe('s3');
    // New candidates from the guest do not take its relay away.
    s = step(s, { type: 'GUEST_STARTED', at: 13_200, peerId: 'g1', addresses: G2 });
    expect(s.context.guests[0]).toMatchObject({ status: 'relayed', hostHasCandidates: false });
    expect(s.value).toEqual({ open: 'paired' });
  });
});
