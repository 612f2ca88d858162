import { describe, expect, it } from 'vitest';
import { Socket } from 'node:net';
import { isLoopbackIp, isPrivateIp, redact, redactAddress, REDACTED } from '../../src/inspector/redact.js';
import { eventDetail } from '../../src/inspector/session-log.js';

describe('inspector redaction', () => {
  it('redaction - private, loopback, link-local, CGNAT and ULA addresses are private; public ones are not', () => {
    for (const ip of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.10', '127.0.0.1', '169.254.1.1', '100.64.0.1', '0.0.0.0', '::1', 'fd12::1', 'fe80::1', '::ffff:192.168.0.1']) {
      expect(isPrivateIp(ip), ip).toBe(true);
    }
    for (const ip of ['203.0.113.7', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2001:db8::1', '::ffff:8.8.8.8']) {
      expect(isPrivateIp(ip), ip).toBe(false);
    }
    expect(isLoopbackIp('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopbackIp('10.0.0.1')).toBe(false);
    expect(isLoopbackIp(undefined)).toBe(false);
  });

  it('redaction - a private address keeps only its port, public addresses and names pass', () => {
    expect(redactAddress('192.168.1.20:40123')).toBe('private:40123');
    expect(redactAddress('[fd00::5]:7000')).toBe('private:7000');
    expect(redactAddress('10.0.0.1')).toBe('private');
    expect(redactAddress('203.0.113.12:40123')).toBe('203.0.113.12:40123');
    expect(redactAddress('[2001:db8::1]:4000')).toBe('[2001:db8::1]:4000');
    expect(redactAddress('hd-1')).toBe('hd-1');
    expect(redactAddress('999.1.1.1:80')).toBe('999.1.1.1:80');
  });

  it('redaction - tokens, keys, secrets, hashes and peer ids lose their values at any depth', () => {
    const out = redact({
      token: 'abc',
      sessionToken: Buffer.alloc(32),
      privateKey: 'PEM',
      secretHash: 'ff'.repeat(32),
      hostPeerId: 'host-peer',
      guests: [{ peerId: 'guest-secret-id', addresses: ['10.0.0.2:5000', '198.51.100.7:5000'], status: 'swapped' }],
      nested: { deeper: { authorization: 'Bearer x', signature: 'sig', keep: 'me' } },
      a: 'hd-1',
    });
    expect(out).toEqual({
      token: REDACTED,
      sessionToken: REDACTED,
      privateKey: REDACTED,
      secretHash: REDACTED,
      hostPeerId: REDACTED,
      guests: [{ peerId: REDACTED, addresses: ['private:5000', '198.51.100.7:5000'], status: 'swapped' }],
      nested: { deeper: { authorization: REDACTED, signature: REDACTED, keep: 'me' } },
      a: 'hd-1',
    });
    const text = JSON.stringify(out);
    for (const secret of ['abc', 'PEM', 'ffff', 'host-peer', 'guest-secret-id', 'Bearer', '10.0.0.2']) expect(text).not.toContain(secret);
  });

  it('redaction - sockets, buffers, class instances and functions are named or dropped, never serialised', () => {
    const socket = new Socket();
    const out = redact({ socket, rest: new Uint8Array(12), when: new Date(0), fn: () => 1, n: Infinity, list: Array.from({ length: 70 }, (_, i) => i) }) as Record<string, unknown>;
    expect(out.socket).toBe('[Socket]');
    expect(out.rest).toBe('[12 bytes]');
    expect(out.when).toBe('[Date]');
    expect('fn' in out).toBe(false);
    expect(out.n).toBe('Infinity');
    expect((out.list as unknown[]).length).toBe(65);
    expect((out.list as unknown[])[64]).toBe('… 6 more');
    socket.destroy();
  });

  it('redaction - deep and long values are cut', () => {
    const deep = { a: { b: { c: { d: { e: { f: 'too deep' } } } } } };
    expect(JSON.stringify(redact(deep))).not.toContain('too deep');
    expect((redact('x'.repeat(1000)) as string).length).toBe(301);
  });

  it("redaction - a brokering event's socket is named when it is recorded and its payload never kept", () => {
    const socket = new Socket();
    const detail = eventDetail({ type: 'B_DIALED', socket, rest: new Uint8Array([1, 2, 3]) });
    expect(detail).toEqual({ socket: '[Socket]', rest: '[3 bytes]' });
    expect(eventDetail({ type: 'xstate.error.actor.notifyB', error: new Error('bus down') })).toEqual({ error: 'bus down' });
    expect(eventDetail({ type: 'xstate.done.actor.notifyB', output: { accepted: false, reason: 'no', extra: { deep: 1 } } })).toEqual({
      output: { accepted: false, reason: 'no', extra: '[object]' },
    });
    expect(eventDetail({ type: 'SHUTDOWN' })).toBeUndefined();
    socket.destroy();
  });
});
