import { isIP } from 'node:net';

/** The eight 16-bit groups of an IPv6 address (an embedded IPv4 tail is converted); `undefined` when it is not one. */
function ipv6Groups(ip: string): number[] | undefined {
  let text = ip;
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4 !== null) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const head = parse(halves[0] as string);
  const tail = halves.length === 2 ? parse(halves[1] as string) : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

/**
 * An IP address in one canonical form: IPv4 dotted (an IPv4-mapped IPv6 address too), IPv6 as
 * eight lowercase groups without leading zeros; anything else as it is.
 */
export function normalizeIp(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const groups = ipv6Groups(ip.toLowerCase());
  return groups === undefined ? ip : normalizeGroups(groups);
}

function normalizeGroups(groups: readonly number[]): string {
  // ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] as number;
    const lo = groups[7] as number;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return groups.map((g) => g.toString(16)).join(':');
}

/**
 * What a per-address limit counts one client by: an IPv4 address as it is; an IPv6 address by its
 * /64 prefix (one host commonly holds a whole /64, so counting single addresses would not limit it).
 */
export function addressKey(ip: string): string {
  const normal = normalizeIp(ip);
  if (isIP(normal) !== 6) return normal;
  return `${normal.split(':').slice(0, 4).join(':')}::/64`;
}

/**
 * The client's address: the peer's, or, when the peer is a trusted reverse proxy, the right-most
 * address of `X-Forwarded-For` that is not itself a trusted proxy (the left ones can be forged by
 * the client). A malformed header leaves the peer's address.
 */
export function clientAddress(peer: string, forwardedFor: string, trusted: ReadonlySet<string>): string {
  const normalPeer = normalizeIp(peer);
  if (forwardedFor === '' || !trusted.has(normalPeer)) return normalPeer;
  const hops = forwardedFor.split(',');
  // Bounded: a header is at most uWS's header size; each hop is looked at once.
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = (hops[i] as string).trim();
    if (isIP(hop) === 0) return normalPeer;
    const normal = normalizeIp(hop);
    if (!trusted.has(normal)) return normal;
  }
  return normalPeer;
}
