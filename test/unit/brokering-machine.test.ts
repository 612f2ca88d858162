import { describe, expect, it, vi } from 'vitest';
import { createActor, fromCallback, fromPromise, initialTransition, transition, type AnyEventObject } from 'xstate';
import {
  BROKERING_OUTCOMES,
  brokeringMachine,
  type BrokeringEvent,
  type NotifyResult,
  type SplicerEvent,
  type SplicerInput,
} from '../../machines/brokering.js';

const input = { sessionId: 's-1', a: 'hd-1', b: 'hd-2', endpoint: '127.0.0.1:9999' };
const rest = new Uint8Array();
const bSocket = { name: 'b-socket' };
const aSocket = { name: 'a-socket' };

type Snapshot = ReturnType<typeof initialTransition<typeof brokeringMachine>>[0];

// Pure stepping: xstate computes the next snapshot and the actions it would run, runs nothing.
function step(snapshot: Snapshot, event: BrokeringEvent | AnyEventObject) {
  return transition(brokeringMachine, snapshot, event as BrokeringEvent);
}
const start = () => initialTransition(brokeringMachine, input)[0];
const notified = (output: NotifyResult) => ({ type: 'xstate.done.actor.notifyB', output });
const actionTypes = (actions: { type: string }[]) => actions.map((a) => a.type);

function at(state: 'requested' | 'forwarded' | 'bConnected' | 'confirmed' | 'spliced'): Snapshot {
  let s = start();
  if (state === 'requested') return s;
  if (state === 'forwarded') return step(s, notified({ accepted: true }))[0];
  s = step(s, { type: 'B_DIALED', socket: bSocket, rest })[0];
  if (state === 'bConnected') return s;
  s = step(s, { type: 'xstate.done.actor.confirmToA' })[0];
  if (state === 'confirmed') return s;
  return step(s, { type: 'A_DIALED', socket: aSocket, rest })[0];
}

describe('brokering machine (pure transitions)', () => {
  it('brokering - starts requested and invokes notifyB', () => {
    const [s, actions] = initialTransition(brokeringMachine, input);
    expect(s.value).toEqual({ requested: 'notifying' });
    expect(s.context).toMatchObject({ ...input, bytesAToB: 0, bytesBToA: 0 });
    expect(s.context).not.toHaveProperty('token');
    expect(actions.some((a) => a.type === 'xstate.spawnChild' && (a.params as { id?: string }).id === 'notifyB')).toBe(true);
  });

  it('brokering - B accepting over the bus waits for B to dial', () => {
    const [s] = step(start(), notified({ accepted: true }));
    expect(s.value).toEqual({ requested: 'forwarded' });
  });

  it('brokering - B refusing ends bRefused with its reason', () => {
    const [s] = step(start(), notified({ accepted: false, reason: 'busy' }));
    expect(s.status).toBe('done');
    expect(s.output).toEqual({ outcome: 'bRefused', detail: 'busy' });
  });

  it('brokering - B not permitted ends bNotPermitted', () => {
    const [s] = step(start(), notified({ accepted: false, reason: 'group mismatch', notPermitted: true }));
    expect(s.output).toEqual({ outcome: 'bNotPermitted', detail: 'group mismatch' });
  });

  it('brokering - a bus failure while notifying ends busFailed', () => {
    const [s] = step(start(), { type: 'xstate.error.actor.notifyB', error: new Error('no responders') });
    expect(s.output).toEqual({ outcome: 'busFailed', detail: 'no responders' });
  });

  it('brokering - B dialing (even before its bus reply) holds B and attaches it to the splicer', () => {
    for (const from of ['requested', 'forwarded'] as const) {
      const [s, actions] = step(at(from), { type: 'B_DIALED', socket: bSocket, rest });
      expect(s.value).toEqual({ holding: 'bConnected' });
      const types = actionTypes(actions);
      // The splicer must exist before B's socket is sent to it.
      expect(types.indexOf('xstate.spawnChild')).toBeLessThan(types.indexOf('xstate.sendTo'));
      const send = actions.find((a) => a.type === 'xstate.sendTo');
      expect((send?.params as unknown as { event: SplicerEvent }).event).toEqual({ type: 'ATTACH_B', socket: bSocket, rest });
      expect(s.context).not.toHaveProperty('socket');
    }
  });

  it('brokering - A dialing before the confirmation is rejected and changes nothing', () => {
    for (const from of ['requested', 'forwarded', 'bConnected'] as const) {
      const before = at(from);
      const [s, actions] = step(before, { type: 'A_DIALED', socket: aSocket, rest });
      expect(s.value).toEqual(before.value);
      const reject = actions.find((a) => a.type === 'rejectDial');
      expect(reject?.params).toEqual({ socket: aSocket });
    }
  });

  it('brokering - B dialing twice is rejected', () => {
    for (const from of ['bConnected', 'confirmed', 'spliced'] as const) {
      const before = at(from);
      const [s, actions] = step(before, { type: 'B_DIALED', socket: { name: 'b2' }, rest });
      expect(s.value).toEqual(before.value);
      expect(actionTypes(actions)).toEqual(['rejectDial']);
    }
  });

  it('brokering - a confirmation to A moves to confirmed; its failure ends busFailed', () => {
    expect(at('confirmed').value).toEqual({ holding: 'confirmed' });
    const [s] = step(at('bConnected'), { type: 'xstate.error.actor.confirmToA', error: new Error('A gone') });
    expect(s.output).toEqual({ outcome: 'busFailed', detail: 'A gone' });
  });

  it('brokering - B closing before A dials ends peerClosedEarly', () => {
    for (const from of ['bConnected', 'confirmed'] as const) {
      const [s] = step(at(from), { type: 'B_CLOSED', detail: 'B reset' });
      expect(s.output).toEqual({ outcome: 'peerClosedEarly', detail: 'B reset' });
    }
  });

  it('brokering - A dialing once confirmed splices and attaches A', () => {
    const [s, actions] = step(at('confirmed'), { type: 'A_DIALED', socket: aSocket, rest });
    expect(s.value).toEqual({ holding: 'spliced' });
    const send = actions.find((a) => a.type === 'xstate.sendTo');
    expect((send?.params as unknown as { event: SplicerEvent }).event).toEqual({ type: 'ATTACH_A', socket: aSocket, rest });
    // The splicer keeps running: it is neither stopped nor spawned again.
    expect(actionTypes(actions)).not.toContain('xstate.stopChild');
    expect(actionTypes(actions)).not.toContain('xstate.spawnChild');
    expect(s.children.splicer).toBeDefined();
  });

  it('brokering - a rejected A in spliced does not disturb the splice', () => {
    const [s, actions] = step(at('spliced'), { type: 'A_DIALED', socket: { name: 'a2' }, rest });
    expect(s.value).toEqual({ holding: 'spliced' });
    expect(actionTypes(actions)).toEqual(['rejectDial']);
  });

  it('brokering - the splice ending closes the session with byte counts', () => {
    const [s, actions] = step(at('spliced'), { type: 'SPLICE_ENDED', reason: 'completed', bytesAToB: 10, bytesBToA: 20 });
    expect(s.output).toEqual({ outcome: 'closed', detail: 'completed' });
    expect(s.context).toMatchObject({ bytesAToB: 10, bytesBToA: 20 });
    expect(actionTypes(actions)).toContain('xstate.stopChild');
  });

  it('brokering - shutdown ends every non-final state in shutDown', () => {
    for (const from of ['requested', 'forwarded', 'bConnected', 'confirmed', 'spliced'] as const) {
      const [s] = step(at(from), { type: 'SHUTDOWN' });
      expect(s.output).toEqual({ outcome: 'shutDown', detail: 'proxy shutting down' });
    }
  });

  it('brokering - leaving holding stops the splicer, whatever the reason', () => {
    for (const event of [{ type: 'SHUTDOWN' }, { type: 'B_CLOSED' }, { type: 'xstate.error.actor.confirmToA', error: 'x' }]) {
      const [, actions] = step(at('bConnected'), event);
      expect(actionTypes(actions)).toContain('xstate.stopChild');
    }
  });

  it('brokering - outcomes list every final state', () => {
    const finals = Object.entries(brokeringMachine.root.states)
      .filter(([, node]) => node.type === 'final')
      .map(([key]) => key);
    expect([...finals].sort()).toEqual([...BROKERING_OUTCOMES].sort());
  });
});

describe('brokering machine (running with provided actors)', () => {
  function run(notify: () => Promise<NotifyResult>, delays = { bDialTimeout: 50, aDialTimeout: 50 }) {
    const received: SplicerEvent[] = [];
    let cleanedUp = 0;
    const machine = brokeringMachine.provide({
      actors: {
        notifyB: fromPromise(notify),
        confirmToA: fromPromise(async () => {}),
        splicer: fromCallback<SplicerEvent, SplicerInput>(({ receive }) => {
          receive((e) => received.push(e));
          return () => cleanedUp++;
        }),
      },
      delays,
    });
    const actor = createActor(machine, { input }).start();
    return { actor, received, cleanups: () => cleanedUp };
  }

  it('brokering - B never dialing ends bNeverDialed at the bDialTimeout delay', async () => {
    vi.useFakeTimers();
    try {
      const { actor } = run(async () => ({ accepted: true }));
      await vi.advanceTimersByTimeAsync(49);
      expect(actor.getSnapshot().value).toEqual({ requested: 'forwarded' });
      await vi.advanceTimersByTimeAsync(1);
      expect(actor.getSnapshot().output).toEqual({ outcome: 'bNeverDialed', detail: 'B did not dial in time' });
    } finally {
      vi.useRealTimers();
    }
  });

  it('brokering - A never dialing ends aNeverDialed and the splicer cleans up', async () => {
    vi.useFakeTimers();
    try {
      const { actor, received, cleanups } = run(async () => ({ accepted: true }));
      await vi.advanceTimersByTimeAsync(0);
      actor.send({ type: 'B_DIALED', socket: bSocket, rest });
      expect(received).toEqual([{ type: 'ATTACH_B', socket: bSocket, rest }]);
      await vi.advanceTimersByTimeAsync(0);
      expect(actor.getSnapshot().value).toEqual({ holding: 'confirmed' });
      await vi.advanceTimersByTimeAsync(50);
      expect(actor.getSnapshot().output).toEqual({ outcome: 'aNeverDialed', detail: 'A did not dial in time' });
      expect(cleanups()).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('brokering - a full session sends both sockets to one splicer and ends closed', async () => {
    const { actor, received, cleanups } = run(async () => ({ accepted: true }));
    await Promise.resolve();
    actor.send({ type: 'B_DIALED', socket: bSocket, rest });
    await vi.waitFor(() => expect(actor.getSnapshot().value).toEqual({ holding: 'confirmed' }));
    actor.send({ type: 'A_DIALED', socket: aSocket, rest });
    expect(received.map((e) => e.type)).toEqual(['ATTACH_B', 'ATTACH_A']);
    actor.send({ type: 'SPLICE_ENDED', reason: 'completed', bytesAToB: 1, bytesBToA: 2 });
    expect(actor.getSnapshot().output).toEqual({ outcome: 'closed', detail: 'completed' });
    expect(cleanups()).toBe(1);
  });

  it('brokering - a rejecting notifyB ends busFailed', async () => {
    const { actor } = run(async () => {
      throw new Error('timeout');
    });
    await vi.waitFor(() => expect(actor.getSnapshot().output).toEqual({ outcome: 'busFailed', detail: 'timeout' }));
  });
});
