import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { ctr } from '@noble/ciphers/aes.js'
import { fromHex, toHex } from '../../../shared/crypto/bytes.ts'
import { addInto, subInto } from '../../../aggregation/ring.ts'
import { counterAt, importCtrKey, keystream } from '../../../aggregation/secagg/_ctr.ts'
import { addMaskInto, addMasksInto, expandMask, type MaskTerm } from '../../../aggregation/secagg/prg.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

const vectors = (name: string): any[] => JSON.parse(readFileSync(new URL(`./vectors/${name}`, import.meta.url), 'utf8'))

/** Deterministic test seeds (masks in tests need not be secret). */
function seeds (count: number, salt: number): Uint8Array[] {
  const next = mulberry32(salt)
  return Array.from({ length: count }, () => Uint8Array.from({ length: 32 }, () => Math.floor(next() * 256)))
}

/** The obviously-correct fold: expand every mask whole, then add or subtract it with ring.ts. */
async function slowFold (acc: Uint32Array, terms: MaskTerm[]): Promise<Uint32Array> {
  const out = acc.slice()
  for (const t of terms) (t.sign === 1 ? addInto : subInto)(out, await expandMask(t.seed, acc.length))
  return out
}

describe('AES-256-CTR keystream (NIST SP 800-38A F.5.5)', () => {
  for (const v of vectors('aes256-ctr-sp800-38a.json')) {
    it(`${v.name}, whole and as one-block chunks`, async () => {
      const key = await importCtrKey(fromHex(v.key))
      const plain = fromHex(v.plaintext)
      const xor = (ks: Uint8Array): string => toHex(plain.map((p, i) => p ^ (ks[i] as number)))
      expect(xor(new Uint8Array(await keystream(key, counterAt(fromHex(v.counter), 0), plain.length)))).toBe(v.ciphertext)
      const chunks = await Promise.all([0, 1, 2, 3].map(async b => new Uint8Array(await keystream(key, counterAt(fromHex(v.counter), b), 16))))
      const joined = new Uint8Array(64)
      chunks.forEach((c, b) => joined.set(c, b * 16))
      expect(xor(joined)).toBe(v.ciphertext)
    })
  }

  it('counter continuation wraps the low 64 bits exactly as one WebCrypto call does', async () => {
    const key = await importCtrKey(seeds(1, 1)[0] as Uint8Array)
    const counter0 = fromHex('0123456789abcdeffffffffffffffffe')
    const whole = new Uint8Array(await keystream(key, counterAt(counter0, 0), 64))
    for (let b = 0; b < 4; b++) {
      expect(toHex(new Uint8Array(await keystream(key, counterAt(counter0, b), 16)))).toBe(toHex(whole.subarray(b * 16, b * 16 + 16)))
    }
    expect(toHex(counterAt(counter0, 3))).toBe('0123456789abcdef0000000000000001')
  })
})

describe('expandMask', () => {
  it('is AES-256-CTR from the zero counter, read as little-endian words (checked against @noble/ciphers)', async () => {
    for (const [i, length] of [1, 3, 4, 5, 1000, (1 << 18) + 7].entries()) {
      const seed = seeds(1, 10 + i)[0] as Uint8Array
      const mask = await expandMask(seed, length)
      const reference = ctr(seed, new Uint8Array(16)).encrypt(new Uint8Array(length * 4))
      const view = new DataView(reference.buffer)
      expect(mask.length).toBe(length)
      for (let j = 0; j < length; j += Math.max(1, Math.floor(length / 997))) expect(mask[j]).toBe(view.getUint32(j * 4, true))
      expect(mask[length - 1]).toBe(view.getUint32((length - 1) * 4, true))
    }
  })

  it('gives different masks for different seeds and the same mask for the same seed', async () => {
    const [a, b] = seeds(2, 20) as [Uint8Array, Uint8Array]
    expect(toHex(new Uint8Array((await expandMask(a, 64)).buffer))).toBe(toHex(new Uint8Array((await expandMask(a.slice(), 64)).buffer)))
    expect(toHex(new Uint8Array((await expandMask(a, 64)).buffer))).not.toBe(toHex(new Uint8Array((await expandMask(b, 64)).buffer)))
  })

  it('rejects seeds that are not 32 bytes and bad lengths', async () => {
    await expect(expandMask(new Uint8Array(16), 4)).rejects.toThrow(/expandMask seed: expected a 32-byte seed/)
    await expect(expandMask(new Uint8Array(32), -1)).rejects.toThrow(/expandMask length/)
    expect(await expandMask(new Uint8Array(32), 0)).toHaveLength(0)
  })
})

describe('addMasksInto (chunked, concurrent) against the whole-mask reference', () => {
  // Signs chosen so that the folded groups (up to four terms of one sign) take every size 1–4.
  const signs = (count: number): Array<1 | -1> => Array.from({ length: count }, (_, i) => (i < 7 || i === 9 ? 1 : -1))
  const cases: Array<{ name: string, length: number, terms: number, chunkWords?: number, inFlight?: number }> = [
    { name: 'tiny chunks, many in flight, groups of 4, 3 and 1', length: 1001, terms: 10, chunkWords: 8, inFlight: 5 },
    { name: 'one group in flight, groups of 4 and 2', length: 777, terms: 6, chunkWords: 64, inFlight: 1 },
    { name: 'default chunking over a chunk boundary', length: (1 << 18) + 13, terms: 5 },
    { name: 'a single subtracted term', length: 100, terms: 1 }
  ]
  for (const c of cases) {
    it(c.name, async () => {
      const next = mulberry32(c.length)
      const acc = Uint32Array.from({ length: c.length }, () => Math.floor(next() * 2 ** 32))
      const sign = c.terms === 1 ? [-1 as const] : signs(c.terms)
      const terms: MaskTerm[] = seeds(c.terms, c.length).map((seed, i) => ({ seed, sign: sign[i] as 1 | -1 }))
      const expected = await slowFold(acc, terms)
      const got = await addMasksInto(acc.slice(), terms, { chunkWords: c.chunkWords, inFlight: c.inFlight })
      expect(got).toEqual(expected)
    })
  }

  it('a mask added and then subtracted leaves the vector unchanged; addMaskInto is the one-term case', async () => {
    const [seed] = seeds(1, 99) as [Uint8Array]
    const x = Uint32Array.from({ length: 300 }, (_, i) => i * 2654435761)
    const y = await addMaskInto(x.slice(), seed, 1, { chunkWords: 16 })
    expect(y).not.toEqual(x)
    expect(y).toEqual(await slowFold(x, [{ seed, sign: 1 }]))
    expect(await addMaskInto(y, seed, -1)).toEqual(x)
  })

  it('rejects bad arguments, naming them', async () => {
    const acc = new Uint32Array(8)
    await expect(addMasksInto(acc, [{ seed: new Uint8Array(31), sign: 1 }])).rejects.toThrow(/terms\[0\]\.seed/)
    await expect(addMasksInto(acc, [{ seed: new Uint8Array(32), sign: 2 as 1 }])).rejects.toThrow(/terms\[0\]\.sign/)
    await expect(addMasksInto(acc, [], { chunkWords: 6 })).rejects.toThrow(/chunkWords/)
    await expect(addMasksInto(acc, [], { inFlight: 0 })).rejects.toThrow(/inFlight/)
    await expect(addMasksInto([1, 2] as unknown as Uint32Array, [])).rejects.toThrow(/acc: expected a Uint32Array/)
  })
})
