import { describe, expect, it } from 'vitest';
import { clientKeyOf } from '../../src/core/client-address.js';

describe('pending connections', () => {
  it('pending connections - an IPv4 address counts as itself, also when mapped into IPv6', () => {
    expect(clientKeyOf('203.0.113.7')).toBe('203.0.113.7');
    expect(clientKeyOf('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientKeyOf('::FFFF:203.0.113.7')).toBe('203.0.113.7');
    expect(clientKeyOf(undefined)).toBe('unknown');
  });

  it('pending connections - IPv6 addresses of one /64 count as one source, of another /64 as another', () => {
    const one = clientKeyOf('2001:db8:1:2:aaaa:bbbb:cccc:dddd');
    expect(clientKeyOf('2001:db8:1:2::1')).toBe(one);
    expect(clientKeyOf('2001:0db8:0001:0002:ffff::')).toBe(one);
    expect(one).toBe('2001:db8:1:2::/64');
    expect(clientKeyOf('2001:db8:1:3::1')).not.toBe(one);
    expect(clientKeyOf('::1')).toBe('0:0:0:0::/64');
    expect(clientKeyOf('fe80::1')).toBe('fe80:0:0:0::/64');
  });
});
