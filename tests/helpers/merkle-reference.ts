/**
 * A slow, obviously-correct RFC 9162 Merkle tree over a list of entries, for checking what a
 * ledger serves: MTH (§2.1.1), PATH (§2.1.3.1) and PROOF/SUBPROOF (§2.1.4.1) written straight
 * from the RFC's recursive definitions, hashing with SHA-256 directly — none of it goes through
 * shared/ledger/merkle.ts. Cost is O(n) per call; fine for the few dozen entries of a test.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { concatBytes } from '../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

/** The RFC's k: the largest power of two smaller than n (n > 1). */
function largestPowerOfTwoBelow (n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

export interface ReferenceTree {
  /** MTH(D[0:n]). */
  root: (n: number) => Uint8Array
  /** PATH(m, D[0:n]): the inclusion proof of entry m in the tree of n entries. */
  inclusion: (m: number, n: number) => Uint8Array[]
  /** PROOF(m, D[0:n]) for 0 < m ≤ n: the consistency proof from m entries to n. */
  consistency: (m: number, n: number) => Uint8Array[]
}

export function referenceTree (entries: readonly Uint8Array[]): ReferenceTree {
  const mth = (d: readonly Uint8Array[]): Uint8Array => {
    if (d.length === 0) return sha256(new Uint8Array(0))
    if (d.length === 1) return sha256(concatBytes(Uint8Array.of(0x00), d[0] as Uint8Array))
    const k = largestPowerOfTwoBelow(d.length)
    return sha256(concatBytes(Uint8Array.of(0x01), mth(d.slice(0, k)), mth(d.slice(k))))
  }
  const path = (m: number, d: readonly Uint8Array[]): Uint8Array[] => {
    if (d.length <= 1) return []
    const k = largestPowerOfTwoBelow(d.length)
    return m < k ? [...path(m, d.slice(0, k)), mth(d.slice(k))] : [...path(m - k, d.slice(k)), mth(d.slice(0, k))]
  }
  const subproof = (m: number, d: readonly Uint8Array[], whole: boolean): Uint8Array[] => {
    if (m === d.length) return whole ? [] : [mth(d)]
    const k = largestPowerOfTwoBelow(d.length)
    return m <= k
      ? [...subproof(m, d.slice(0, k), whole), mth(d.slice(k))]
      : [...subproof(m - k, d.slice(k), false), mth(d.slice(0, k))]
  }
  const prefix = (n: number): readonly Uint8Array[] => {
    if (!Number.isInteger(n) || n < 0 || n > entries.length) throw new InvalidInputError(`reference tree: size ${n} is outside 0..${entries.length}`)
    return entries.slice(0, n)
  }
  return {
    root: n => mth(prefix(n)),
    inclusion: (m, n) => path(m, prefix(n)),
    consistency: (m, n) => subproof(m, prefix(n), true)
  }
}
