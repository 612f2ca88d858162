import { isIPv6 } from 'node:net';

// What a per-client cap counts against, for the splice endpoint's pending connections and the
// rendezvous' relay grants alike: the one thing known about a stranger is where it dials from.

/**
 * An IPv4 address as is (also when mapped into IPv6), an IPv6 address by its /64: one subscriber
 * is routinely handed a whole /64 and could otherwise take a fresh cap from each of its addresses.
 */
export function clientKeyOf(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  // A dotted IPv4 tail stands for two groups.
  const width = (gs: string[]) => gs.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - width(left) - width(right)).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
