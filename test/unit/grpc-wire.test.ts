import { describe, expect, it } from 'vitest';
import { decodeGrpcMessage, frameMessage, grpcTimeout, MessageReader } from '../../src/grpc/grpc-wire.js';

describe('grpc-wire - framing of one unary call', () => {
  it('frames a message with a 5-byte prefix: flag 0, big-endian length', () => {
    const framed = frameMessage(Buffer.from('abc'));
    expect([...framed]).toEqual([0, 0, 0, 0, 3, 0x61, 0x62, 0x63]);
  });

  it('reads messages however the chunks cut them, prefix included', () => {
    const bytes = Buffer.concat([frameMessage(Buffer.from('hello')), frameMessage(Buffer.alloc(0)), frameMessage(Buffer.from('x'))]);
    const reader = new MessageReader();
    for (const b of bytes) expect(reader.push(Buffer.from([b]))).toEqual({ type: 'ok' });
    expect(reader.messages.map(String)).toEqual(['hello', '', 'x']);
    expect(reader.leftover).toBe(0);
  });

  it('keeps an incomplete message as leftover', () => {
    const reader = new MessageReader();
    reader.push(frameMessage(Buffer.from('hello')).subarray(0, 7));
    expect(reader.messages).toEqual([]);
    expect(reader.leftover).toBe(7);
  });

  it('refuses a message over the limit from its prefix alone, and a compressed one', () => {
    const prefix = Buffer.from([0, 0, 0, 0, 11]);
    expect(new MessageReader(10).push(prefix)).toEqual({ type: 'tooLarge', bytes: 11 });
    expect(new MessageReader().push(Buffer.from([1, 0, 0, 0, 1, 0]))).toEqual({ type: 'compressed' });
  });

  it('writes grpc-timeout in at most 8 digits', () => {
    expect(grpcTimeout(15_000)).toBe('15000m');
    expect(grpcTimeout(0.2)).toBe('1m');
    expect(grpcTimeout(1e8)).toBe('100000S');
    expect(grpcTimeout(1e15)).toBe('99999999S');
  });

  it('percent-decodes grpc-message, showing a malformed one as sent', () => {
    expect(decodeGrpcMessage('no%20such%20method')).toBe('no such method');
    expect(decodeGrpcMessage('100%')).toBe('100%');
    expect(decodeGrpcMessage(undefined)).toBe('');
  });
});
