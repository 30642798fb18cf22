import { BlockList, isIP } from 'node:net';

/** Decides whether the hop at `index` (0 = the socket peer) may forward for the client. */
export type TrustHop = (address: string, index: number) => boolean;

const NAMED_RANGES: Record<string, string[]> = {
  loopback: ['127.0.0.1/8', '::1/128'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
  uniquelocal: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
};

/** Strips the IPv4-mapped IPv6 prefix, so `::ffff:1.2.3.4` reads `1.2.3.4`. */
export function normaliseIp(address: string): string {
  const lower = address.trim().toLowerCase();
  return lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4 ? lower.slice(7) : lower;
}

/**
 * Compiles addresses, CIDR ranges and the names `loopback`, `linklocal` and
 * `uniquelocal` into a matcher. Throws an `Error` naming the entry it cannot read.
 */
export function compileAddressList(entries: readonly string[]): (address: string) => boolean {
  const list = new BlockList();
  for (const raw of entries.flatMap((entry) => NAMED_RANGES[entry.trim().toLowerCase()] ?? [entry.trim()])) {
    const [address = '', prefix] = raw.split('/');
    const family = isIP(address);
    if (family === 0) throw new Error(`"${raw}" is not an IP address, a CIDR range or one of loopback, linklocal, uniquelocal`);
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === undefined) {
      list.addAddress(address, type);
    } else {
      const bits = Number(prefix);
      if (!/^\d+$/.test(prefix) || bits > (family === 4 ? 32 : 128)) throw new Error(`"${raw}" has an invalid prefix length`);
      list.addSubnet(address, bits, type);
    }
  }
  return (address) => {
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  };
}

/** `X-Forwarded-For` entries read, from the right: a handful is all a real chain has. */
export const MAX_FORWARDED_HOPS = 32;

/** Trusts no hop: the client is the socket peer. */
export const TRUST_NO_PROXY: TrustHop = () => false;

/** The `trustProxy` option as a hop test. Throws for values it cannot read. */
export function compileTrustProxy(trust: boolean | number | string | readonly string[]): TrustHop {
  if (trust === true) return () => true;
  if (trust === false) return () => false;
  if (typeof trust === 'number') return (_address, index) => index < trust;
  const matches = compileAddressList(typeof trust === 'string' ? trust.split(',') : trust);
  return (address) => matches(address);
}

/**
 * The client's address: the socket peer, unless trusted hops forwarded the request,
 * in which case the first untrusted address walking `X-Forwarded-For` from the right.
 * Entries that are not IP addresses end the walk: a forged chain never yields a
 * value that is not an address.
 */
export function clientIp(
  socketAddress: string | undefined,
  forwardedFor: string | string[] | undefined,
  trust: TrustHop,
  maxLength: number,
): string | undefined {
  if (!socketAddress) return undefined;
  let current = normaliseIp(socketAddress);
  const header = Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor;
  if (!header) return current;
  // Bound the work on hostile headers: a handful of hops is all a real chain has. The
  // right end is the trusted part (each proxy appends the address it saw), so a header
  // past the bound keeps its right end; an entry cut by the bound is dropped.
  const limit = maxLength * 4;
  const kept = header.length > limit ? header.slice(header.indexOf(',', header.length - limit - 1) + 1 || header.length) : header;
  const hops = kept.split(',').slice(-MAX_FORWARDED_HOPS).reverse();
  for (let index = 0; index < hops.length; index++) {
    if (!trust(current, index)) return current;
    const next = normaliseIp(hops[index]!);
    if (isIP(next) === 0) return current;
    current = next;
  }
  return current;
}
