/**
 * Content identifiers. Sealed blocks and shards are CIDv1 with the `raw` codec and a sha2-256
 * multihash, so any IPFS node can store and serve them by the same address
 * (https://github.com/multiformats/cid). Manifests are CIDv1 with the `json` codec over their
 * RFC 8785 canonical bytes.
 */
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as json from 'multiformats/codecs/json'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { IntegrityError, InvalidInputError } from '../errors/errors.ts'
import { sha256 } from './hash.ts'

const SHA2_256 = sha256Hasher.code

/** CIDv1(raw, sha2-256) of `bytes`, as its base32 string. */
export async function rawCid (bytes: Uint8Array): Promise<string> {
  return CID.createV1(raw.code, createDigest(SHA2_256, await sha256(bytes))).toString()
}

/** CIDv1(json, sha2-256) of canonical JSON bytes, as its base32 string. */
export async function jsonCid (canonicalBytes: Uint8Array): Promise<string> {
  return CID.createV1(json.code, createDigest(SHA2_256, await sha256(canonicalBytes))).toString()
}

/**
 * Parses a CID string from outside and checks it is one blockfed can hold: v1, raw or json
 * codec, sha2-256. Throws InvalidInputError naming `what` otherwise.
 */
export function parseCid (text: string, what = 'cid'): CID {
  let cid: CID
  try {
    cid = CID.parse(text)
  } catch (err) {
    throw new InvalidInputError(`${what}: "${text.slice(0, 80)}" is not a CID`, { cause: err })
  }
  if (cid.version !== 1 || (cid.code !== raw.code && cid.code !== json.code) || cid.multihash.code !== SHA2_256) {
    throw new InvalidInputError(`${what}: ${text} is not a CIDv1 (raw or json, sha2-256)`)
  }
  if (cid.toString() !== text) throw new InvalidInputError(`${what}: ${text} is not in canonical base32 form`)
  return cid
}

/** Throws IntegrityError unless `bytes` hash to `cid`'s digest. */
export async function verifyCid (cid: string, bytes: Uint8Array, what = 'block'): Promise<void> {
  const parsed = parseCid(cid, what)
  const digest = await sha256(bytes)
  const expected = parsed.multihash.digest
  let same = digest.length === expected.length
  for (let i = 0; same && i < digest.length; i++) same = digest[i] === expected[i]
  if (!same) throw new IntegrityError(`${what} ${cid}: content does not hash to its CID`)
}
