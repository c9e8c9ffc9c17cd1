import { describe, it, expect, beforeAll } from 'vitest'
const randomBytes = (n: number): Uint8Array => { const out = new Uint8Array(n); for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536))); return out }
import { defaultReedSolomon, erasureCoder, type ErasureCoder } from '../../../shared/blocks/erasure.ts'

let coder: ErasureCoder
beforeAll(async () => { coder = await erasureCoder(defaultReedSolomon, { k: 4, m: 2 }) })

describe('Reed-Solomon 4+2', () => {
  it('rebuilds from every choice of 4 of the 6 shards', async () => {
    // Sealed blocks are never shorter than 29 bytes (version, IV, tag).
    for (const length of [29, 1023, 4096 + 3, 300_001]) {
      const data = randomBytes(length)
      const shards = coder.encode(data)
      expect(shards).toHaveLength(6)
      expect(shards.every(s => s.length === coder.shardSize(length))).toBe(true)
      for (let a = 0; a < 6; a++) {
        for (let b = a + 1; b < 6; b++) {
          const some = shards.map((s, i) => (i === a || i === b ? undefined : s.slice()))
          expect(await coder.decode(some, length)).toEqual(data)
        }
      }
    }
  })
  it('fails cleanly with fewer than 4 shards', async () => {
    const shards = coder.encode(new Uint8Array(100))
    await expect(coder.decode([shards[0], undefined, undefined, undefined, shards[4], shards[5]], 100)).rejects.toThrow(/only 3 of 6 shards intact; need 4/)
  })
  it('treats a shard of the wrong size as missing', async () => {
    const data = new Uint8Array(400).fill(9)
    const shards: Array<Uint8Array | undefined> = coder.encode(data)
    shards[1] = new Uint8Array(3)
    expect(await coder.decode(shards, 400)).toEqual(data)
  })
})
