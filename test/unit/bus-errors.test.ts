import { ClosedConnectionError, NoRespondersError, PermissionViolationError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { BusError, busFailureOf, classifyNatsError, type BusFailure } from '../../src/bus/bus-errors.js';
import { RpcError } from '../../src/core/errors.js';

// The one place that reads what nats.js threw: each error class maps to one failure type, and each
// failure type to one JSON-RPC code and one sentence, whatever the errors' messages say.

describe('bus errors', () => {
  it('bus errors - nats.js errors are classified by class, not by message', () => {
    const noResponders = new NoRespondersError('eps.op.hd-2._ping');
    noResponders.message = 'something else entirely';
    expect(classifyNatsError(noResponders, 100)).toEqual({ type: 'noResponders' });
    expect(classifyNatsError(new RequestError('x', { cause: new NoRespondersError('s') }), 100)).toEqual({ type: 'noResponders' });
    expect(classifyNatsError(new TimeoutError(), 100)).toEqual({ type: 'timeout', waitedMs: 100 });
    expect(classifyNatsError(new RequestError('timeout', { cause: new TimeoutError() }), 250)).toEqual({ type: 'timeout', waitedMs: 250 });
    expect(classifyNatsError(new PermissionViolationError('Permissions Violation for Publish to "x"', 'publish', 'x'), 100)).toMatchObject({ type: 'notPermitted' });
    expect(classifyNatsError(new ClosedConnectionError(), 100)).toEqual({ type: 'disconnected', detail: 'closed connection' });
    // A message that merely mentions "no responders" or "timeout" is not one.
    expect(classifyNatsError(new Error('no responders: timeout'), 100)).toEqual({ type: 'disconnected', detail: 'no responders: timeout' });
  });

  it('bus errors - each failure has its code and sentence, and busFailureOf tells bus failures from peer refusals', () => {
    const cases: [BusFailure, number, string][] = [
      [{ type: 'noResponders' }, -32003, 'Peer unreachable: hd-2._ping: nobody serves it on the bus'],
      [{ type: 'timeout', waitedMs: 3000 }, -32005, 'Peer did not answer in time: hd-2._ping: no answer on the bus within 3000 ms'],
      [
        { type: 'replyRejected', waitedMs: 3000, rejected: 2, lastRefusal: 'BAD_SIGNATURE: x' },
        -32005,
        'Peer did not answer in time: hd-2._ping: no valid answer on the bus within 3000 ms; 2 replies rejected (last: BAD_SIGNATURE: x)',
      ],
      [{ type: 'disconnected', waitedMs: 3000 }, -32003, 'Peer unreachable: hd-2._ping: the bus is disconnected (not back within 3000 ms)'],
      [{ type: 'notPermitted', detail: 'no' }, -32003, 'Peer unreachable: hd-2._ping: the bus refused the request: no'],
    ];
    for (const [failure, code, message] of cases) {
      const err = new BusError('hd-2._ping', failure);
      expect(err).toBeInstanceOf(RpcError);
      expect({ code: err.code, message: err.message }).toEqual({ code, message });
      expect(busFailureOf(err)).toBe(failure);
      // Across JSON-RPC it is a plain RpcError again: only in-process callers branch on the type.
      expect(busFailureOf(RpcError.fromWire(err.toWire()))).toBeUndefined();
    }
    expect(busFailureOf(new RpcError('PEER_UNREACHABLE', 'hd-2._ping: nobody serves it on the bus'))).toBeUndefined();
  });
});
