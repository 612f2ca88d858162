import { describe, expect, it } from 'vitest';
import { RpcError } from '../../src/core/errors.js';
import { BrokeringStepError } from '../../src/devstack/chaos-broker.js';
import { classifyCall, classifyDuel, normalize, retriedCalls } from '../../src/devstack/chaos-errors.js';
import type { WorkRecord } from '../../src/devstack/chaos-load.js';
import { outcomes, recoveryByTarget, type Kill } from '../../src/devstack/chaos-report.js';
import type { DuelPeer } from '../../src/devstack/duel.js';

// The chaos run's arithmetic and its error classes, on records made up here: which call counts
// as the recovery after a kill, which failures fall in its window, what is a clear failure.

const ok = (kind: WorkRecord['kind'], startedAt: number, endedAt: number): WorkRecord => ({ kind, startedAt, endedAt, ok: true });
const failed = (kind: WorkRecord['kind'], startedAt: number, endedAt: number, label = 'JSON-RPC -#: x'): WorkRecord => ({ kind, startedAt, endedAt, ok: false, failure: { label, clear: true } });
const peer = (verb: 'host' | 'guest', code: number | null, stderr: string, timedOut = false): DuelPeer => ({
  verb,
  code,
  stdout: '',
  stderr,
  said: stderr.split('\n').map((line, i) => ({ at: 100 * i, line })),
  timedOut,
});

describe('chaos figures', () => {
  it('chaos report - the recovery is the first success among calls started after the kill, not one in flight across it', () => {
    const kills: Kill[] = [
      { target: 'proxy', victim: 'public-proxy-1', killedAt: 1000, restartedAt: 2500, healthyAt: 4000 },
      { target: 'sd', victim: 'sd-1', killedAt: 10_000, restartedAt: 11_500, healthyAt: 13_000 },
    ];
    const records = [
      ok('kept', 900, 1100), // in flight across the kill: not new work
      failed('kept', 1200, 1300),
      ok('kept', 1400, 1450),
      ok('kept', 1300, 1500),
      failed('brokered', 9000, 10_100), // ends in the second window
      ok('brokered', 10_200, 10_260),
      // A duel begun in the first window whose peer retried once in each: each retry counts where it was said.
      { ...ok('duel', 9000, 12_000), retried: [{ at: 9500, label: 'games host retried POST /games/poll: ECONNREFUSED', clear: true }, { at: 10_500, label: 'games host retried POST /games/register: HTTP #: x', clear: true }] },
    ];
    const [proxy, sd] = outcomes(kills, records, 20_000);
    expect(proxy!.recoveryMs).toEqual({ kept: 450, brokered: null, duel: 11_000 });
    expect(proxy!.restartMs).toBe(3000);
    expect(proxy!.failures).toEqual([{ kind: 'kept', label: 'JSON-RPC -#: x', clear: true, count: 1 }]);
    expect(sd!.recoveryMs.brokered).toBe(260);
    expect(sd!.failures.map((f) => f.kind)).toEqual(['brokered']);
    expect(proxy!.retried.map((f) => f.label)).toEqual(['games host retried POST /games/poll: ECONNREFUSED']);
    expect(sd!.retried.map((f) => f.label)).toEqual(['games host retried POST /games/register: HTTP #: x']);
    const byTarget = recoveryByTarget([proxy!, sd!]);
    expect(byTarget['proxy']!.kept).toMatchObject({ p50: 450, max: 450, n: 1, missing: 0 });
    expect(byTarget['proxy']!.brokered).toMatchObject({ n: 0, missing: 1 });
  });

  it('chaos errors - a JSON-RPC error, a refused dial and a peer that explains are clear; a hang or a bare reset is not', () => {
    expect(classifyCall(new RpcError('PEER_UNREACHABLE', 'hd-2: nobody serves it on the bus'))).toMatchObject({ clear: true });
    expect(classifyCall(new BrokeringStepError('dial', new Error('connect ECONNREFUSED 127.0.0.1:29999')))).toEqual({ label: 'dial: refused: connect ECONNREFUSED #.#.#.#:#', clear: true });
    expect(classifyCall(new Error('https://127.0.0.1:5555/jsonrpc: no answer within 15000 ms')).clear).toBe(false);
    expect(classifyCall(new Error('read ECONNRESET')).clear).toBe(false);
    // The step says what was reset: A's splice, when its proxy was killed.
    expect(classifyCall(new BrokeringStepError('call', new Error('read ECONNRESET')))).toEqual({ label: 'call: reset: read ECONNRESET', clear: true });
    expect(classifyCall(new BrokeringStepError('request', new Error('no answer within 15000 ms'))).clear).toBe(false);
    expect(classifyDuel([peer('host', 0, ''), peer('guest', 0, '')])).toBeUndefined();
    expect(classifyDuel([peer('host', 0, ''), peer('guest', 1, 'waiting…\ngames guest: failed: no host joined "x" within 20000 ms\n')])).toEqual({ label: 'games guest: failed: no host joined "x" within # ms', clear: true });
    expect(classifyDuel([peer('host', null, 'polling', true), peer('guest', 0, '')])!.clear).toBe(false);
    expect(classifyDuel([peer('host', 1, '')])!.clear).toBe(false);
  });

  it('chaos errors - the calls a peer retried are read from its stderr, with the game name and port taken out', () => {
    const stderr = [
      'games host: POST http://127.0.0.1:28001/games/poll failed (503 store-unavailable); waiting for the rendezvous to poll for guests, next try in 1.0 s (gives up in 19 s)',
      'games host: GET http://127.0.0.1:28001/games/chaos%201 failed (ECONNREFUSED); waiting for the rendezvous to answer, next try in 0.5 s (gives up in 18 s)',
      'games host: STUN 127.0.0.1:3479 failed (no answer); waiting for it, next try at once (gives up in 17 s)',
      '{"result":"direct"}',
    ].join('\n');
    expect(retriedCalls([peer('host', 0, stderr)])).toEqual([
      { at: 0, label: 'games host retried POST /games/poll: # store-unavailable', clear: true },
      { at: 100, label: 'games host retried GET /games/:name: ECONNREFUSED', clear: true },
      { at: 200, label: 'games host retried STUN: no answer', clear: true },
    ]);
    expect(normalize('session 1f0e2d3c-aaaa-bbbb-cccc-0123456789ab took 12 ms')).toBe('session <id> took # ms');
  });
});
