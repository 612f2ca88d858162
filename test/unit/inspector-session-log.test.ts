import { describe, expect, it } from 'vitest';
import { Socket } from 'node:net';
import { createActor } from 'xstate';
import { stubbedBrokeringMachine } from '../../bench/inspector-cost.js';
import { GameService } from '../../src/games/game-service.js';
import { MemoryGameStore } from '../../src/games/game-store.js';
import { MemoryLobby } from '../../src/games/lobby.js';
import { brokeringFeed, eventLabel, gamesFeed } from '../../src/inspector/feeds.js';
import { SessionLog, statePath, type SessionChange } from '../../src/inspector/session-log.js';

function manualLog(opts: { maxFinished?: number; maxTimeline?: number } = {}) {
  let now = 1000;
  const scheduled: (() => void)[] = [];
  const log = new SessionLog({
    maxFinished: opts.maxFinished ?? 3,
    maxTimeline: opts.maxTimeline ?? 5,
    now: () => now,
    schedule: (fn) => scheduled.push(fn),
  });
  return { log, scheduled, tick: (ms: number) => (now += ms) };
}

describe('inspector session log', () => {
  it('session log - a session opens, steps and finishes with a timeline of from → to', () => {
    const { log, tick } = manualLog();
    log.open('s1', { machine: 'brokering', parties: 'hd-1 → hd-2', state: 'requested.notifying', event: 'xstate.init' });
    tick(5);
    log.step('s1', { event: 'notifyB.done', state: 'requested.forwarded' });
    log.addBytes('s1', 'aToB', 10);
    log.addBytes('s1', 'bToA', 7);
    log.finish('s1', 'closed');
    const d = log.detail('s1')!;
    expect(d.summary).toMatchObject({ id: 's1', state: 'requested.forwarded', status: 'finished', outcome: 'closed', startedAt: 1000, finishedAt: 1005, bytes: { aToB: 10, bToA: 7 } });
    expect(d.timeline.map((e) => [e.seq, e.event, e.from, e.to])).toEqual([
      [1, 'xstate.init', '', 'requested.notifying'],
      [2, 'notifyB.done', 'requested.notifying', 'requested.forwarded'],
    ]);
    expect(log.liveCount()).toBe(0);
  });

  it('session log - finished sessions are a bounded ring and each timeline is bounded', () => {
    const { log } = manualLog({ maxFinished: 2, maxTimeline: 3 });
    for (const id of ['a', 'b', 'c']) {
      log.open(id, { machine: 'm', parties: '', state: 'x', event: 'xstate.init' });
      for (let i = 0; i < 5; i++) log.step(id, { event: `E${i}`, state: 'x' });
    }
    log.open('live', { machine: 'm', parties: '', state: 'x', event: 'xstate.init' });
    log.finish('a', 'closed');
    log.finish('b', 'closed');
    log.finish('c', 'closed');
    expect(log.list().map((s) => s.id).sort()).toEqual(['b', 'c', 'live']);
    const c = log.detail('c')!;
    expect(c.timeline.map((e) => e.event)).toEqual(['E2', 'E3', 'E4']);
    expect(c.dropped).toBe(3);
    expect(log.liveCount()).toBe(1);
  });

  it('session log - live sessions are bounded too: the one updated longest ago goes first', () => {
    let now = 0;
    const log = new SessionLog({ maxFinished: 3, maxTimeline: 5, maxLive: 2, now: () => now, schedule: () => {} });
    for (const id of ['a', 'b']) {
      now += 1;
      log.open(id, { machine: 'm', parties: '', state: 'x', event: 'xstate.init' });
    }
    now += 1;
    log.step('a', { event: 'GO', state: 'y' });
    now += 1;
    log.open('c', { machine: 'm', parties: '', state: 'x', event: 'xstate.init' });
    expect(log.list().map((s) => s.id).sort()).toEqual(['a', 'c']);
    expect(log.liveCount()).toBe(2);
  });

  it('session log - nothing is scheduled, redacted or pushed while nobody watches', () => {
    const { log, scheduled } = manualLog();
    log.open('s1', { machine: 'm', parties: '', state: 'a', event: 'xstate.init', detail: { token: 'secret' } });
    log.step('s1', { event: 'GO', state: 'b' });
    log.addBytes('s1', 'aToB', 1);
    expect(scheduled).toHaveLength(0);
    expect(log.watched).toBe(false);
  });

  it('session log - subscribers get one batch per flush with only the entries since the last push', () => {
    const { log, scheduled } = manualLog();
    log.open('s1', { machine: 'm', parties: '', state: 'a', event: 'xstate.init' });
    const batches: SessionChange[][] = [];
    const stop = log.subscribe((c) => batches.push(c));
    log.step('s1', { event: 'GO', state: 'b', detail: { token: 'hide-me', n: 1 } });
    log.step('s1', { event: 'ON', state: 'c' });
    log.open('s2', { machine: 'm', parties: '', state: 'a', event: 'xstate.init' });
    expect(scheduled).toHaveLength(1);
    scheduled.shift()!();
    expect(batches).toHaveLength(1);
    const [s1, s2] = batches[0]!;
    expect(s1!.summary.state).toBe('c');
    expect(s1!.entries.map((e) => [e.seq, e.event])).toEqual([[2, 'GO'], [3, 'ON']]);
    expect(s1!.entries[0]!.detail).toEqual({ token: '[redacted]', n: 1 });
    expect(s2!.entries.map((e) => e.event)).toEqual(['xstate.init']);
    log.step('s1', { event: 'OFF', state: 'd' });
    scheduled.shift()!();
    expect(batches[1]!.map((c) => c.entries.map((e) => e.seq))).toEqual([[4]]);
    stop();
    log.step('s1', { event: 'LATE', state: 'e' });
    expect(scheduled).toHaveLength(0);
  });

  it('session log - state values become dotted paths', () => {
    expect(statePath('closed')).toBe('closed');
    expect(statePath({ holding: 'spliced' })).toBe('holding.spliced');
    expect(statePath({ open: { inner: 'x' } })).toBe('open.inner.x');
    expect(statePath({ a: 'x', b: 'y' })).toBe('a.x, b.y');
  });

  it('session log - xstate event types are worded as the diagrams word them', () => {
    expect(eventLabel('xstate.done.actor.notifyB')).toBe('notifyB.done');
    expect(eventLabel('xstate.error.actor.confirmToA')).toBe('confirmToA.error');
    expect(eventLabel('xstate.after.aDialTimeout.brokering.holding.confirmed')).toBe('after aDialTimeout');
    expect(eventLabel('B_DIALED')).toBe('B_DIALED');
  });
});

describe('inspector feeds', () => {
  it('feeds - a real brokering actor, seen through the inspection API, ends spliced then closed with no socket kept', async () => {
    const { log } = manualLog({ maxTimeline: 50 });
    const feed = brokeringFeed(log);
    const { machine, endSplice } = stubbedBrokeringMachine();
    const input = { sessionId: 'sess-1', a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:9999' };
    const actor = createActor(machine, { input, inspect: feed.inspect });
    actor.start();
    await new Promise((r) => setTimeout(r, 0));
    const bSocket = new Socket();
    const aSocket = new Socket();
    actor.send({ type: 'B_DIALED', socket: bSocket, rest: new Uint8Array(0) });
    await new Promise((r) => setTimeout(r, 0));
    actor.send({ type: 'A_DIALED', socket: aSocket, rest: new Uint8Array(5) });
    expect(log.detail('sess-1')!.summary.state).toBe('holding.spliced');
    feed.relayed('aToB', 100, 'sess-1');
    endSplice({ type: 'SPLICE_ENDED', reason: 'completed', bytesAToB: 100, bytesBToA: 0 });
    const d = log.detail('sess-1')!;
    expect(d.summary).toMatchObject({ machine: 'brokering', parties: 'hd-1 → hd-2', state: 'closed', status: 'finished', outcome: 'closed', bytes: { aToB: 100, bToA: 0 } });
    expect(d.timeline.map((e) => `${e.event}: ${e.from} → ${e.to}`)).toEqual([
      'xstate.init:  → requested.notifying',
      'notifyB.done: requested.notifying → requested.forwarded',
      'B_DIALED: requested.forwarded → holding.bConnected',
      'confirmToA.done: holding.bConnected → holding.confirmed',
      'A_DIALED: holding.confirmed → holding.spliced',
      'SPLICE_ENDED: holding.spliced → closed',
    ]);
    expect(d.timeline[4]!.detail).toEqual({ socket: '[Socket]', rest: '[5 bytes]' });
    // The endpoint is a loopback address here: it leaves only as a port.
    expect(d.context).toMatchObject({ sessionId: 'sess-1', a: 'hd-1', b: 'hd-2', endpoint: 'private:9999' });
    bSocket.destroy();
    aSocket.destroy();
  });

  it('feeds - games: register, poll, start, rename and delete, with peer ids, the secret and private candidates redacted', async () => {
    const { log } = manualLog({ maxTimeline: 50 });
    let now = 1_000_000;
    const service = new GameService({ store: new MemoryGameStore(), lobby: new MemoryLobby(), now: () => now, hostPollTimeoutMs: 30_000, maxGuests: 4, onTransition: gamesFeed(log) });
    const reg = await service.register('chess', 'host-peer-secret');
    if (reg.type !== 'registered') throw new Error('not registered');
    now += 100;
    await service.poll('chess', 'host-peer-secret', ['192.168.1.20:4000', '203.0.113.1:4000']);
    await service.start('chess', 'guest-peer-secret', ['10.0.0.7:5000', '198.51.100.7:5000']);
    await service.poll('chess', 'host-peer-secret', ['192.168.1.20:4000', '203.0.113.1:4000']);
    await service.rename('chess', reg.secret, 'go');
    let d = log.detail('chess')!;
    expect(d.summary).toMatchObject({ machine: 'game', status: 'finished', outcome: 'renamed to go' });
    expect(d.timeline.map((e) => `${e.event}: ${e.from} → ${e.to}`)).toEqual([
      'xstate.init:  → open.registered',
      'HOST_POLLED: open.registered → open.hosting',
      'GUEST_STARTED: open.hosting → open.hosting',
      'HOST_POLLED: open.hosting → open.paired',
      'RENAMED: open.paired → open.paired',
    ]);
    await service.remove('go', reg.secret);
    d = log.detail('go')!;
    expect(d.summary).toMatchObject({ status: 'finished', outcome: 'closed', state: 'closed', parties: 'host + 1 guest' });
    const everything = JSON.stringify([log.list(), log.detail('chess'), log.detail('go')]);
    for (const secret of ['host-peer-secret', 'guest-peer-secret', reg.secret, '192.168.1.20', '10.0.0.7']) expect(everything).not.toContain(secret);
    expect(everything).toContain('203.0.113.1:4000');
    expect(everything).toContain('private:5000');
  });
});
