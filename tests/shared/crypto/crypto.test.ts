import { describe, it, expect } from 'vitest'
import { ed25519 } from '@noble/curves/ed25519.js'
import { readFileSync } from 'node:fs'
import { BASE64_32_BYTES, decodeBase64, fromHex, toHex, toBase64, fromBase64 } from '../../../shared/crypto/bytes.ts'
import { rawCid, verifyCid, parseCid } from '../../../shared/crypto/cid.ts'
import { generateDataKey, open, seal } from '../../../shared/crypto/seal.ts'
import { sign, signingKeyFromSecret, verify } from '../../../shared/crypto/sign.ts'
import { generateWrapKey, unwrapKey, unwrapKeys, wrapKeys } from '../../../shared/crypto/wrap.ts'
import { canonicalBytes } from '../../../shared/manifest/canonical.ts'
import { IntegrityError, InvalidInputError } from '../../../shared/errors/errors.ts'

const vectors = (name: string): any[] => JSON.parse(readFileSync(new URL(`../../vectors/${name}`, import.meta.url), 'utf8'))

describe('ed25519 (RFC 8032 vectors)', () => {
  for (const v of vectors('ed25519-rfc8032.json')) {
    it(v.name, () => {
      const key = signingKeyFromSecret(fromHex(v.secretKey))
      expect(toHex(key.publicKey)).toBe(v.publicKey)
      const sig = sign(fromHex(v.message), key.secretKey)
      expect(toHex(sig)).toBe(v.signature)
      expect(verify(sig, fromHex(v.message), key.publicKey)).toBe(true)
      const flipped = sig.slice(); flipped[5] = (flipped[5] as number) ^ 1
      expect(verify(flipped, fromHex(v.message), key.publicKey)).toBe(false)
      expect(verify(sig.subarray(0, 10), fromHex(v.message), key.publicKey)).toBe(false)
    })
  }

  it('refuses every signature under a small-order public key (R = identity, S = 0 would verify any message)', () => {
    const identityR = new Uint8Array(64)
    identityR[0] = 1
    for (const hex of JSON.parse(readFileSync(new URL('../../vectors/ed25519-small-order.json', import.meta.url), 'utf8')).points as string[]) {
      expect(ed25519.Point.fromBytes(fromHex(hex), true).isSmallOrder(), hex).toBe(true)
      for (const message of ['hello', 'blockfed/upload@2\nanything']) {
        expect(verify(identityR, new TextEncoder().encode(message), fromHex(hex)), hex).toBe(false)
      }
    }
  })
})

describe('canonical JSON (RFC 8785 vectors)', () => {
  for (const v of vectors('jcs-rfc8785.json')) {
    it(v.name, () => {
      expect(new TextDecoder().decode(canonicalBytes(JSON.parse(v.input)))).toBe(v.output)
    })
  }

  it('refuses what RFC 8785 cannot write with InvalidInputError naming where it is', () => {
    expect(() => canonicalBytes({ a: [1, { b: 'x\ud800' }] })).toThrow(InvalidInputError)
    expect(() => canonicalBytes({ a: [1, { b: 'x\ud800' }] })).toThrow(/Lone surrogate.*\(at a\.1\.b\)/)
    expect(() => canonicalBytes({ ok: 1, ['k\udc00']: 2 })).toThrow(/\(at k\udc00\)/)
    expect(() => canonicalBytes([Infinity])).toThrow(/\(at 0\)/)
    // A cycle is a bug of the caller's, not bad input: its own error, at once (the walk looking
    // for a bad value ran out of memory on one).
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    expect(() => canonicalBytes(cyclic)).toThrow(/Circular reference/)
    expect(() => canonicalBytes(cyclic)).not.toThrow(InvalidInputError)
  })
})

describe('CIDs', () => {
  it('matches the IPFS CID of the empty raw block', async () => {
    for (const v of vectors('cid.json')) expect(await rawCid(fromHex(v.bytesHex))).toBe(v.cid)
  })
  it('verifies content and rejects a flipped bit', async () => {
    const bytes = new TextEncoder().encode('blockfed')
    const cid = await rawCid(bytes)
    await verifyCid(cid, bytes)
    const bad = bytes.slice(); bad[0] = (bad[0] as number) ^ 0x80
    await expect(verifyCid(cid, bad)).rejects.toThrow(/does not hash to its CID/)
  })
  it('rejects strings that are not canonical v1 CIDs', () => {
    expect(() => parseCid('../../etc/passwd')).toThrow(/is not a CID/)
    expect(() => parseCid('QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR')).toThrow(/not a CIDv1/)
  })
})

describe('block sealing (AES-256-GCM)', () => {
  it('round-trips, and refuses a tampered byte, a wrong key and a truncation', async () => {
    const key = generateDataKey()
    const plain = globalThis.crypto.getRandomValues(new Uint8Array(4096))
    const sealed = await seal(plain, key)
    expect(await open(sealed, key)).toEqual(plain)
    const tampered = sealed.slice(); tampered[100] = (tampered[100] as number) ^ 1
    await expect(open(tampered, key)).rejects.toThrow(/authentication failed/)
    await expect(open(sealed, generateDataKey())).rejects.toThrow(/authentication failed/)
    await expect(open(sealed.subarray(0, 20), key)).rejects.toThrow(/not a sealed block/)
  })
  it('never seals the same plaintext to the same bytes twice', async () => {
    const key = generateDataKey()
    const plain = new Uint8Array(64)
    expect(toHex(await seal(plain, key))).not.toBe(toHex(await seal(plain, key)))
  })
})

describe('key wrapping (X25519 + HKDF + XChaCha20-Poly1305)', () => {
  it('unwraps only for the recipient and only for the block it was bound to', () => {
    const recipient = generateWrapKey()
    const other = generateWrapKey()
    const key = generateDataKey()
    const { ephemeralPublicKey, keys } = wrapKeys(recipient.publicKey, [{ keyId: 'k1', key, aad: 'bafyblock' }])
    const wrapped = keys[0]!.wrapped
    expect(unwrapKey(recipient, ephemeralPublicKey, wrapped, 'bafyblock')).toEqual(key)
    expect(() => unwrapKey(other, ephemeralPublicKey, wrapped, 'bafyblock')).toThrow(/authentication failed/)
    expect(() => unwrapKey(recipient, ephemeralPublicKey, wrapped, 'bafyother')).toThrow(/authentication failed/)
  })
  it('unwraps many keys wrapped together, each bound to its own block', () => {
    const recipient = generateWrapKey()
    const data = Array.from({ length: 5 }, (_, i) => ({ keyId: `k${i}`, key: generateDataKey(), aad: `bafyblock${i}` }))
    const { ephemeralPublicKey, keys } = wrapKeys(recipient.publicKey, data)
    expect(unwrapKeys(recipient, ephemeralPublicKey, keys.map((k, i) => ({ wrapped: k.wrapped, aad: data[i]!.aad })))).toEqual(data.map(d => d.key))
    // Swapping two keys' blocks fails: the block CID is each key's associated data.
    expect(() => unwrapKeys(recipient, ephemeralPublicKey, [{ wrapped: keys[0]!.wrapped, aad: data[1]!.aad }])).toThrow('wrapped key for bafyblock1: authentication failed')
    expect(() => unwrapKeys(recipient, ephemeralPublicKey, [{ wrapped: 'AAAA', aad: 'bafyx' }])).toThrow('wrapped key for bafyx: malformed')
    expect(() => unwrapKeys(recipient, 'AAAA', [])).toThrow(/malformed ephemeral public key/)
  })
  it('answers a coordinator\'s bad wrapping fields with IntegrityError, whatever is wrong', () => {
    const recipient = generateWrapKey()
    const { ephemeralPublicKey } = wrapKeys(recipient.publicKey, [])
    const cases: Array<[string, string, RegExp]> = [
      [toBase64(new Uint8Array(32)), toBase64(new Uint8Array(60)), /ephemeral public key is a low-order point/],
      ['!!!!', 'AAAA', /ephemeral public key: not base64/],
      [ephemeralPublicKey, '$$$$', /wrapped key for bafyx: not base64/]
    ]
    for (const [eph, wrapped, message] of cases) {
      let thrown: unknown
      try { unwrapKeys(recipient, eph, [{ wrapped, aad: 'bafyx' }]) } catch (err) { thrown = err }
      expect(thrown, eph).toBeInstanceOf(IntegrityError)
      expect((thrown as Error).message).toMatch(message)
    }
  })
  it('base64 round trip matches RFC 4648 padding', () => {
    expect(toBase64(new TextEncoder().encode('fo'))).toBe('Zm8=')
    expect(new TextDecoder().decode(fromBase64('Zm9vYg=='))).toBe('foob')
    // RFC 4648 §10 vectors, then lengths around the encoder's 12,288-byte pieces.
    const vectors: Array<[string, string]> = [['', ''], ['f', 'Zg=='], ['foo', 'Zm9v'], ['fooba', 'Zm9vYmE='], ['foobar', 'Zm9vYmFy']]
    for (const [plain, encoded] of vectors) expect(toBase64(new TextEncoder().encode(plain))).toBe(encoded)
    for (const n of [12_287, 12_288, 12_289, 100_001]) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 131 + 7) & 255)
      expect(toBase64(bytes)).toBe(Buffer.from(bytes).toString('base64'))
      expect(fromBase64(toBase64(bytes))).toEqual(bytes)
    }
  })
  it('decodeBase64 names the field, and with canonical or bytes refuses what decodes to other bytes or length', () => {
    expect(decodeBase64('Zm8=', 'f', { canonical: true, bytes: 2 })).toEqual(new TextEncoder().encode('fo'))
    expect(decodeBase64('Zm8', 'f')).toEqual(new TextEncoder().encode('fo'))
    const cases: Array<[string, Parameters<typeof decodeBase64>[2], string]> = [
      ['Zm8*', {}, 'f: not base64'],
      // Pad bits not zero: the text of no byte string (RFC 4648 §3.5).
      ['Zm9=', {}, 'f: not base64'],
      ['Zm8', { canonical: true }, 'f: not canonical padded base64'],
      ['', { canonical: true }, 'f: empty'],
      ['Zm8=', { bytes: 3 }, 'f: expected 3 bytes, got 2']
    ]
    for (const [text, options, message] of cases) {
      let thrown: unknown
      try { decodeBase64(text, 'f', options) } catch (err) { thrown = err }
      expect(thrown, text).toBeInstanceOf(InvalidInputError)
      expect((thrown as Error).message).toBe(message)
    }
    expect(() => decodeBase64('Zm9=', 'f', { error: IntegrityError })).toThrow(IntegrityError)
  })
  it('BASE64_32_BYTES takes exactly the canonical texts of 32 bytes', () => {
    for (let i = 0; i < 256; i++) {
      const text = toBase64(Uint8Array.from({ length: 32 }, (_, j) => (j === 31 ? i : j * 7)))
      expect(text, text).toMatch(BASE64_32_BYTES)
    }
    // Every other 44-character text ending in "=" with a valid alphabet: non-zero pad bits.
    const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
    let refused = 0
    for (const c of last) {
      const text = `${'A'.repeat(42)}${c}=`
      let decodes = true
      try { fromBase64(text) } catch { decodes = false }
      expect(BASE64_32_BYTES.test(text), text).toBe(decodes)
      if (!decodes) refused++
    }
    expect(refused).toBe(48)
    expect(BASE64_32_BYTES.test(toBase64(new Uint8Array(31)))).toBe(false)
  })
})
