import { describe, it, expect } from 'vitest'
import { ciphertextCount, pack, packingLayout, unpack } from '../../../aggregation/paillier/layout.ts'
import { ringSum } from '../../../aggregation/ring.ts'
import { IntegrityError, InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const EDGE = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x80000001, 12345] // 0, 1, int32 max, int32 min, −1, −2^31+1

/** Reference for the ring sum: per element, as plain JS numbers reduced mod 2^32 at the end. */
function slowRingSum (xs: Uint32Array[], length: number): Uint32Array {
  const out = new Uint32Array(length)
  for (let i = 0; i < length; i++) {
    let s = 0
    for (const x of xs) s += x[i] as number // < 2^53 for any sane client count
    out[i] = s % 2 ** 32
  }
  return out
}

/** What the decryptor's sum of packed plaintexts is: plain integer addition (Paillier adds mod n, and the layout keeps it below n). */
function addPacked (vectors: bigint[][]): bigint[] {
  return (vectors[0] as bigint[]).map((_, i) => vectors.reduce((s, v) => s + (v[i] as bigint), 0n))
}

describe('Paillier packing layout', () => {
  it('sizes slots as 32 + ⌈log2 maxClients⌉ bits and fits them below n', () => {
    expect(packingLayout({ bits: 2048 }, 10)).toEqual({ keyBits: 2048, maxClients: 10, slotBits: 36, slotsPerCiphertext: 56 })
    expect(packingLayout({ bits: 2048 }, 1024)).toMatchObject({ slotBits: 42, slotsPerCiphertext: 48 })
    expect(packingLayout({ bits: 2048 }, 1025)).toMatchObject({ slotBits: 43 })
    expect(packingLayout({ bits: 1024 }, 1)).toMatchObject({ slotBits: 32, slotsPerCiphertext: 31 })
    for (const bits of [1024, 2048, 3072]) {
      for (const maxClients of [1, 2, 3, 10, 1000, 65536]) {
        const l = packingLayout({ bits }, maxClients)
        expect(maxClients * (2 ** 32 - 1)).toBeLessThan(2 ** l.slotBits) // no carry between slots
        expect(l.slotsPerCiphertext * l.slotBits).toBeLessThanOrEqual(bits - 1) // plaintext sum < 2^(bits−1) ≤ n
      }
    }
    expect(ciphertextCount(packingLayout({ bits: 2048 }, 10), 100_000)).toBe(1786)
    expect(() => packingLayout({ bits: 2048 }, 0)).toThrow(/maxClients/)
    expect(() => packingLayout({ bits: 2048 }, 1.5)).toThrow(/maxClients/)
  })

  it('round-trips edge values through pack and unpack (one client)', () => {
    const layout = packingLayout({ bits: 1024 }, 4)
    for (const length of [1, 7, layout.slotsPerCiphertext, layout.slotsPerCiphertext + 1, 3 * layout.slotsPerCiphertext - 1]) {
      const values = Uint32Array.from({ length }, (_, i) => EDGE[i % EDGE.length] as number)
      const packed = pack(values, layout)
      expect(packed).toHaveLength(ciphertextCount(layout, length))
      expect(unpack(packed, layout, length, 1)).toEqual(values)
    }
  })

  it('puts value i in plaintext ⌊i/s⌋, slot i mod s, as x XOR 2^31', () => {
    const layout = packingLayout({ bits: 1024 }, 2) // 33-bit slots, 31 per plaintext
    const values = new Uint32Array(33)
    values[0] = 5
    values[1] = 0xffffffff
    values[31] = 0x80000000
    const [m0, m1] = pack(values, layout)
    const slot = (m: bigint, j: number): bigint => (m >> BigInt(33 * j)) & ((1n << 33n) - 1n)
    expect(slot(m0 as bigint, 0)).toBe(0x80000005n)
    expect(slot(m0 as bigint, 1)).toBe(0x7fffffffn)
    expect(slot(m0 as bigint, 2)).toBe(0x80000000n) // 0 → offset
    expect(slot(m1 as bigint, 0)).toBe(0n) // int32 min → 0
    expect(slot(m1 as bigint, 2)).toBe(0n) // padding
    expect((m1 as bigint) >> 66n).toBe(0n)
  })

  it('the sum of packed vectors unpacks to the ring sum, up to maxClients clients', () => {
    const rand = mulberry32(2024)
    const layout = packingLayout({ bits: 1024 }, 10)
    const length = 3 * layout.slotsPerCiphertext + 5
    for (const clients of [1, 2, 3, 10]) {
      const xs = Array.from({ length: clients }, (_, c) => Uint32Array.from({ length }, (_, i) =>
        i < EDGE.length ? EDGE[(i + c) % EDGE.length] as number : Math.floor(rand() * 2 ** 32)))
      const got = unpack(addPacked(xs.map(x => pack(x, layout))), layout, length, clients)
      expect(got).toEqual(slowRingSum(xs, length))
      expect(got).toEqual(ringSum(xs, length))
    }
    // Every client at the extreme: the slot is full but never carries.
    for (const v of [0, 0xffffffff, 0x7fffffff, 0x80000000]) {
      const xs = Array.from({ length: 10 }, () => new Uint32Array(length).fill(v))
      expect(unpack(addPacked(xs.map(x => pack(x, layout))), layout, length, 10)).toEqual(slowRingSum(xs, length))
    }
  })

  it('gives a signed int32 sum back exactly when it fits', () => {
    const layout = packingLayout({ bits: 1024 }, 8)
    const ints = [[-5, 2 ** 31 - 1, -(2 ** 31), 100], [3, -(2 ** 30), 2 ** 30, -100], [1, -(2 ** 30) + 1, 2 ** 30 - 1, 7]]
    const xs = ints.map(v => Uint32Array.from(v.map(x => x >>> 0)))
    const got = new Int32Array(unpack(addPacked(xs.map(x => pack(x, layout))), layout, 4, 3).buffer)
    expect([...got]).toEqual([-1, 0, -1, 7])
  })

  it('rejects sums no honest packing produces, and bad arguments, naming them', () => {
    const layout = packingLayout({ bits: 1024 }, 4)
    const packed = pack(new Uint32Array(40), layout)
    const tooBig = [...packed]
    tooBig[0] = (packed[0] as bigint) | (1n << BigInt(layout.slotBits * layout.slotsPerCiphertext))
    expect(() => unpack(tooBig, layout, 40, 1)).toThrow(IntegrityError)
    const overSlot = [...packed]
    overSlot[0] = (packed[0] as bigint) + ((1n << 32n) + 5n) // slot 0 now holds > 2^32 − 1 for one client
    expect(() => unpack(overSlot, layout, 40, 1)).toThrow(/^packed sum 0, slot 0: exceeds what 1 clients can add up to$/)
    const padding = [...packed]
    padding[1] = (packed[1] as bigint) | (1n << BigInt(layout.slotBits * (layout.slotsPerCiphertext - 1)))
    expect(() => unpack(padding, layout, 40, 1)).toThrow(/padding slot/)
    expect(() => unpack(packed, layout, 40, 5)).toThrow(/clients: expected an integer in \[1, 4\]/)
    expect(() => unpack(packed, layout, 40, 0)).toThrow(InvalidInputError)
    expect(() => unpack(packed, layout, 100, 1)).toThrow(/sums: expected 4 plaintexts/)
    expect(() => pack(new Uint32Array(0), layout)).toThrow(/length/)
  })
})
