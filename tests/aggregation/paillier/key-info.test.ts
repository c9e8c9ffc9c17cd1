/**
 * readKeyInfo (aggregation/paillier/key-info.ts): a key description travels through the
 * coordinator (round offers carry it), so a reader recomputes what follows from n and refuses a
 * description that disagrees with itself. Review 39b: no test read a description other than an
 * honest one; the keyId-from-n and minClients checks could be removed with every test green.
 * The key is the fixed 1024-bit one of paillier-vectors.json (no key generation).
 */
import { describe, it, expect } from 'vitest'
import { publicKeyId, secretKeyFromPrimes } from '../../../aggregation/paillier/keys.ts'
import { packingLayout } from '../../../aggregation/paillier/layout.ts'
import { describeKey, readKeyInfo } from '../../../aggregation/paillier/key-info.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'
import vectors from './paillier-vectors.json' with { type: 'json' }

const hex = (s: string): bigint => BigInt('0x' + s)
const { publicKey } = secretKeyFromPrimes(hex(vectors.p), hex(vectors.q))

describe('readKeyInfo', () => {
  it('reads an honest description back to the same key, layout and keyId', async () => {
    const info = await describeKey(publicKey, packingLayout(publicKey, 10), 3)
    const key = await readKeyInfo(info, info.keyId.toUpperCase())
    expect(key.publicKey.n).toBe(publicKey.n)
    expect(key.keyId).toBe(await publicKeyId(publicKey))
    expect(key.layout).toEqual(packingLayout(publicKey, 10))
    expect(key.minClients).toBe(3)
  })

  it('refuses a keyId that is not the fingerprint of n (the pin is compared with what n hashes to, never with the claim)', async () => {
    const info = await describeKey(publicKey, packingLayout(publicKey, 10), 3)
    const claimed = { ...info, keyId: 'ab'.repeat(32) }
    await expect(readKeyInfo(claimed)).rejects.toThrow(IntegrityError)
    await expect(readKeyInfo(claimed)).rejects.toThrow(/advertised keyId abab\S* does not match n/)
    await expect(readKeyInfo(claimed, 'ab'.repeat(32))).rejects.toThrow(/does not match n/)
  })

  it('refuses a minClients above maxClients, and a layout that does not follow from n', async () => {
    const info = await describeKey(publicKey, packingLayout(publicKey, 10), 3)
    await expect(readKeyInfo({ ...info, minClients: 11 })).rejects.toThrow(/minClients 11 exceeds maxClients 10/)
    await expect(readKeyInfo({ ...info, slotsPerCiphertext: info.slotsPerCiphertext + 1 })).rejects.toThrow(/packing layout does not follow/)
    await expect(readKeyInfo({ ...info, bits: info.bits + 1 })).rejects.toThrow(/advertised \d+ bits, n has \d+/)
  })
})
