/**
 * Who masks with whom. SecAgg+ (Bell et al. 2020, "Secure Single-Server Aggregation with
 * (Poly)Logarithmic Overhead") replaces the complete graph of Bonawitz et al. 2017 by a
 * k-regular graph of degree O(log n): here the Harary graph H(n, k) — clients on a ring, each
 * adjacent to the k/2 nearest on either side — laid over a uniformly random permutation of the
 * clients, as in Google's SecAgg+ (federated-compute, `secret_sharing_harary_graph`). The
 * permutation comes from a ChaCha20 stream (RFC 8439) keyed by a public seed, so the server and
 * every client compute the same graph, and nobody picks it after seeing the keys.
 *
 * Ids are ordered by JavaScript string order (UTF-16 code units); a client's 1-based position in
 * that order is its index, the x-coordinate of the Shamir shares it holds.
 */
import { chacha20 } from '@noble/ciphers/chacha.js'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { KEY_BYTES } from './constants.ts'

export type GraphKind = 'harary' | 'complete'

export interface NeighbourGraph {
  readonly kind: GraphKind
  /** Every client, in sorted order. */
  readonly ids: readonly string[]
  /** Neighbours per client: k for a Harary graph, n − 1 for the complete graph. */
  readonly degree: number
  /** `id`'s neighbours, in sorted order; throws InvalidInputError for an id not in the graph. */
  neighbours: (id: string) => readonly string[]
  /** True when a and b mask with each other. */
  adjacent: (a: string, b: string) => boolean
  /** `id`'s 1-based position among the sorted ids (its Shamir x-coordinate). */
  index: (id: string) => number
}

function sortedUnique (ids: readonly string[], what: string): string[] {
  const sorted = [...ids].sort()
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i] === sorted[i - 1]) throw new InvalidInputError(`${what}: id ${sorted[i]} appears twice`)
  }
  if (sorted.length < 2) throw new InvalidInputError(`${what}: a graph needs at least 2 clients, got ${sorted.length}`)
  return sorted
}

/**
 * A graph whose neighbour lists are made when first asked for (and kept): a client asks for its
 * own only, O(k) memory, where building all n lists would be Θ(n·k), Θ(n²) for the complete
 * graph (gigabytes at MAX_CLIENTS), for a roster the server sends before anything in it is checked.
 */
function build (kind: GraphKind, ids: string[], degree: number, compute: (id: string) => string[], adjacent: (a: string, b: string) => boolean): NeighbourGraph {
  const positions = new Map(ids.map((id, i) => [id, i + 1]))
  const lists = new Map<string, string[]>()
  const index = (id: string): number => {
    const i = positions.get(id)
    if (i === undefined) throw new InvalidInputError(`graph: ${id} is not a client of this round`)
    return i
  }
  return {
    kind,
    ids,
    degree,
    neighbours: id => {
      let ns = lists.get(id)
      if (ns === undefined) {
        index(id)
        ns = compute(id)
        lists.set(id, ns)
      }
      return ns
    },
    adjacent: (a, b) => a !== b && positions.has(a) && positions.has(b) && adjacent(a, b),
    index
  }
}

/** Bonawitz et al. 2017: every client masks with every other one. */
export function completeGraph (ids: readonly string[]): NeighbourGraph {
  const sorted = sortedUnique(ids, 'completeGraph ids')
  return build('complete', sorted, sorted.length - 1, id => sorted.filter(o => o !== id), () => true)
}

/** Uniform integers below `bound` from a ChaCha20 keystream (zero nonce), by rejection sampling. */
function uniformStream (key: Uint8Array): (bound: number) => number {
  const BLOCKS = 64
  const buffer = new Uint8Array(BLOCKS * 64)
  const words = new DataView(buffer.buffer)
  const nonce = new Uint8Array(12)
  let counter = 0
  let pos = buffer.length
  const nextWord = (): number => {
    if (pos === buffer.length) {
      buffer.fill(0)
      chacha20(key, nonce, buffer, buffer, counter)
      counter += BLOCKS
      pos = 0
    }
    const w = words.getUint32(pos, true)
    pos += 4
    return w
  }
  return bound => {
    // Largest multiple of `bound` that fits in 2^32: words at or above it would bias the result.
    const limit = 2 ** 32 - (2 ** 32 % bound)
    for (;;) {
      const w = nextWord()
      if (w < limit) return w % bound
    }
  }
}

/**
 * The permutation of `ids` (sorted first) that a 32-byte `seed` selects: Fisher–Yates driven by
 * ChaCha20(seed). Exposed for tests.
 */
export function seededPermutation (ids: readonly string[], seed: Uint8Array): string[] {
  if (!(seed instanceof Uint8Array) || seed.length !== KEY_BYTES) throw new InvalidInputError(`graph seed: expected ${KEY_BYTES} bytes`)
  const order = [...ids].sort()
  const below = uniformStream(seed)
  for (let i = order.length - 1; i > 0; i--) {
    const j = below(i + 1)
    ;[order[i], order[j]] = [order[j] as string, order[i] as string]
  }
  return order
}

/**
 * The SecAgg+ graph: H(n, degree) over the permutation `seed` selects. `degree` is even and in
 * [2, n − 2], or n − 1, which gives the complete graph (kind stays 'harary' only when sparse).
 *
 * @example const g = hararyGraph(roster, 8, graphKey(seed, roundId)); g.neighbours('alice')
 */
export function hararyGraph (ids: readonly string[], degree: number, seed: Uint8Array): NeighbourGraph {
  const sorted = sortedUnique(ids, 'hararyGraph ids')
  const n = sorted.length
  if (degree === n - 1) return completeGraph(sorted)
  if (!Number.isInteger(degree) || degree < 2 || degree > n - 2 || degree % 2 !== 0) {
    throw new InvalidInputError(`hararyGraph degree: expected an even integer in [2, ${n - 2}] or ${n - 1} for ${n} clients, got ${degree}`)
  }
  const ring = seededPermutation(sorted, seed)
  const onRing = new Map(ring.map((id, p) => [id, p]))
  const half = degree / 2
  const neighbours = (id: string): string[] => {
    const p = onRing.get(id) as number
    const ns: string[] = []
    for (let j = 1; j <= half; j++) ns.push(ring[(p + j) % n] as string, ring[(p - j + n) % n] as string)
    return ns.sort()
  }
  const adjacent = (a: string, b: string): boolean => {
    const d = Math.abs((onRing.get(a) as number) - (onRing.get(b) as number))
    return Math.min(d, n - d) <= half
  }
  return build('harary', sorted, degree, neighbours, adjacent)
}
