import { describe, it, expect } from 'vitest'
import { completeGraph, hararyGraph, seededPermutation, type NeighbourGraph } from '../../../aggregation/secagg/graph.ts'

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `client-${String(i).padStart(3, '0')}`)
const seed = (byte: number): Uint8Array => new Uint8Array(32).fill(byte)

/** Connected after removing `removed`? Breadth-first search over the rest. */
function connectedWithout (g: NeighbourGraph, removed: ReadonlySet<string>): boolean {
  const rest = g.ids.filter(id => !removed.has(id))
  const seen = new Set([rest[0] as string])
  const queue = [rest[0] as string]
  while (queue.length > 0) {
    for (const v of g.neighbours(queue.pop() as string)) {
      if (!removed.has(v) && !seen.has(v)) { seen.add(v); queue.push(v) }
    }
  }
  return seen.size === rest.length
}

function subsets<T> (xs: readonly T[], k: number): T[][] {
  if (k === 0) return [[]]
  if (xs.length < k) return []
  const [head, ...rest] = xs as [T, ...T[]]
  return [...subsets(rest, k - 1).map(s => [head, ...s]), ...subsets(rest, k)]
}

describe('Harary graph H(n, k) over a seeded permutation', () => {
  it('is k-regular, symmetric and without self-loops', () => {
    for (const [n, k] of [[5, 2], [20, 6], [37, 10], [50, 48]] as const) {
      const g = hararyGraph(ids(n), k, seed(n))
      expect(g.degree).toBe(k)
      for (const u of g.ids) {
        const ns = g.neighbours(u)
        expect(ns).toHaveLength(k)
        expect(new Set(ns).size).toBe(k)
        expect(ns).not.toContain(u)
        expect([...ns].sort()).toEqual(ns)
        for (const v of ns) {
          expect(g.neighbours(v)).toContain(u)
          expect(g.adjacent(u, v) && g.adjacent(v, u)).toBe(true)
        }
      }
    }
  })

  it('is a ring of k/2-neighbourhoods: the neighbours of consecutive ring positions', () => {
    const n = 12
    const k = 4
    const s = seed(7)
    const ring = seededPermutation(ids(n), s)
    const g = hararyGraph(ids(n), k, s)
    for (let p = 0; p < n; p++) {
      const expected = [1, 2].flatMap(j => [ring[(p + j) % n], ring[(p - j + n) % n]]).sort()
      expect(g.neighbours(ring[p] as string)).toEqual(expected)
    }
  })

  it('is k-connected: no k − 1 removed clients disconnect it (every subset, n = 12, k = 4)', () => {
    const g = hararyGraph(ids(12), 4, seed(3))
    for (const removed of subsets(g.ids, 3)) expect(connectedWithout(g, new Set(removed))).toBe(true)
    // And k removals can: the definition is tight.
    expect(subsets(g.ids, 4).some(removed => !connectedWithout(g, new Set(removed)))).toBe(true)
  })

  it('is deterministic in the seed, and another seed lays it out differently', () => {
    const a = hararyGraph(ids(30), 6, seed(1))
    const b = hararyGraph([...ids(30)].reverse(), 6, seed(1))
    const c = hararyGraph(ids(30), 6, seed(2))
    for (const u of a.ids) expect(b.neighbours(u)).toEqual(a.neighbours(u))
    expect(a.ids.some(u => c.neighbours(u).join() !== a.neighbours(u).join())).toBe(true)
  })

  it('the permutation is a permutation, and spreads one client evenly over ring positions', () => {
    const n = 8
    const counts = new Array<number>(n).fill(0)
    for (let i = 0; i < 4000; i++) {
      const s = new Uint8Array(32)
      new DataView(s.buffer).setUint32(0, i)
      const order = seededPermutation(ids(n), s)
      expect([...order].sort()).toEqual(ids(n))
      const position = order.indexOf('client-000')
      counts[position] = (counts[position] as number) + 1
    }
    // 500 expected per position; deterministic seeds, so this is a fixed outcome, with a loose band.
    for (const c of counts) expect(Math.abs(c - 500)).toBeLessThan(100)
  })

  it('indices are 1-based positions in sorted id order', () => {
    const g = hararyGraph(['carol', 'alice', 'dave', 'bob', 'erin'], 2, seed(9))
    expect(g.ids).toEqual(['alice', 'bob', 'carol', 'dave', 'erin'])
    expect(g.index('alice')).toBe(1)
    expect(g.index('erin')).toBe(5)
    expect(() => g.index('mallory')).toThrow(/mallory is not a client/)
    expect(() => g.neighbours('mallory')).toThrow(/mallory is not a client/)
  })

  it('refuses bad degrees, duplicate ids, tiny graphs and bad seeds', () => {
    expect(() => hararyGraph(ids(10), 3, seed(1))).toThrow(/degree: expected an even integer in \[2, 8\] or 9/)
    expect(() => hararyGraph(ids(10), 0, seed(1))).toThrow(/degree/)
    expect(() => hararyGraph(ids(10), 10, seed(1))).toThrow(/degree/)
    expect(() => hararyGraph(['a', 'b', 'a'], 2, seed(1))).toThrow(/id a appears twice/)
    expect(() => hararyGraph(['a'], 2, seed(1))).toThrow(/at least 2 clients/)
    expect(() => hararyGraph(ids(10), 4, new Uint8Array(16))).toThrow(/graph seed: expected 32 bytes/)
  })
})

describe('complete graph (Bonawitz et al. 2017)', () => {
  it('every pair masks; degree n − 1; H(n, n − 1) is the same graph', () => {
    const g = completeGraph(ids(9))
    expect(g.kind).toBe('complete')
    expect(g.degree).toBe(8)
    for (const u of g.ids) expect(g.neighbours(u)).toEqual(g.ids.filter(v => v !== u))
    const h = hararyGraph(ids(9), 8, seed(1))
    expect(h.kind).toBe('complete')
    for (const u of g.ids) expect(h.neighbours(u)).toEqual(g.neighbours(u))
  })
})
