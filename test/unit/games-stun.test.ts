import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  answerBinding,
  ATTR,
  crc32,
  decodeErrorCode,
  decodeStun,
  decodeXorAddress,
  encodeStun,
  encodeXorAddress,
  looksLikeStun,
  messageType,
  METHOD_BINDING,
  transportAddress,
} from '../../src/games/stun.js';

// RFC 5769 test vectors (§2.1 request, §2.2 IPv4 response, §2.3 IPv6 response).
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';
const TXID = hex('b7e7a701 bc34d686 fa87dfae');
const REQUEST = hex(`
  00010058 2112a442 b7e7a701 bc34d686 fa87dfae
  80220010 5354554e 20746573 7420636c 69656e74
  00240004 6e0001ff
  80290008 932ff9b1 51263b36
  00060009 6576746a 3a683676 59202020
  00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
  80280004 e57a3bcf`);
const IPV4_RESPONSE = hex(`
  0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200008 0001a147 e112a643
  00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
  80280004 c07d4c96`);
const IPV6_RESPONSE = hex(`
  01010048 2112a442 b7e7a701 bc34d686 fa87dfae
  8022000b 74657374 20766563 746f7220
  00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
  00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
  80280004 c8fb0b4c`);

/** MESSAGE-INTEGRITY check (short-term key = password): proves the vectors were typed right. */
function integrityOk(msg: Buffer, password: string): boolean {
  const decoded = decodeStun(msg);
  if (decoded.type !== 'ok') return false;
  let offset = 20;
  for (const a of decoded.message.attributes) {
    if (a.type === ATTR.MESSAGE_INTEGRITY) {
      const signed = Buffer.from(msg.subarray(0, offset));
      signed.writeUInt16BE(offset + 24 - 20, 2);
      return createHmac('sha1', password).update(signed).digest().equals(a.value);
    }
    offset += 4 + a.value.length + ((4 - (a.value.length % 4)) % 4);
  }
  return false;
}

describe('STUN codec (RFC 8489, RFC 5769 vectors)', () => {
  it('stun - crc32 is the ITU V.42 CRC', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('stun - message types interleave method and class bits', () => {
    expect(messageType(METHOD_BINDING, 'request')).toBe(0x0001);
    expect(messageType(METHOD_BINDING, 'indication')).toBe(0x0011);
    expect(messageType(METHOD_BINDING, 'success')).toBe(0x0101);
    expect(messageType(METHOD_BINDING, 'error')).toBe(0x0111);
    expect(messageType(0x003, 'request')).toBe(0x0003);
  });

  it('stun - the sample request decodes with a valid FINGERPRINT and MESSAGE-INTEGRITY', () => {
    const r = decodeStun(REQUEST);
    expect(r.type).toBe('ok');
    if (r.type !== 'ok') return;
    expect(r.message).toMatchObject({ method: METHOD_BINDING, cls: 'request' });
    expect(r.message.transactionId).toEqual(TXID);
    expect(r.message.attributes.map((a) => a.type)).toEqual([0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    expect(r.message.attributes[0]!.value.toString()).toBe('STUN test client');
    expect(integrityOk(REQUEST, PASSWORD)).toBe(true);
  });

  it('stun - the IPv4 sample response maps to 192.0.2.1:32853', () => {
    const r = decodeStun(IPV4_RESPONSE);
    if (r.type !== 'ok') throw new Error(r.reason);
    expect(r.message.cls).toBe('success');
    const xor = r.message.attributes.find((a) => a.type === ATTR.XOR_MAPPED_ADDRESS)!;
    expect(decodeXorAddress(xor.value, TXID)).toEqual({ family: 'IPv4', address: '192.0.2.1', port: 32853 });
    expect(encodeXorAddress({ family: 'IPv4', address: '192.0.2.1', port: 32853 }, TXID)).toEqual(xor.value);
    expect(integrityOk(IPV4_RESPONSE, PASSWORD)).toBe(true);
  });

  it('stun - the IPv6 sample response maps to [2001:db8:1234:5678:11:2233:4455:6677]:32853', () => {
    const r = decodeStun(IPV6_RESPONSE);
    if (r.type !== 'ok') throw new Error(r.reason);
    const xor = r.message.attributes.find((a) => a.type === ATTR.XOR_MAPPED_ADDRESS)!;
    const mapped = { family: 'IPv6' as const, address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 };
    expect(decodeXorAddress(xor.value, TXID)).toEqual(mapped);
    expect(encodeXorAddress(mapped, TXID)).toEqual(xor.value);
    expect(integrityOk(IPV6_RESPONSE, PASSWORD)).toBe(true);
  });

  it('stun - our encoder reproduces the sample response bytes (but for padding, which may be any value)', () => {
    const decoded = decodeStun(IPV4_RESPONSE);
    if (decoded.type !== 'ok') throw new Error(decoded.reason);
    const attributes = decoded.message.attributes.filter((a) => a.type !== ATTR.FINGERPRINT);
    const bytes = encodeStun({ ...decoded.message, attributes }, { fingerprint: true });
    expect(decodeStun(bytes).type).toBe('ok');
    // The vector pads SOFTWARE ("test vector", 11 bytes) with a space at offset 35; we pad with zero.
    const expected = Buffer.from(IPV4_RESPONSE.subarray(0, IPV4_RESPONSE.length - 8));
    expected[35] = 0;
    expect(bytes.subarray(0, bytes.length - 8)).toEqual(expected);
  });

  it('stun - invalid messages are refused with a reason', () => {
    const bad = (b: Buffer) => decodeStun(b);
    expect(bad(REQUEST.subarray(0, 19)).type).toBe('invalid');
    const noCookie = Buffer.from(REQUEST);
    noCookie.writeUInt32BE(0, 4);
    expect(bad(noCookie)).toMatchObject({ type: 'invalid', reason: expect.stringContaining('cookie') });
    const badFp = Buffer.from(REQUEST);
    badFp[badFp.length - 1]! ^= 1;
    expect(bad(badFp)).toMatchObject({ type: 'invalid', reason: 'FINGERPRINT does not match' });
    const badLen = Buffer.from(REQUEST);
    badLen.writeUInt16BE(0x54, 2);
    expect(bad(badLen).type).toBe('invalid');
    expect(looksLikeStun(REQUEST)).toBe(true);
    expect(looksLikeStun(Buffer.alloc(20, 0xff))).toBe(false);
  });
});

describe('STUN Binding answers', () => {
  const opts = { software: 'eps-p2p games', fingerprint: true };
  const request = (attributes: { type: number; value: Buffer }[] = [], method = METHOD_BINDING) =>
    encodeStun({ method, cls: 'request', transactionId: TXID, attributes });

  it('stun - a Binding request gets XOR-MAPPED-ADDRESS, SOFTWARE when set, and a valid FINGERPRINT', () => {
    for (const from of [transportAddress('::ffff:192.0.2.1', 32853), transportAddress('2001:db8::1', 443)]) {
      for (const [o, expected] of [
        [opts, [ATTR.XOR_MAPPED_ADDRESS, ATTR.SOFTWARE, ATTR.FINGERPRINT]],
        [{ fingerprint: true }, [ATTR.XOR_MAPPED_ADDRESS, ATTR.FINGERPRINT]],
      ] as const) {
        const a = answerBinding(request(), from, o);
        if (a.type !== 'reply') throw new Error(a.reason);
        const r = decodeStun(a.bytes);
        if (r.type !== 'ok') throw new Error(r.reason);
        expect(r.message).toMatchObject({ cls: 'success', method: METHOD_BINDING });
        expect(r.message.transactionId).toEqual(TXID);
        expect(r.message.attributes.map((x) => x.type)).toEqual(expected);
        expect(decodeXorAddress(r.message.attributes[0]!.value, TXID)).toEqual(from);
      }
    }
    expect(transportAddress('::ffff:192.0.2.1', 1).family).toBe('IPv4');
  });

  it('stun - answers are no larger than they must be: a 20-byte request draws 40 bytes over IPv4, 52 over IPv6', () => {
    const minimal = request();
    expect(minimal.length).toBe(20);
    const size = (from: ReturnType<typeof transportAddress>, fingerprint: boolean) => {
      const a = answerBinding(minimal, from, { fingerprint });
      if (a.type !== 'reply') throw new Error(a.reason);
      return a.bytes.length;
    };
    expect(size(transportAddress('192.0.2.1', 1), true)).toBe(40);
    expect(size(transportAddress('192.0.2.1', 1), false)).toBe(32);
    expect(size(transportAddress('2001:db8::1', 1), true)).toBe(52);
  });

  it('stun - unknown comprehension-required attributes get 420 with UNKNOWN-ATTRIBUTES', () => {
    // The RFC 5769 request carries PRIORITY (0x0024), an ICE attribute a Binding server does not know.
    const a = answerBinding(REQUEST, transportAddress('192.0.2.1', 1), opts);
    if (a.type !== 'reply') throw new Error(a.reason);
    const r = decodeStun(a.bytes);
    if (r.type !== 'ok') throw new Error(r.reason);
    expect(r.message.cls).toBe('error');
    // No reason phrase: it is for diagnostics only, and every byte of an answer can be aimed at a spoofed source.
    expect(decodeErrorCode(r.message.attributes.find((x) => x.type === ATTR.ERROR_CODE)!.value)).toEqual({ code: 420, reason: '' });
    expect(a.bytes.length).toBeLessThanOrEqual(REQUEST.length);
    const unknown = r.message.attributes.find((x) => x.type === ATTR.UNKNOWN_ATTRIBUTES)!.value;
    expect(unknown.readUInt16BE(0)).toBe(0x0024);
    expect(unknown.length).toBe(2);
  });

  it('stun - unknown comprehension-optional attributes are ignored', () => {
    const a = answerBinding(request([{ type: 0x8029, value: Buffer.alloc(8) }]), transportAddress('192.0.2.1', 1), opts);
    expect(a).toMatchObject({ type: 'reply', kind: 'success' });
  });

  it('stun - another method, responses, indications and junk are dropped', () => {
    expect(answerBinding(request([], 0x003), transportAddress('192.0.2.1', 1), opts)).toMatchObject({ type: 'drop', reason: expect.stringContaining('only Binding') });
    expect(answerBinding(IPV4_RESPONSE, transportAddress('192.0.2.1', 1), opts).type).toBe('drop');
    const indication = encodeStun({ method: METHOD_BINDING, cls: 'indication', transactionId: TXID, attributes: [] });
    expect(answerBinding(indication, transportAddress('192.0.2.1', 1), opts).type).toBe('drop');
    expect(answerBinding(Buffer.from('GET / HTTP/1.1\r\n\r\n'), transportAddress('192.0.2.1', 1), opts).type).toBe('drop');
  });
});
