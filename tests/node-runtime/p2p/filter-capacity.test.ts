/**
 * The Bloom filter a runtime gossips grows with the blocks it holds (node-runtime/p2p/swarm.ts,
 * filterCapacity): twice their count, to a power of two, never below the configured least, so
 * the false-positive rate stays under its bound while the message stays as small as its content.
 */
import { describe, it, expect } from 'vitest'
import { filterCapacity } from '../../../node-runtime/p2p/swarm.ts'
import { blockFilter, decodeBlockFilter } from '../../../shared/p2p/bloom.ts'
import { decodeGossip, encodeGossip, GOSSIP_MAX_MESSAGE_BYTES } from '../../../shared/p2p/gossip.ts'
import { rawCid } from '../../../shared/crypto/cid.ts'

describe('filterCapacity', () => {
  it('is twice the blocks held, to a power of two, at least the least', () => {
    expect([0, 1, 31, 32, 33, 100, 5000].map(n => filterCapacity(n, 64))).toEqual([64, 64, 64, 64, 128, 256, 16_384])
    expect(filterCapacity(10, 1)).toBe(32)
    for (let n = 0; n < 3000; n += 7) expect(filterCapacity(n, 64)).toBeGreaterThanOrEqual(2 * n)
  })

  it('keeps a filter of the blocks of one model under 200 bytes, where 10,000 blocks of capacity took 12 KB', async () => {
    const cids = await Promise.all(Array.from({ length: 31 }, async (_, i) => await rawCid(new TextEncoder().encode(`block ${i}`))))
    const small = blockFilter({ capacity: filterCapacity(cids.length, 64), falsePositiveRate: 0.01 })
    const large = blockFilter({ capacity: 10_000, falsePositiveRate: 0.01 })
    for (const cid of cids) { small.add(cid); large.add(cid) }
    expect(cids.every(c => small.has(c))).toBe(true)
    expect(small.encode().length).toBeLessThan(200)
    expect(large.encode().length).toBeGreaterThan(11_900)
  })

  it('stays within one gossip message however many blocks a node holds; past the cap the filter fills but never misses', async () => {
    expect(filterCapacity(50_000, 64)).toBe(131_072)
    expect(filterCapacity(200_000, 64)).toBe(131_072)
    expect(filterCapacity(200_000, 64, 0.001)).toBe(65_536)
    expect(filterCapacity(0, 1 << 20)).toBe(131_072)
    // 200,000 held blocks: uncapped, 524,288 of capacity would be a 628 KB filter, 2.4 × the bound.
    const held = 200_000
    const filter = blockFilter({ capacity: filterCapacity(held, 64), falsePositiveRate: 0.01 })
    const cids = Array.from({ length: held }, (_, i) => `held-${i}`)
    for (const cid of cids) filter.add(cid)
    const message = encodeGossip({ type: 'have', filter: filter.encode(), blocks: held })
    expect(message.length).toBeLessThanOrEqual(GOSSIP_MAX_MESSAGE_BYTES)
    const received = decodeGossip(message)
    if (received.type !== 'have') throw new Error('expected a have message')
    const decoded = decodeBlockFilter(received.filter)
    expect(cids.every(c => decoded.has(c))).toBe(true)
  })
})
