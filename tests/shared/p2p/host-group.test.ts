/** hostGroup (shared/p2p/host-group.ts): which connections count as one host for per-host bounds. */
import { describe, it, expect } from 'vitest'
import { multiaddr } from '@multiformats/multiaddr'
import { hostGroup } from '../../../shared/p2p/host-group.ts'

const id = '/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'

describe('hostGroup', () => {
  it('is the IPv4 address, whatever the port, transport or peer', () => {
    expect(hostGroup(multiaddr('/ip4/203.0.113.7/tcp/4001'))).toBe('203.0.113.7')
    expect(hostGroup(multiaddr(`/ip4/203.0.113.7/tcp/5002/ws${id}`))).toBe('203.0.113.7')
    expect(hostGroup(multiaddr('/ip4/10.0.0.8/tcp/1'))).toBe('10.0.0.8')
    expect(hostGroup(multiaddr('/ip4/10.0.0.9/tcp/1'))).not.toBe(hostGroup(multiaddr('/ip4/10.0.0.8/tcp/1')))
  })

  it('is the /56 of an IPv6 address, however it is written', () => {
    const group = hostGroup(multiaddr('/ip6/2001:db8:0:1::7/tcp/4001'))
    expect(group).toBe('2001:db8:0:0::/56')
    expect(hostGroup(multiaddr(`/ip6/2001:0db8:0000:00ff:ffff:1:2:3/tcp/9${id}`))).toBe(group)
    expect(hostGroup(multiaddr('/ip6/2001:db8:0:1ff::7/tcp/4001'))).toBe('2001:db8:0:100::/56')
    expect(hostGroup(multiaddr('/ip6/2001:db8:1:2::7/tcp/4001'))).toBe('2001:db8:1:0::/56')
  })

  it('is the IPv4 address of an IPv4-mapped IPv6 one', () => {
    expect(hostGroup(multiaddr('/ip6/::ffff:203.0.113.7/tcp/4001'))).toBe('203.0.113.7')
    expect(hostGroup(multiaddr('/ip6/::ffff:127.0.0.1/tcp/4001'))).toBeUndefined()
  })

  it('is undefined for loopback and for addresses that are not IP', () => {
    expect(hostGroup(multiaddr('/ip4/127.0.0.1/tcp/4001'))).toBeUndefined()
    expect(hostGroup(multiaddr('/ip4/127.3.2.1/tcp/4001'))).toBeUndefined()
    expect(hostGroup(multiaddr('/ip6/::1/tcp/4001'))).toBeUndefined()
    expect(hostGroup(multiaddr('/dns4/example.org/tcp/443/wss'))).toBeUndefined()
    expect(hostGroup(undefined)).toBeUndefined()
  })
})
