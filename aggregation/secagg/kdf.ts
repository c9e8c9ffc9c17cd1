/**
 * Key derivation for pairwise masking: every key the protocol uses comes out of HKDF-SHA256
 * (RFC 5869) with an `info` that names its purpose, the round and the parties, so no key can be
 * used for a second purpose, in a second round, or between a second pair of clients. Fields are
 * length-prefixed before they are concatenated, so ("ab", "c") and ("a", "bc") never collide.
 */
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { concatBytes, utf8ToBytes } from '../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { KEY_BYTES } from './constants.ts'

const PURPOSE = {
  advertise: 'blockfed/secagg/advertise/v1',
  selfMask: 'blockfed/secagg/self-mask/v1',
  pairMask: 'blockfed/secagg/pair-mask/v1',
  shareKey: 'blockfed/secagg/share-key/v1',
  shareAad: 'blockfed/secagg/share-aad/v1',
  shareDigest: 'blockfed/secagg/share-digest/v1',
  consistency: 'blockfed/secagg/consistency/v1',
  graph: 'blockfed/secagg/graph/v1'
} as const

/** u32be(length) ‖ bytes for each field: an unambiguous encoding of a tuple of strings and bytes. */
export function encodeFields (...fields: Array<string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = []
  for (const f of fields) {
    const bytes = typeof f === 'string' ? utf8ToBytes(f) : f
    const length = new Uint8Array(4)
    new DataView(length.buffer).setUint32(0, bytes.length)
    parts.push(length, bytes)
  }
  return concatBytes(...parts)
}

function derive (ikm: Uint8Array, what: string, info: Uint8Array): Uint8Array {
  if (ikm.length !== KEY_BYTES) throw new InvalidInputError(`${what}: expected ${KEY_BYTES} bytes of key material, got ${ikm.length}`)
  return hkdf(sha256, ikm, undefined, info, KEY_BYTES)
}

/** The two ids of a pair in sorted order, so both ends derive the same key. */
function ordered (a: string, b: string): [string, string] {
  if (a === b) throw new InvalidInputError(`pair key: a client (${a}) has no pair key with itself`)
  return a < b ? [a, b] : [b, a]
}

/** Bytes an advertise message's Ed25519 signature covers: round, sender and both public keys. */
export function advertiseTranscript (roundId: string, id: string, cPublicKey: Uint8Array, sPublicKey: Uint8Array): Uint8Array {
  return encodeFields(PURPOSE.advertise, roundId, id, cPublicKey, sPublicKey)
}

/** SHA-256 of a survivor list U3 (sorted ids, each length-prefixed): hashed once, signed and checked t times. */
export function survivorsDigest (survivors: readonly string[]): Uint8Array {
  return sha256(encodeFields(...survivors))
}

/**
 * Bytes a ConsistencyCheck signature covers: the round, the digest of the survivor list U3, and
 * the signer with the X25519 public keys it advertised in this run of the round. The keys make
 * the signature fresh: the round id is the server's choice and may be offered again, but the keys
 * are new each time, so a signature from an earlier run never verifies in a later one.
 */
export function consistencyTranscript (roundId: string, survivors: Uint8Array, id: string, cPublicKey: Uint8Array, sPublicKey: Uint8Array): Uint8Array {
  return encodeFields(PURPOSE.consistency, roundId, survivors, id, cPublicKey, sPublicKey)
}

/** PRG seed of client `id`'s self mask, from its random b_u (Bonawitz et al. 2017, §4, round 2). */
export function selfMaskSeed (b: Uint8Array, roundId: string, id: string): Uint8Array {
  return derive(b, 'self-mask seed', encodeFields(PURPOSE.selfMask, roundId, id))
}

/** PRG seed s_uv of the pairwise mask between `a` and `b`, from their X25519 shared secret. */
export function pairMaskSeed (shared: Uint8Array, roundId: string, a: string, b: string): Uint8Array {
  return derive(shared, 'pair-mask seed', encodeFields(PURPOSE.pairMask, roundId, ...ordered(a, b)))
}

/** AEAD key for the Shamir shares exchanged between `a` and `b`, from their c-key agreement. */
export function shareKey (shared: Uint8Array, roundId: string, a: string, b: string): Uint8Array {
  return derive(shared, 'share key', encodeFields(PURPOSE.shareKey, roundId, ...ordered(a, b)))
}

/** Associated data of one encrypted share pair: binds it to its round, sender and recipient. */
export function shareAad (roundId: string, from: string, to: string): Uint8Array {
  return encodeFields(PURPOSE.shareAad, roundId, from, to)
}

/**
 * SHA-256 commitment to one Shamir share `owner` dealt `holder`, of its self-mask seed b (`self`)
 * or its mask key s^SK (`key`). The owner gives the server these with its sealed shares (ShareKeys);
 * the server checks each share an answerer reveals against its digest, so a wrong share is left
 * out on arrival, naming who sent it, and never reaches the interpolation (review 47a: with exactly
 * t shares a crafted one gave a wrong sum, and only spares, when they came, could catch it).
 * Hiding rests on the secrets: each is 256 random bits, so a digest of a share (of fewer than t
 * shares, or of the secret itself at t = 1) cannot be checked against guesses of it.
 */
export function shareDigest (roundId: string, owner: string, holder: string, kind: 'self' | 'key', share: Uint8Array): Uint8Array {
  return sha256(encodeFields(PURPOSE.shareDigest, roundId, owner, holder, kind, share))
}

/** Key of the graph's permutation stream: the round's public seed, bound to the round. */
export function graphKey (seed: Uint8Array, roundId: string): Uint8Array {
  return derive(seed, 'graph seed', encodeFields(PURPOSE.graph, roundId))
}
