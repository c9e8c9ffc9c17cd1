/**
 * The host a connection comes from, for bounds that peer ids alone cannot carry (ids are free;
 * addresses cost something): an IPv4 address, or an IPv6 /56 — what RFC 6177 recommends a
 * subscriber site be given (/48 to /56), within which an attacker picks addresses at will.
 * IPv4-mapped IPv6 addresses (a dual-stack socket's view of an IPv4 peer) are their IPv4
 * address.
 *
 * Loopback addresses have no host: a cluster of runtimes on one machine is its operator's own,
 * and grouping it would make one host of what blockfed is built to spread over. So have
 * addresses that are not IP (DNS names before resolution, relays): the caller's other bounds
 * (per peer) still apply.
 */
import type { Multiaddr } from '@multiformats/multiaddr'

/** The /56 an IPv6 address is in, or its IPv4 address when it is IPv4-mapped; undefined for ::1. */
function ip6Group (bytes: Uint8Array): string | undefined {
  const hex = (i: number): string => ((bytes[i] as number) << 8 | (bytes[i + 1] as number)).toString(16)
  if (bytes.every((b, i) => b === (i === 15 ? 1 : 0))) return undefined
  const mapped = bytes.subarray(0, 10).every(b => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff
  if (mapped) return ip4Group(Array.from(bytes.subarray(12, 16)).join('.'))
  return `${hex(0)}:${hex(2)}:${hex(4)}:${((bytes[6] as number) << 8).toString(16)}::/56`
}

function ip4Group (address: string): string | undefined {
  return address.startsWith('127.') ? undefined : address
}

/**
 * @example hostGroup(multiaddr('/ip6/2001:db8:0:1::7/tcp/4001')) // '2001:db8:0:0::/56'
 * @example hostGroup(multiaddr('/ip4/127.0.0.1/tcp/4001'))       // undefined
 */
export function hostGroup (addr: Multiaddr | undefined): string | undefined {
  if (addr === undefined) return undefined
  const first = addr.getComponents()[0]
  if (first?.name === 'ip4' && first.value !== undefined) return ip4Group(first.value)
  // An ip6 component is its code (41, one varint byte) and 16 address bytes (multiaddr spec).
  if (first?.name === 'ip6' && addr.bytes.length >= 17) return ip6Group(addr.bytes.subarray(1, 17))
  return undefined
}
