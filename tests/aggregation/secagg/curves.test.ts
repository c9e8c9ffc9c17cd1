import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { fromHex, toHex } from '../../../shared/crypto/bytes.ts'
import { curves, nobleCurves, webCryptoCurves } from '../../../aggregation/secagg/_curves.ts'

const vectors = (path: string): any[] => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'))
const paths = { webcrypto: webCryptoCurves, noble: nobleCurves }

for (const [name, ops] of Object.entries(paths)) {
  describe(`X25519 / Ed25519 through ${name}`, () => {
    for (const v of vectors('./vectors/x25519-rfc7748.json')) {
      it(v.name, async () => {
        expect(toHex(await ops.publicKey(fromHex(v.alicePrivate)))).toBe(v.alicePublic)
        expect(toHex(await ops.publicKey(fromHex(v.bobPrivate)))).toBe(v.bobPublic)
        expect(toHex(await ops.agree(fromHex(v.alicePrivate), fromHex(v.bobPublic)))).toBe(v.shared)
        expect(toHex(await ops.agree(fromHex(v.bobPrivate), fromHex(v.alicePublic)))).toBe(v.shared)
      })
    }

    it('refuses small-order public keys (u = 0, u = 1), whose shared secret would be public', async () => {
      const secret = globalThis.crypto.getRandomValues(new Uint8Array(32))
      const one = new Uint8Array(32)
      one[0] = 1
      await expect(ops.agree(secret, new Uint8Array(32))).rejects.toThrow(/small-order or malformed/)
      await expect(ops.agree(secret, one)).rejects.toThrow(/small-order or malformed/)
      await expect(ops.agree(secret, new Uint8Array(31))).rejects.toThrow(/expected 32 bytes/)
    })

    it('refuses every Ed25519 signature under a small-order public key', async () => {
      const identityR = new Uint8Array(64)
      identityR[0] = 1
      for (const hex of (vectors('../../vectors/ed25519-small-order.json') as unknown as { points: string[] }).points) {
        expect(await ops.verify(identityR, new Uint8Array([1, 2, 3]), fromHex(hex)), hex).toBe(false)
      }
    })

    for (const v of vectors('../../vectors/ed25519-rfc8032.json')) {
      it(`verifies ${v.name} and refuses a flipped bit`, async () => {
        const sig = fromHex(v.signature)
        expect(await ops.verify(sig, fromHex(v.message), fromHex(v.publicKey))).toBe(true)
        sig[3] = (sig[3] as number) ^ 1
        expect(await ops.verify(sig, fromHex(v.message), fromHex(v.publicKey))).toBe(false)
        expect(await ops.verify(sig.subarray(0, 10), fromHex(v.message), fromHex(v.publicKey))).toBe(false)
      })
    }
  })
}

describe('the two paths agree', () => {
  it('on random keys', async () => {
    for (let i = 0; i < 5; i++) {
      const a = globalThis.crypto.getRandomValues(new Uint8Array(32))
      const b = globalThis.crypto.getRandomValues(new Uint8Array(32))
      const [pa, pb] = [await nobleCurves.publicKey(a), await nobleCurves.publicKey(b)]
      expect(toHex(await webCryptoCurves.publicKey(a))).toBe(toHex(pa))
      expect(toHex(await webCryptoCurves.agree(a, pb))).toBe(toHex(await nobleCurves.agree(a, pb)))
    }
  })

  it('and the native path is the one chosen on Node 24', async () => {
    expect(await curves()).toBe(webCryptoCurves)
  })
})
