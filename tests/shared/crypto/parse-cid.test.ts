/**
 * parseCid accepts only the canonical spelling of a CIDv1 blockfed can hold (raw or json codec,
 * sha2-256, lower-case base32). CIDs are cache file names, map keys and ledger `manifestCid`
 * values: two spellings of one block, or a CID of another codec or hash, must not both pass.
 * Review 38b found that no test refused a base58btc spelling of a v1 CID (mutant C2,
 * shared/crypto/cid.ts:41) nor a v1 CID of another codec (mutant C3, cid.ts:38).
 */
import { describe, it, expect } from 'vitest'
import { CID } from 'multiformats/cid'
import { base58btc } from 'multiformats/bases/base58'
import { base32 } from 'multiformats/bases/base32'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher, sha512 as sha512Hasher } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import * as json from 'multiformats/codecs/json'
import { jsonCid, parseCid, rawCid } from '../../../shared/crypto/cid.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'

const DAG_PB = 0x70
const DAG_CBOR = 0x71
const bytes = new TextEncoder().encode('blockfed block')

describe('parseCid', () => {
  it('accepts the canonical base32 CIDv1 of a raw block and of a json manifest, sha2-256', async () => {
    for (const text of [await rawCid(bytes), await jsonCid(bytes)]) {
      expect(text.startsWith('b')).toBe(true)
      expect(parseCid(text).toString()).toBe(text)
    }
    expect(parseCid(await rawCid(bytes)).code).toBe(raw.code)
    expect(parseCid(await jsonCid(bytes)).code).toBe(json.code)
  })

  it('refuses the base58btc spelling (z…) of a CIDv1 it would accept in base32', async () => {
    const canonical = await rawCid(bytes)
    const z = CID.parse(canonical).toString(base58btc)
    expect(z.startsWith('z')).toBe(true)
    expect(CID.parse(z).toString()).toBe(canonical) // the same CID, only spelled otherwise
    expect(() => parseCid(z)).toThrow(InvalidInputError)
    expect(() => parseCid(z)).toThrow(/is not in canonical base32 form/)
    const zJson = CID.parse(await jsonCid(bytes)).toString(base58btc)
    expect(() => parseCid(zJson)).toThrow(/is not in canonical base32 form/)
  })

  it('refuses a CIDv0 (Qm…, base58btc dag-pb)', async () => {
    const v0 = CID.createV0(createDigest(sha256Hasher.code, CID.parse(await rawCid(bytes)).multihash.digest)).toString()
    expect(v0.startsWith('Qm')).toBe(true)
    expect(() => parseCid(v0)).toThrow(InvalidInputError)
    expect(() => parseCid(v0)).toThrow(/not a CIDv1 \(raw or json, sha2-256\)/)
  })

  it('refuses a canonical base32 CIDv1 of another codec (dag-pb, dag-cbor) over the same sha2-256 digest', async () => {
    const digest = CID.parse(await rawCid(bytes)).multihash
    for (const code of [DAG_PB, DAG_CBOR]) {
      const text = CID.createV1(code, digest).toString(base32)
      expect(CID.parse(text).toString()).toBe(text) // canonical form: only the codec is wrong
      expect(() => parseCid(text), `codec 0x${code.toString(16)}`).toThrow(InvalidInputError)
      expect(() => parseCid(text), `codec 0x${code.toString(16)}`).toThrow(/not a CIDv1 \(raw or json, sha2-256\)/)
    }
  })

  it('refuses a canonical base32 raw CIDv1 whose multihash is not sha2-256', async () => {
    const text = CID.createV1(raw.code, await sha512Hasher.digest(bytes)).toString()
    expect(() => parseCid(text)).toThrow(/not a CIDv1 \(raw or json, sha2-256\)/)
  })

  it('names what it was parsing in the refusal', async () => {
    const z = CID.parse(await rawCid(bytes)).toString(base58btc)
    expect(() => parseCid(z, 'block 3')).toThrow(/^block 3: /)
  })
})
