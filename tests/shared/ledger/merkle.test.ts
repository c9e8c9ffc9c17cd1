import { describe, it, expect } from 'vitest'
import { readFileSync } from 'node:fs'
import { sha256 } from '@noble/hashes/sha2.js'
import { concatBytes, fromHex, toHex } from '../../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidInputError, NotFoundError } from '../../../shared/errors/errors.ts'
import { memoryTree } from '../../../shared/ledger/memory-tree.ts'
import {
  appendLeaf, consistencyProof, consistencyProofLength, emptyRoot, HASH_SIZE, inclusionProof, inclusionProofLength,
  leafHash, nodeHash, rootHash, verifyConsistency, verifyInclusion, type SubtreeReader
} from '../../../shared/ledger/merkle.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

// ---- slow reference, written straight from RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 ----
// It hashes with SHA-256 directly (not through the module's leafHash/nodeHash) and works on
// leaf ranges D[start:end]. The memo only caches MTH, a pure function of the range.

/** The RFC's k: the largest power of two smaller than n (n > 1). */
function refK (n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

interface Reference {
  MTH (n: number): Uint8Array
  /** MTH(D[start:end]). */
  MTHRange (start: number, end: number): Uint8Array
  PATH (m: number, n: number): Uint8Array[]
  PROOF (m: number, n: number): Uint8Array[]
}

/**
 * `entryAt(i)` is the i-th log entry. `key` names a range for the memo: (start, end) in general,
 * just the length when every entry is the same (then MTH depends on nothing else).
 */
function reference (entryAt: (i: number) => Uint8Array, key: (start: number, end: number) => string): Reference {
  const memo = new Map<string, Uint8Array>()
  function mth (start: number, end: number): Uint8Array {
    const id = key(start, end)
    const cached = memo.get(id)
    if (cached !== undefined) return cached
    const n = end - start
    let hash: Uint8Array
    if (n === 0) hash = sha256(new Uint8Array(0))
    else if (n === 1) hash = sha256(concatBytes(Uint8Array.of(0x00), entryAt(start)))
    else {
      const k = refK(n)
      hash = sha256(concatBytes(Uint8Array.of(0x01), mth(start, start + k), mth(start + k, end)))
    }
    memo.set(id, hash)
    return hash
  }
  // PATH(m, D[n]) with m counted from `start`.
  function path (m: number, start: number, end: number): Uint8Array[] {
    const n = end - start
    if (n === 1) return []
    const k = refK(n)
    if (m < k) return [...path(m, start, start + k), mth(start + k, end)]
    return [...path(m - k, start + k, end), mth(start, start + k)]
  }
  function subproof (m: number, start: number, end: number, b: boolean): Uint8Array[] {
    const n = end - start
    if (m === n) return b ? [] : [mth(start, end)]
    const k = refK(n)
    if (m <= k) return [...subproof(m, start, start + k, b), mth(start + k, end)]
    return [...subproof(m - k, start + k, end, false), mth(start, start + k)]
  }
  return {
    MTH: (n) => mth(0, n),
    MTHRange: mth,
    PATH: (m, n) => path(m, 0, n),
    // The RFC defines PROOF for 0 < m < n; m = n gives {} by its own recursion, m = 0 is empty by blockfed's convention.
    PROOF: (m, n) => (m === 0 ? [] : subproof(m, 0, n, true))
  }
}

// ---- helpers ----

const vectors = JSON.parse(readFileSync(new URL('../../vectors/rfc9162-merkle.json', import.meta.url), 'utf8')) as {
  leafInputs: string[]
  nodeHashes: string[][]
  rootHashes: string[]
  inclusion: Array<{ name: string, leafIdx: number, treeSize: number, leafHash: string, root: string, proof: string[], wantErr: boolean, blockfedWantErr?: boolean }>
  consistency: Array<{ name: string, size1: number, size2: number, root1: string, root2: string, proof: string[], wantErr: boolean, blockfedWantErr?: boolean }>
}

const hex = (hashes: readonly Uint8Array[]): string[] => hashes.map(toHex)

function flipBit (hash: Uint8Array, bit: number): Uint8Array {
  const out = hash.slice()
  out[bit >> 3] = (out[bit >> 3] as number) ^ (1 << (bit & 7))
  return out
}

function withElement (proof: readonly Uint8Array[], j: number, value: Uint8Array): Uint8Array[] {
  const out = proof.slice()
  out[j] = value
  return out
}

const sameHashes = (a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean =>
  a.length === b.length && a.every((h, i) => toHex(h) === toHex(b[i] as Uint8Array))

/** Seeded entries of 0..40 bytes, so leaves differ in length as well as content. */
function seededEntries (count: number, seed: number): Uint8Array[] {
  const rand = mulberry32(seed)
  return Array.from({ length: count }, () => Uint8Array.from({ length: Math.floor(rand() * 41) }, () => Math.floor(rand() * 256)))
}

/** A reader that counts its reads. */
function counting (read: SubtreeReader): { read: SubtreeReader, count: () => number, reset: () => void } {
  let n = 0
  return { read: (level, index) => { n++; return read(level, index) }, count: () => n, reset: () => { n = 0 } }
}

/**
 * A virtual tree of `size` identical entries: every complete subtree at a level has the same
 * hash, so trees of up to 2^53 − 1 leaves can be read without storing them. Refuses (throws)
 * any subtree that is not complete inside the tree, like real storage would.
 */
function uniformTree (entry: Uint8Array, size: number): SubtreeReader {
  const levels = [sha256(concatBytes(Uint8Array.of(0x00), entry))]
  for (let l = 1; l <= 53; l++) levels.push(sha256(concatBytes(Uint8Array.of(0x01), levels[l - 1]!, levels[l - 1]!)))
  return (level, index) => {
    if ((index + 1) * 2 ** level > size) throw new NotFoundError(`no subtree ${level}/${index} in size ${size}`)
    return levels[level]!
  }
}

// ---- tests ----

describe('RFC 9162 vectors (transparency-dev/merkle, from the RFC 6962 reference tests)', () => {
  const tree = memoryTree()
  for (const input of vectors.leafInputs) tree.append(fromHex(input))

  it('hashes leaves, complete subtrees and the empty tree as the vectors do', () => {
    expect(toHex(emptyRoot())).toBe(vectors.rootHashes[0])
    vectors.leafInputs.forEach((input, i) => expect(toHex(leafHash(fromHex(input)))).toBe(vectors.nodeHashes[0]![i]))
    vectors.nodeHashes.forEach((row, level) => row.forEach((h, index) => expect(toHex(tree.read(level, index))).toBe(h)))
    expect(toHex(nodeHash(tree.read(0, 0), tree.read(0, 1)))).toBe(vectors.nodeHashes[1]![0])
  })

  it('gives the root of every size 0..8', () => {
    const ref = reference((i) => fromHex(vectors.leafInputs[i]!), (a, b) => `${a},${b}`)
    for (let n = 0; n <= 8; n++) {
      expect(toHex(tree.root(n))).toBe(vectors.rootHashes[n])
      expect(toHex(ref.MTH(n))).toBe(vectors.rootHashes[n])
    }
  })

  it('produces the happy-path proofs byte for byte', () => {
    let inclusions = 0
    let consistencies = 0
    for (const v of vectors.inclusion) {
      if (v.wantErr || v.root !== vectors.rootHashes[v.treeSize]) continue
      expect(hex(tree.inclusionProof(v.leafIdx, v.treeSize)), v.name).toEqual(v.proof)
      inclusions++
    }
    for (const v of vectors.consistency) {
      if (v.wantErr || v.size2 > 8 || v.root2 !== vectors.rootHashes[v.size2]) continue
      expect(hex(tree.consistencyProof(v.size1, v.size2)), v.name).toEqual(v.proof)
      consistencies++
    }
    expect(inclusions).toBe(5)
    expect(consistencies).toBe(5)
  })

  it('accepts exactly the probes the vectors accept', () => {
    const outcome = (f: () => void): 'ok' | 'error' => {
      try { f(); return 'ok' } catch (err) {
        // Only the typed failures count: a TypeError would be a bug, not a rejection.
        if (err instanceof IntegrityError || err instanceof InvalidInputError) return 'error'
        throw err
      }
    }
    for (const v of vectors.inclusion) {
      const want = (v.blockfedWantErr ?? v.wantErr) ? 'error' : 'ok'
      expect(outcome(() => verifyInclusion(v.leafIdx, v.treeSize, fromHex(v.leafHash), v.proof.map(fromHex), fromHex(v.root))), v.name).toBe(want)
    }
    for (const v of vectors.consistency) {
      const want = (v.blockfedWantErr ?? v.wantErr) ? 'error' : 'ok'
      expect(outcome(() => verifyConsistency(v.size1, v.size2, fromHex(v.root1), fromHex(v.root2), v.proof.map(fromHex))), v.name).toBe(want)
    }
  })
})

describe('against the RFC recursive definitions, every size up to 64', () => {
  const N = 64
  const entries = seededEntries(N, 9162)
  const ref = reference((i) => entries[i]!, (a, b) => `${a},${b}`)
  const tree = memoryTree()
  for (const e of entries) tree.append(e)
  const roots = Array.from({ length: N + 1 }, (_, n) => tree.root(n))

  it('rootHash equals MTH for every size 0..64', () => {
    for (let n = 0; n <= N; n++) expect(toHex(roots[n]!), `size ${n}`).toBe(toHex(ref.MTH(n)))
  })

  it('every inclusion proof (index < size ≤ 64) equals PATH and verifies', () => {
    for (let n = 1; n <= N; n++) {
      for (let i = 0; i < n; i++) {
        const proof = tree.inclusionProof(i, n)
        expect(hex(proof), `index ${i} size ${n}`).toEqual(hex(ref.PATH(i, n)))
        expect(inclusionProofLength(i, n)).toBe(proof.length)
        verifyInclusion(i, n, leafHash(entries[i]!), proof, roots[n]!)
      }
    }
  })

  it('every consistency proof (0 ≤ from ≤ to ≤ 64) equals PROOF and verifies', () => {
    for (let n = 0; n <= N; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = tree.consistencyProof(m, n)
        expect(hex(proof), `from ${m} to ${n}`).toEqual(hex(ref.PROOF(m, n)))
        expect(consistencyProofLength(m, n)).toBe(proof.length)
        verifyConsistency(m, n, roots[m]!, roots[n]!, proof)
      }
    }
  })
})

describe('tampered inclusion proofs are rejected (every index < size ≤ 64)', () => {
  const N = 64
  const entries = seededEntries(N, 6962)
  const tree = memoryTree()
  for (const e of entries) tree.append(e)
  const roots = Array.from({ length: N + 1 }, (_, n) => tree.root(n))
  const leaves = entries.map(leafHash)
  const rejects = (f: () => void): void => { expect(f).toThrow(IntegrityError) }

  it('a flipped bit anywhere in the proof, the leaf or the root', () => {
    // Every proof position of every pair gets a flip; the flipped bit rotates so that across
    // the pairs each position sees every one of its 256 bits.
    let turn = 0
    for (let n = 1; n <= N; n++) {
      for (let i = 0; i < n; i++) {
        const proof = tree.inclusionProof(i, n)
        for (let j = 0; j < proof.length; j++) {
          rejects(() => verifyInclusion(i, n, leaves[i]!, withElement(proof, j, flipBit(proof[j]!, (turn * 37 + j) % 256)), roots[n]!))
        }
        rejects(() => verifyInclusion(i, n, flipBit(leaves[i]!, turn % 256), proof, roots[n]!))
        rejects(() => verifyInclusion(i, n, leaves[i]!, proof, flipBit(roots[n]!, (turn * 11) % 256)))
        turn++
      }
    }
    // And a full sweep, all bits of all positions, for a few shapes.
    for (const [i, n] of [[5, 8], [0, 64], [63, 64], [37, 45], [12, 13]] as const) {
      const proof = tree.inclusionProof(i, n)
      for (let j = 0; j < proof.length; j++) {
        for (let bit = 0; bit < 8 * HASH_SIZE; bit++) {
          rejects(() => verifyInclusion(i, n, leaves[i]!, withElement(proof, j, flipBit(proof[j]!, bit)), roots[n]!))
        }
      }
    }
  })

  it('truncated, extended, and replayed for another index or size', () => {
    const extra = sha256(Uint8Array.of(1, 2, 3))
    for (let n = 1; n <= N; n++) {
      for (let i = 0; i < n; i++) {
        const proof = tree.inclusionProof(i, n)
        const root = roots[n]!
        if (proof.length > 0) {
          rejects(() => verifyInclusion(i, n, leaves[i]!, proof.slice(0, -1), root))
          rejects(() => verifyInclusion(i, n, leaves[i]!, proof.slice(1), root))
        }
        rejects(() => verifyInclusion(i, n, leaves[i]!, [...proof, extra], root))
        rejects(() => verifyInclusion(i, n, leaves[i]!, [...proof, root], root))
        rejects(() => verifyInclusion(i, n, leaves[i]!, [extra, ...proof], root))
        // Another index of the same tree: with this leaf, and with that index's own leaf.
        for (const j of new Set([i - 1, i + 1, i + (i % 2 === 0 ? 1 : -1), 0, n - 1])) {
          if (j === i || j < 0 || j >= n) continue
          rejects(() => verifyInclusion(j, n, leaves[i]!, proof, root))
          rejects(() => verifyInclusion(j, n, leaves[j]!, proof, root))
        }
        // Off-by-one sizes, each with that size's real root (the root a verifier would hold).
        for (const m of [n - 1, n + 1]) {
          if (m > N || i >= m) continue
          rejects(() => verifyInclusion(i, m, leaves[i]!, proof, roots[m]!))
        }
      }
    }
  })
})

describe('tampered consistency proofs are rejected (every 0 ≤ from ≤ to ≤ 64)', () => {
  const N = 64
  const entries = seededEntries(N, 2025)
  const ref = reference((i) => entries[i]!, (a, b) => `${a},${b}`)
  const tree = memoryTree()
  for (const e of entries) tree.append(e)
  const roots = Array.from({ length: N + 1 }, (_, n) => tree.root(n))
  const rejects = (f: () => void): void => { expect(f).toThrow(IntegrityError) }

  it('a flipped bit anywhere in the proof or either root', () => {
    let turn = 0
    for (let n = 1; n <= N; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = tree.consistencyProof(m, n)
        for (let j = 0; j < proof.length; j++) {
          rejects(() => verifyConsistency(m, n, roots[m]!, roots[n]!, withElement(proof, j, flipBit(proof[j]!, (turn * 37 + j) % 256))))
        }
        rejects(() => verifyConsistency(m, n, flipBit(roots[m]!, turn % 256), roots[n]!, proof))
        // From the empty tree every toRoot is consistent, so only m > 0 can catch a flipped toRoot.
        if (m > 0) rejects(() => verifyConsistency(m, n, roots[m]!, flipBit(roots[n]!, (turn * 11) % 256), proof))
        turn++
      }
    }
    for (const [m, n] of [[6, 8], [3, 64], [63, 64], [37, 45], [1, 2], [32, 63]] as const) {
      const proof = tree.consistencyProof(m, n)
      for (let j = 0; j < proof.length; j++) {
        for (let bit = 0; bit < 8 * HASH_SIZE; bit++) {
          rejects(() => verifyConsistency(m, n, roots[m]!, roots[n]!, withElement(proof, j, flipBit(proof[j]!, bit))))
        }
      }
    }
  })

  it('truncated, extended, swapped roots, and replayed for off-by-one sizes', () => {
    const extra = sha256(Uint8Array.of(4, 5, 6))
    let replays = 0
    for (let n = 0; n <= N; n++) {
      for (let m = 0; m <= n; m++) {
        const proof = tree.consistencyProof(m, n)
        if (proof.length > 0) {
          rejects(() => verifyConsistency(m, n, roots[m]!, roots[n]!, proof.slice(0, -1)))
          rejects(() => verifyConsistency(m, n, roots[m]!, roots[n]!, proof.slice(1)))
        }
        rejects(() => verifyConsistency(m, n, roots[m]!, roots[n]!, [...proof, extra]))
        rejects(() => verifyConsistency(m, n, roots[m]!, roots[n]!, [extra, ...proof]))
        if (m < n) rejects(() => verifyConsistency(m, n, roots[n]!, roots[m]!, proof))
        // Off-by-one sizes with their real roots. A claim that is true anyway is skipped — that
        // happens only for empty proofs (from 0, or 0→1 versus 1→1); a non-empty proof never
        // proves a neighbouring pair of sizes.
        for (const [m2, n2] of [[m - 1, n], [m + 1, n], [m, n - 1], [m, n + 1]] as const) {
          if (m2 < 0 || n2 > N || m2 > n2) continue
          if (sameHashes(ref.PROOF(m2, n2), proof)) { expect(proof).toHaveLength(0); continue }
          rejects(() => verifyConsistency(m2, n2, roots[m2]!, roots[n2]!, proof))
          replays++
        }
      }
    }
    expect(replays).toBe(8320 - 130) // 8,320 neighbouring pairs, 130 of them true claims with empty proofs
  })

  it('from > to is an argument error, not a failed proof', () => {
    for (let n = 0; n < N; n++) {
      expect(() => verifyConsistency(n + 1, n, roots[n + 1]!, roots[n]!, [])).toThrow(InvalidInputError)
      expect(() => tree.consistencyProof(n + 1, n)).toThrow(/from must not exceed to/)
    }
  })
})

describe('edge conventions', () => {
  const tree = memoryTree()
  for (const e of seededEntries(10, 1)) tree.append(e)

  it('from = 0: any tree extends the empty one, with an empty proof and the empty root', () => {
    for (let n = 0; n <= 10; n++) verifyConsistency(0, n, emptyRoot(), tree.root(n), [])
    expect(() => verifyConsistency(0, 5, emptyRoot(), tree.root(5), [tree.root(5)])).toThrow(/must be empty, has 1 hashes/)
    expect(() => verifyConsistency(0, 5, tree.root(3), tree.root(5), [])).toThrow(/fromRoot is not the root of the empty tree/)
  })

  it('from = to: empty proof and equal roots', () => {
    verifyConsistency(7, 7, tree.root(7), tree.root(7), [])
    expect(() => verifyConsistency(7, 7, tree.root(7), tree.root(8), [])).toThrow(/roots of the same size differ/)
    expect(() => verifyConsistency(7, 7, tree.root(7), tree.root(7), [tree.root(7)])).toThrow(IntegrityError)
  })

  it('error messages say which proof and which check failed', () => {
    const proof = tree.inclusionProof(5, 8)
    expect(() => verifyInclusion(5, 8, tree.read(0, 4), proof, tree.root(8))).toThrow(/inclusion proof of leaf 5 in tree size 8: computed root does not match/)
    expect(() => verifyInclusion(5, 8, tree.read(0, 5), proof.slice(1), tree.root(8))).toThrow(/leaf 5 in tree size 8: has 2 hashes, expected 3/)
    const cproof = tree.consistencyProof(3, 10)
    expect(() => verifyConsistency(3, 10, tree.root(3), tree.root(9), cproof)).toThrow(/from size 3 to size 10: computed new root does not match toRoot/)
    expect(() => verifyConsistency(3, 10, tree.root(4), tree.root(10), cproof)).toThrow(/computed old root does not match fromRoot/)
  })

  it('argument checks name the argument', () => {
    const h = tree.root()
    const cases: Array<[() => unknown, RegExp]> = [
      [() => rootHash(-1, tree.read), /size must be an integer/],
      [() => rootHash(1.5, tree.read), /size must be an integer/],
      [() => rootHash(Number.NaN, tree.read), /size must be an integer/],
      [() => rootHash(2 ** 53, tree.read), /size must be an integer/],
      [() => inclusionProof(3, 3, tree.read), /index must be below size 3/],
      [() => inclusionProof(-1, 3, tree.read), /index must be an integer/],
      [() => consistencyProof(4, 3, tree.read), /from must not exceed to/],
      [() => consistencyProof(1, Infinity, tree.read), /to must be an integer/],
      [() => verifyInclusion(0, 2, h, [h.subarray(1)], h), /proof\[0\] must be a 32-byte hash/],
      [() => verifyInclusion(0, 2, h, [h, h.subarray(1)], h), /proof\[1\] must be a 32-byte hash/],
      [() => verifyInclusion(0, 2, new Uint8Array(33), [h], h), /leaf must be a 32-byte hash/],
      [() => verifyInclusion(0, 2, h, [h], 'root' as unknown as Uint8Array), /root must be a 32-byte hash/],
      [() => verifyInclusion(0, 0, h, [], h), /index must be below size 0/],
      [() => verifyConsistency(1, 2, h.subarray(2), h, [h]), /fromRoot must be a 32-byte hash/],
      [() => verifyConsistency(1, 2, h, h, 'proof' as unknown as Uint8Array[]), /proof must be an array/],
      [() => verifyConsistency(3, 2, h, h, []), /from must not exceed to/],
      [() => appendLeaf(0, new Uint8Array(31), tree.read), /leaf must be a 32-byte hash/],
      [() => appendLeaf(-2, h, tree.read), /index must be an integer/],
      [() => nodeHash(h, new Uint8Array(0)), /right must be a 32-byte hash/],
      [() => leafHash('entry' as unknown as Uint8Array), /entry must be a Uint8Array/]
    ]
    for (const [call, message] of cases) {
      expect(call).toThrow(InvalidInputError)
      expect(call).toThrow(message)
    }
  })
})

describe('storage: appendLeaf and reads', () => {
  it('a 1000-leaf tree stores < 2 subtrees per leaf and reads O(1) per append, O(log n) at worst', () => {
    const entries = seededEntries(1000, 42)
    const ref = reference((i) => entries[i]!, (a, b) => `${a},${b}`)
    const store = new Map<string, Uint8Array>()
    const reader = counting((level, index) => {
      const hash = store.get(`${level}/${index}`)
      if (hash === undefined) throw new NotFoundError(`missing ${level}/${index}`)
      return hash
    })
    let worst = 0
    for (let i = 0; i < entries.length; i++) {
      reader.reset()
      for (const s of appendLeaf(i, leafHash(entries[i]!), reader.read)) {
        expect(store.has(`${s.level}/${s.index}`)).toBe(false) // each subtree is completed once
        // A stored subtree is the MTH of exactly its leaves.
        expect(toHex(s.hash)).toBe(toHex(ref.MTHRange(s.index * 2 ** s.level, (s.index + 1) * 2 ** s.level)))
        store.set(`${s.level}/${s.index}`, s.hash)
      }
      worst = Math.max(worst, reader.count())
    }
    // 2n − popcount(n) complete subtrees exist in a tree of n leaves.
    expect(store.size).toBe(2 * 1000 - 6)
    expect(store.size / 1000).toBeLessThanOrEqual(2)
    expect(worst).toBeLessThanOrEqual(Math.ceil(Math.log2(1000)))
    expect(toHex(rootHash(1000, reader.read))).toBe(toHex(ref.MTH(1000)))

    // Proofs and roots read O(log n) subtrees.
    const budget = 2 * Math.ceil(Math.log2(1000)) + 2
    for (const [a, b] of [[0, 1000], [999, 1000], [511, 1000], [512, 1000], [1, 999], [700, 777]] as const) {
      reader.reset(); inclusionProof(a, b, reader.read); expect(reader.count()).toBeLessThanOrEqual(budget)
      reader.reset(); consistencyProof(a, b, reader.read); expect(reader.count()).toBeLessThanOrEqual(budget)
      reader.reset(); rootHash(b, reader.read); expect(reader.count()).toBeLessThanOrEqual(budget)
    }
  })

  it('a missing or malformed stored subtree surfaces as an error, never as a hash', () => {
    const tree = memoryTree()
    for (const e of seededEntries(4, 7)) tree.append(e)
    expect(() => rootHash(5, tree.read)).toThrow(NotFoundError)
    expect(() => inclusionProof(0, 6, tree.read)).toThrow(NotFoundError)
    expect(() => consistencyProof(2, 7, tree.read)).toThrow(NotFoundError)
    expect(() => appendLeaf(5, leafHash(new Uint8Array(1)), tree.read)).toThrow(NotFoundError) // skipped leaf 4
    expect(() => tree.root(5)).toThrow(/size 5 is beyond the tree's size 4/)
    expect(() => tree.inclusionProof(0, 5)).toThrow(NotFoundError)
    // A careless reader that returns undefined or a wrong-sized value instead of throwing.
    const sloppy = ((level: number, index: number) => (level === 2 ? undefined : tree.read(level, index))) as SubtreeReader
    expect(() => rootHash(4, sloppy)).toThrow(/subtree at level 2 index 0 is not stored/)
    const short: SubtreeReader = (level, index) => tree.read(level, index).subarray(1)
    expect(() => rootHash(4, short)).toThrow(IntegrityError)
  })

  it('memoryTree: append returns the index, defaults to the current size, and a failed append changes nothing', () => {
    const tree = memoryTree()
    expect(tree.size).toBe(0)
    expect(toHex(tree.root())).toBe(toHex(emptyRoot()))
    expect(tree.append(new Uint8Array([1]))).toBe(0)
    expect(tree.append(new Uint8Array([2]))).toBe(1)
    const before = toHex(tree.root())
    expect(() => tree.append('x' as unknown as Uint8Array)).toThrow(InvalidInputError)
    expect(tree.size).toBe(2)
    expect(toHex(tree.root())).toBe(before)
    expect(hex(tree.inclusionProof(1))).toEqual(hex(tree.inclusionProof(1, 2)))
    expect(tree.consistencyProof(1)).toHaveLength(1)
    expect(() => tree.read(0, 2)).toThrow(NotFoundError)
  })
})

describe('sizes beyond 32 bits, up to 2^53 − 1 (a virtual tree of identical entries)', () => {
  const entry = new TextEncoder().encode('blockfed')
  const ref = reference(() => entry, (a, b) => String(b - a))
  const sizes = [2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, 3 * 2 ** 45 + 7, Number.MAX_SAFE_INTEGER]
  const budget = 2 * 54 + 2

  it('roots and inclusion proofs match the reference, verify, and read O(log n)', () => {
    for (const n of sizes) {
      const reader = counting(uniformTree(entry, n))
      const root = rootHash(n, reader.read)
      expect(toHex(root), `size ${n}`).toBe(toHex(ref.MTH(n)))
      for (const i of [0, 1, Math.floor(n / 3), n - 2, n - 1]) {
        reader.reset()
        const proof = inclusionProof(i, n, reader.read)
        expect(reader.count()).toBeLessThanOrEqual(budget)
        expect(hex(proof), `index ${i} size ${n}`).toEqual(hex(ref.PATH(i, n)))
        verifyInclusion(i, n, leafHash(entry), proof, root)
        for (let j = 0; j < proof.length; j++) {
          expect(() => verifyInclusion(i, n, leafHash(entry), withElement(proof, j, flipBit(proof[j]!, j)), root)).toThrow(IntegrityError)
        }
      }
    }
  })

  it('consistency proofs match the reference, verify, and read O(log n)', () => {
    for (const n of sizes) {
      const reader = counting(uniformTree(entry, n))
      const toRoot = rootHash(n, reader.read)
      for (const m of [1, 2 ** 31 + 1, Math.floor(n / 2), n - 1]) {
        reader.reset()
        const proof = consistencyProof(m, n, reader.read)
        expect(reader.count()).toBeLessThanOrEqual(budget)
        expect(hex(proof), `from ${m} to ${n}`).toEqual(hex(ref.PROOF(m, n)))
        verifyConsistency(m, n, ref.MTH(m), toRoot, proof)
        expect(() => verifyConsistency(m, n, ref.MTH(m), toRoot, proof.slice(0, -1))).toThrow(IntegrityError)
      }
    }
  })

  it('appendLeaf completes one subtree per trailing 1 bit of the index, beyond 32 bits too', () => {
    // 2^53 − 2 is even: nothing above the leaf completes.
    expect(appendLeaf(Number.MAX_SAFE_INTEGER - 1, leafHash(entry), uniformTree(entry, Number.MAX_SAFE_INTEGER))).toHaveLength(1)
    // 2^52 − 1 has 52 trailing ones: its append completes every level up to the 2^52-leaf subtree.
    const up = appendLeaf(2 ** 52 - 1, leafHash(entry), uniformTree(entry, 2 ** 52))
    expect(up).toHaveLength(53)
    expect(up[52]).toMatchObject({ level: 52, index: 0 })
    expect(toHex(up[52]!.hash)).toBe(toHex(ref.MTH(2 ** 52)))
  })
})

