import { describe, expect, it } from 'vitest';
import { sourceKey } from '../../src/proxy/pending-connections.js';

describe('pending connections', () => {
  it('pending connections - an IPv4 address counts as itself, also when mapped into IPv6', () => {
    expect(sourceKey('203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(sourceKey(undefined)).toBe('unknown');
  });

  it('pending connections - IPv6 addresses of one /64 count as one source, of another /64 as another', () => {
    const one = sourceKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd');
    expect(sourceKey('2001:db8:1:2::1')).toBe(one);
    expect(sourceKey('2001:0db8:0001:0002:ffff::')).toBe(one);
    expect(one).toBe('2001:db8:1:2::/64');
    expect(sourceKey('2001:db8:1:3::1')).not.toBe(one);
    expect(sourceKey('::1')).toBe('0:0:0:0::/64');
    expect(sourceKey('fe80::1')).toBe('fe80:0:0:0::/64');
  });
});
