/**
 * An in-memory RFC 9162 Merkle log over `merkle.ts`: stores exactly the complete subtrees that
 * `appendLeaf` reports, the same shape a persistent store keeps, so tests, benchmarks and
 * witnesses exercise the real read pattern without a database.
 */
import { NotFoundError } from '../errors/errors.ts'
import {
  appendLeaf,
  consistencyProof as consistencyProofFrom,
  inclusionProof as inclusionProofFrom,
  leafHash,
  rootHash,
  type SubtreeReader
} from './merkle.ts'

export interface MemoryTree {
  /** Appends `entry` (hashed as a leaf) and returns its 0-based leaf index. */
  append (entry: Uint8Array): number
  /** Number of leaves appended so far. */
  readonly size: number
  /** Reader over the stored complete subtrees; throws NotFoundError for one never stored. */
  read: SubtreeReader
  /** MTH of the first `size` leaves (default: all). */
  root (size?: number): Uint8Array
  /** Inclusion proof of leaf `index` in the tree of `size` (default: current size). */
  inclusionProof (index: number, size?: number): Uint8Array[]
  /** Consistency proof from size `from` to size `to` (default: current size). */
  consistencyProof (from: number, to?: number): Uint8Array[]
}

/**
 * A Merkle log held in memory.
 * @example
 * const tree = memoryTree()
 * const i = tree.append(entry)
 * verifyInclusion(i, tree.size, leafHash(entry), tree.inclusionProof(i), tree.root())
 */
export function memoryTree (): MemoryTree {
  // levels[level][index] = hash of the complete subtree; dense because appends fill each level in order.
  const levels: Uint8Array[][] = []
  let size = 0

  const read: SubtreeReader = (level, index) => {
    const hash = levels[level]?.[index]
    if (hash === undefined) throw new NotFoundError(`no stored subtree at level ${level} index ${index} (tree size ${size})`)
    return hash
  }

  return {
    append (entry) {
      const index = size
      // Compute everything before storing anything, so a failure leaves the tree unchanged.
      const completed = appendLeaf(index, leafHash(entry), read)
      for (const { level, index: at, hash } of completed) {
        const row = levels[level] ?? (levels[level] = [])
        row[at] = hash
      }
      size = index + 1
      return index
    },
    get size () { return size },
    read,
    root: (n = size) => rootHash(checkNotBeyond(n, size, 'size'), read),
    inclusionProof: (index, n = size) => inclusionProofFrom(index, checkNotBeyond(n, size, 'size'), read),
    consistencyProof: (from, to = size) => consistencyProofFrom(from, checkNotBeyond(to, size, 'to'), read)
  }
}

/** A size past the end would read subtrees that do not exist yet; say so plainly instead. */
function checkNotBeyond (n: number, size: number, name: string): number {
  if (n > size) throw new NotFoundError(`${name} ${n} is beyond the tree's size ${size}`)
  return n
}
