/**
 * Merkle tree maths of the version ledger, RFC 9162 §2.1 (the RFC 6962 tree with SHA-256):
 * leaf and node hashing with domain-separation prefixes, tree heads (MTH), inclusion proofs
 * (audit paths) and consistency proofs, with their verification.
 *
 * Storage model: the log stores every COMPLETE subtree hash once, when the append that
 * completes it happens — (level, index) covers leaves [index·2^level, (index+1)·2^level).
 * Complete subtrees never change in an append-only log, so the root of any past size and
 * every proof are assembled from O(log n) of them without ever rehashing leaves.
 *
 * Everything here is synchronous (noble SHA-256, not WebCrypto): appends run inside SQLite
 * transactions through the synchronous `node:sqlite`. Sizes and indices are plain numbers up
 * to 2^53 − 1, so no bitwise operators (they truncate to 32 bits) — only exact float
 * arithmetic on integers below 2^53.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { IntegrityError, InvalidInputError, NotFoundError } from '../errors/errors.ts'

/** Bytes of every leaf, node and root hash (SHA-256). */
export const HASH_SIZE = 32

const LEAF_PREFIX = 0x00
const NODE_PREFIX = 0x01

/**
 * Hash of a log entry as a leaf: SHA-256(0x00 ‖ entry) (RFC 9162 §2.1.1). The prefix keeps a
 * leaf from ever being passed off as an interior node (second-preimage defence).
 * @example leafHash(new Uint8Array()) // 6e340b9c…, the leaf hash of the empty entry
 */
export function leafHash (entry: Uint8Array): Uint8Array {
  if (!(entry instanceof Uint8Array)) throw new InvalidInputError('entry must be a Uint8Array')
  const buf = new Uint8Array(1 + entry.length)
  buf[0] = LEAF_PREFIX
  buf.set(entry, 1)
  return sha256(buf)
}

/**
 * Hash of an interior node: SHA-256(0x01 ‖ left ‖ right) (RFC 9162 §2.1.1).
 * @example nodeHash(leafHash(a), leafHash(b)) // root of the two-leaf tree [a, b]
 */
export function nodeHash (left: Uint8Array, right: Uint8Array): Uint8Array {
  checkHash(left, 'left')
  checkHash(right, 'right')
  return hashPair(left, right)
}

/** Root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1). */
export function emptyRoot (): Uint8Array {
  return sha256(new Uint8Array(0))
}

/**
 * Hash of the COMPLETE subtree at `level` covering leaves [index·2^level, (index+1)·2^level);
 * level 0 = leaf hashes. Synchronous (node:sqlite is synchronous). Throws if absent.
 */
export type SubtreeReader = (level: number, index: number) => Uint8Array

/** One complete subtree hash, as `appendLeaf` hands it to storage. */
export interface StoredSubtree { level: number, index: number, hash: Uint8Array }

/**
 * The complete subtrees that appending leaf number `index` (0-based, = old size) completes,
 * including the leaf itself at level 0: [{level:0,index,hash:leaf}, {level:1,...}, ...].
 * The caller stores them; the tree's internal hashes are exactly these stored complete
 * subtrees. O(log n) reads (one per trailing 1 bit of `index`, so one on average).
 * @example
 * for (const s of appendLeaf(size, leafHash(entry), read)) store(s.level, s.index, s.hash)
 */
export function appendLeaf (index: number, leaf: Uint8Array, read: SubtreeReader): StoredSubtree[] {
  checkCount(index, 'index', MAX_SIZE - 1)
  checkHash(leaf, 'leaf')
  const completed: StoredSubtree[] = [{ level: 0, index, hash: leaf }]
  let hash = leaf
  let level = 0
  let i = index
  // A right child completes its parent; the parent may itself be a right child, and so on.
  while (i % 2 === 1) {
    hash = hashPair(readSubtree(read, level, i - 1), hash)
    level++
    i = (i - 1) / 2
    completed.push({ level, index: i, hash })
  }
  return completed
}

/**
 * MTH of the first `size` leaves (RFC 9162 §2.1.1), from O(log n) stored complete subtrees:
 * one per 1 bit of `size`, folded right to left.
 * @example rootHash(tree.size, tree.read)
 */
export function rootHash (size: number, read: SubtreeReader): Uint8Array {
  checkCount(size, 'size')
  if (size === 0) return emptyRoot()
  return rangeHash(0, size, read)
}

/**
 * RFC 9162 §2.1.3.1 inclusion proof (audit path) of leaf `index` in the tree of `size`, in
 * RFC order (the sibling nearest the leaf first), O(log n) reads.
 * @example verifyInclusion(i, n, leaf, inclusionProof(i, n, read), rootHash(n, read))
 */
export function inclusionProof (index: number, size: number, read: SubtreeReader): Uint8Array[] {
  checkCount(size, 'size')
  checkIndex(index, size)
  // PATH(m, D[a:b]) walked top-down: each step keeps the half holding the leaf and records
  // the other half's MTH. Every left half D[a:a+k] is a complete subtree (one read); a right
  // half D[a+k:b] is complete too once the walk has left the right edge of the tree, so only
  // one right half ever costs more than one read.
  const path: Uint8Array[] = []
  let a = 0
  let b = size
  while (b - a > 1) {
    const { k, level } = split(b - a)
    if (index < a + k) {
      path.push(rangeHash(a + k, b, read))
      b = a + k
    } else {
      path.push(readSubtree(read, level, a / k))
      a += k
    }
  }
  return path.reverse()
}

/**
 * RFC 9162 §2.1.4.1 consistency proof between sizes `from` ≤ `to`, O(log n) reads. Empty when
 * `from` is 0 or equals `to` (nothing to prove).
 * @example verifyConsistency(m, n, rootHash(m, read), rootHash(n, read), consistencyProof(m, n, read))
 */
export function consistencyProof (from: number, to: number, read: SubtreeReader): Uint8Array[] {
  checkSizes(from, to)
  if (from === 0 || from === to) return []
  // SUBPROOF(m, D[a:b], b) walked top-down; `m` counts the old tree's leaves inside [a, b).
  const proof: Uint8Array[] = []
  let a = 0
  let b = to
  let m = from
  let onOldRightEdge = true // the RFC's flag `b`: the old tree's root is a node of this subtree
  while (m !== b - a) {
    const { k, level } = split(b - a)
    if (m <= k) {
      proof.push(rangeHash(a + k, b, read))
      b = a + k
    } else {
      proof.push(readSubtree(read, level, a / k))
      a += k
      m -= k
      onOldRightEdge = false
    }
  }
  // The verifier knows the old root, so it needs this node only when it is not that root.
  if (!onOldRightEdge) proof.push(rangeHash(a, b, read))
  return proof.reverse()
}

/**
 * Number of hashes in the inclusion proof of leaf `index` in the tree of `size` — lets a
 * caller reject a malformed proof before hashing anything.
 */
export function inclusionProofLength (index: number, size: number): number {
  checkCount(size, 'size')
  checkIndex(index, size)
  let length = 0
  let a = 0
  let b = size
  while (b - a > 1) {
    const { k } = split(b - a)
    if (index < a + k) b = a + k
    else a += k
    length++
  }
  return length
}

/** Number of hashes in the consistency proof between sizes `from` ≤ `to`. */
export function consistencyProofLength (from: number, to: number): number {
  checkSizes(from, to)
  if (from === 0 || from === to) return 0
  let length = 0
  let a = 0
  let b = to
  let m = from
  let onOldRightEdge = true
  while (m !== b - a) {
    const { k } = split(b - a)
    if (m <= k) {
      b = a + k
    } else {
      a += k
      m -= k
      onOldRightEdge = false
    }
    length++
  }
  return onOldRightEdge ? length : length + 1
}

/**
 * RFC 9162 §2.1.3.2: checks that `leaf` (a leaf hash) is leaf `index` of the tree of `size`
 * whose root is `root`. Throws IntegrityError whose message says what failed (index, size,
 * which check) — never returns false. Argument errors throw InvalidInputError.
 * @example verifyInclusion(5, 8, leafHash(entry), proof, checkpointRoot)
 */
export function verifyInclusion (index: number, size: number, leaf: Uint8Array, proof: readonly Uint8Array[], root: Uint8Array): void {
  checkCount(size, 'size')
  checkIndex(index, size)
  checkHash(leaf, 'leaf')
  checkHash(root, 'root')
  checkProof(proof)
  const what = `inclusion proof of leaf ${index} in tree size ${size}`
  const expected = inclusionProofLength(index, size)
  if (proof.length !== expected) throw new IntegrityError(`${what}: has ${proof.length} hashes, expected ${expected}`)

  // The RFC's steps, with halving for its right shifts (fn, sn can exceed 32 bits). After the
  // length check the two `sn` checks cannot fire; they stay as the RFC's own guard.
  let fn = index
  let sn = size - 1
  let r = leaf
  for (const p of proof) {
    if (sn === 0) throw new IntegrityError(`${what}: proof is longer than the path to the root`)
    if (fn % 2 === 1 || fn === sn) {
      r = hashPair(p, r)
      while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn) }
    } else {
      r = hashPair(r, p)
    }
    fn = half(fn)
    sn = half(sn)
  }
  if (sn !== 0) throw new IntegrityError(`${what}: proof is shorter than the path to the root`)
  if (!equalHashes(r, root)) throw new IntegrityError(`${what}: computed root does not match the expected root`)
}

/**
 * RFC 9162 §2.1.4.2: checks that the tree of size `to` with root `toRoot` extends the tree of
 * size `from` with root `fromRoot`. Throws IntegrityError whose message says what failed —
 * never returns false. from == to: proof must be empty and roots equal. from == 0: proof must
 * be empty (any tree extends the empty one), and `fromRoot` must be the empty tree's root.
 * @example verifyConsistency(seen.size, next.size, seen.root, next.root, proof)
 */
export function verifyConsistency (from: number, to: number, fromRoot: Uint8Array, toRoot: Uint8Array, proof: readonly Uint8Array[]): void {
  checkSizes(from, to)
  checkHash(fromRoot, 'fromRoot')
  checkHash(toRoot, 'toRoot')
  checkProof(proof)
  const what = `consistency proof from size ${from} to size ${to}`
  if (from === 0 || from === to) {
    if (proof.length !== 0) throw new IntegrityError(`${what}: must be empty, has ${proof.length} hashes`)
    if (from === 0 && !equalHashes(fromRoot, emptyRoot())) throw new IntegrityError(`${what}: fromRoot is not the root of the empty tree`)
    if (from === to && !equalHashes(fromRoot, toRoot)) throw new IntegrityError(`${what}: the two roots of the same size differ`)
    return
  }
  const expected = consistencyProofLength(from, to)
  if (proof.length !== expected) throw new IntegrityError(`${what}: has ${proof.length} hashes, expected ${expected}`)

  // RFC steps 2–7. When `from` is a power of two the old root is itself a node of the new
  // tree, and the proof leaves it out: start from fromRoot instead.
  const path = isPowerOfTwo(from) ? [fromRoot, ...proof] : proof
  let fn = from - 1
  let sn = to - 1
  while (fn % 2 === 1) { fn = half(fn); sn = half(sn) }
  let fr = path[0] as Uint8Array
  let sr = fr
  for (let i = 1; i < path.length; i++) {
    const c = path[i] as Uint8Array
    if (sn === 0) throw new IntegrityError(`${what}: proof is longer than the path to the root`)
    if (fn % 2 === 1 || fn === sn) {
      fr = hashPair(c, fr)
      sr = hashPair(c, sr)
      while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn) }
    } else {
      sr = hashPair(sr, c)
    }
    fn = half(fn)
    sn = half(sn)
  }
  if (sn !== 0) throw new IntegrityError(`${what}: proof is shorter than the path to the root`)
  if (!equalHashes(fr, fromRoot)) throw new IntegrityError(`${what}: computed old root does not match fromRoot`)
  if (!equalHashes(sr, toRoot)) throw new IntegrityError(`${what}: computed new root does not match toRoot`)
}

// ---- internals ----

/** Largest tree size accepted: sizes stay exact integers in a double. */
const MAX_SIZE = Number.MAX_SAFE_INTEGER

function hashPair (left: Uint8Array, right: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + 2 * HASH_SIZE)
  buf[0] = NODE_PREFIX
  buf.set(left, 1)
  buf.set(right, 1 + HASH_SIZE)
  return sha256(buf)
}

/** `k` = the largest power of two smaller than `n` (n ≥ 2), the RFC's split point, and log2(k). */
function split (n: number): { k: number, level: number } {
  let k = 1
  let level = 0
  while (k * 2 < n) { k *= 2; level++ }
  return { k, level }
}

function half (x: number): number {
  return Math.floor(x / 2)
}

function isPowerOfTwo (n: number): boolean {
  while (n % 2 === 0) n /= 2
  return n === 1
}

/**
 * MTH(D[start:end]) for the ranges the RFC recursion produces: `start` is a multiple of a power
 * of two no smaller than `end − start`, so the range splits into complete subtrees along the 1
 * bits of its length, largest first, and MTH is their right-to-left fold.
 */
function rangeHash (start: number, end: number, read: SubtreeReader): Uint8Array {
  const parts: Uint8Array[] = []
  let p = start
  let { k, level } = split(end - start + 1) // largest power of two ≤ the length
  while (p < end) {
    if (p + k <= end) {
      parts.push(readSubtree(read, level, p / k))
      p += k
    }
    k /= 2
    level--
  }
  let hash = parts[parts.length - 1] as Uint8Array
  for (let i = parts.length - 2; i >= 0; i--) hash = hashPair(parts[i] as Uint8Array, hash)
  return hash
}

/** A reader's answer, checked: a missing or malformed subtree must never become a wrong hash. */
function readSubtree (read: SubtreeReader, level: number, index: number): Uint8Array {
  const hash = read(level, index) as Uint8Array | undefined | null
  if (hash === undefined || hash === null) {
    throw new NotFoundError(`subtree at level ${level} index ${index} is not stored: the tree is smaller than asked or its storage is damaged`)
  }
  if (!(hash instanceof Uint8Array) || hash.length !== HASH_SIZE) {
    throw new IntegrityError(`stored subtree at level ${level} index ${index} is not a ${HASH_SIZE}-byte hash`)
  }
  return hash
}

function equalHashes (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function checkCount (n: number, name: string, max = MAX_SIZE): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new InvalidInputError(`${name} must be an integer in [0, ${max}], got ${String(n)}`)
  }
}

function checkIndex (index: number, size: number): void {
  checkCount(index, 'index')
  if (index >= size) throw new InvalidInputError(`index must be below size ${size}, got ${index}`)
}

function checkSizes (from: number, to: number): void {
  checkCount(from, 'from')
  checkCount(to, 'to')
  if (from > to) throw new InvalidInputError(`from must not exceed to, got from ${from} > to ${to}`)
}

function checkHash (hash: Uint8Array, name: string): void {
  if (!(hash instanceof Uint8Array) || hash.length !== HASH_SIZE) {
    throw new InvalidInputError(`${name} must be a ${HASH_SIZE}-byte hash`)
  }
}

function checkProof (proof: readonly Uint8Array[]): void {
  if (!Array.isArray(proof)) throw new InvalidInputError('proof must be an array of hashes')
  for (let i = 0; i < proof.length; i++) checkHash(proof[i] as Uint8Array, `proof[${i}]`)
}
