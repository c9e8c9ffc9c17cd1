import { describe, it, expect } from 'vitest'
import { hararyGraph } from '../../../aggregation/secagg/graph.ts'
import { graphParameters, hypergeometricCdf, hypergeometricPmf, hypergeometricSurvival } from '../../../aggregation/secagg/params.ts'
import { MAX_CLIENTS } from '../../../aggregation/secagg/constants.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

function choose (m: number, r: number): bigint {
  let v = 1n
  for (let i = 0; i < r; i++) v = (v * BigInt(m - i)) / BigInt(i + 1)
  return v
}

describe('hypergeometric distribution', () => {
  it('matches exact counting with BigInt binomials', () => {
    for (const [N, K, k] of [[10, 3, 4], [30, 12, 9], [99, 5, 26], [200, 180, 40]] as const) {
      let total = 0
      for (let i = 0; i <= k; i++) {
        const exact = Number(choose(K, i) * choose(N - K, k - i) * 10n ** 18n / choose(N, k)) / 1e18
        const p = hypergeometricPmf(N, K, k, i)
        expect(Math.abs(p - exact)).toBeLessThanOrEqual(1e-12 + 1e-9 * exact)
        total += p
      }
      expect(total).toBeCloseTo(1, 12)
    }
  })

  it('keeps tiny tails precise (no 1 − cdf cancellation)', () => {
    // P[X > 4] for 5 marked among 99, 16 drawn: the only term is X = 5.
    const exact = Number(choose(5, 5) * choose(94, 11) * 10n ** 30n / choose(99, 16)) / 1e30
    const direct = hypergeometricPmf(99, 5, 16, 5)
    expect(hypergeometricSurvival(99, 5, 16, 4)).toBe(direct)
    expect(direct).toBeGreaterThan(0)
    expect(Math.abs(direct - exact) / exact).toBeLessThan(1e-9)
    expect(hypergeometricSurvival(99, 5, 16, 5)).toBe(0)
    expect(hypergeometricCdf(99, 5, 16, 5)).toBeCloseTo(1, 12)
  })
})

describe('graph parameters (Bell et al. 2020 sizing)', () => {
  it('degree grows like log n for the sparse graph, and t is more than half of it', () => {
    const rows = [25, 50, 100, 200, 1000, 10_000].map(n => graphParameters(n, { kind: 'harary', adversarialRate: 0.05, dropoutRate: 0.1 }))
    for (const r of rows) {
      expect(r.kind).toBe('harary')
      expect(r.degree % 2).toBe(0)
      expect(r.threshold).toBeGreaterThan(r.degree / 2)
      expect(r.threshold).toBeLessThanOrEqual(r.degree)
    }
    const degrees = rows.map(r => r.degree)
    expect(degrees).toEqual([...degrees].sort((a, b) => a - b))
    // Past the small-n regime (where the absolute number of bad clients is what matters), 10× the
    // clients costs a few more neighbours, not 10× as many; and k stays far below n.
    expect((degrees[5] as number) / (degrees[4] as number)).toBeLessThan(1.5)
    expect(degrees[5]).toBeLessThan(10_000 * 0.02)
  })

  it('every client keeps t surviving neighbours under the planned dropout rate (1000 seeded trials, n = 100)', () => {
    const n = 100
    const params = graphParameters(n, { kind: 'harary', dropoutRate: 0.1, adversarialRate: 0.05 })
    const ids = Array.from({ length: n }, (_, i) => `c${i}`)
    const next = mulberry32(2024)
    for (let trial = 0; trial < 1000; trial++) {
      const s = Uint8Array.from({ length: 32 }, () => Math.floor(next() * 256))
      const g = hararyGraph(ids, params.degree, s)
      // A uniformly random 10% drops (Fisher–Yates, seeded).
      const order = [...ids]
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1))
        ;[order[i], order[j]] = [order[j] as string, order[i] as string]
      }
      const dropped = new Set(order.slice(0, 10))
      for (const u of ids) expect(g.neighbours(u).filter(v => !dropped.has(v)).length).toBeGreaterThanOrEqual(params.threshold)
    }
  })

  it('below 1/δ clients, where ⌊δn⌋ is 0, still tolerates one dropout wherever the clients allow it (from 4)', () => {
    // At the default δ = 0.1, 4 to 9 clients used to get a graph that no dropout could leave whole.
    expect(graphParameters(3, { kind: 'harary' })).toEqual({ kind: 'complete', n: 3, degree: 2, threshold: 2 })
    for (let n = 4; n <= 9; n++) {
      const p = graphParameters(n, { kind: 'harary' })
      const ids = Array.from({ length: n }, (_, i) => `c${i}`)
      const g = hararyGraph(ids, p.degree, new Uint8Array(32).fill(n))
      for (const gone of ids) {
        for (const u of ids.filter(v => v !== gone)) expect(g.neighbours(u).filter(v => v !== gone).length, `n ${n}, ${gone} dropped`).toBeGreaterThanOrEqual(p.threshold)
      }
    }
    // Asked for no dropouts, or given the graph outright: as asked.
    expect(graphParameters(6, { kind: 'harary', dropoutRate: 0 })).toEqual({ kind: 'harary', n: 6, degree: 2, threshold: 2 })
    expect(graphParameters(6, { kind: 'harary', degree: 2 })).toEqual({ kind: 'harary', n: 6, degree: 2, threshold: 2 })
  })

  it('complete graph: k = n − 1 and t = ⌊(k + a)/2⌋ + 1 with a = ⌊γn⌋', () => {
    expect(graphParameters(20, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 })).toEqual({ kind: 'complete', n: 20, degree: 19, threshold: 11 })
    expect(graphParameters(50, { kind: 'complete', adversarialRate: 0, dropoutRate: 0.1 })).toEqual({ kind: 'complete', n: 50, degree: 49, threshold: 25 })
  })

  it('explicit degree and threshold are checked: t must exceed half the degree', () => {
    expect(graphParameters(40, { kind: 'harary', degree: 10 })).toEqual({ kind: 'harary', n: 40, degree: 10, threshold: 6 })
    expect(graphParameters(40, { kind: 'harary', degree: 10, threshold: 8 }).threshold).toBe(8)
    expect(graphParameters(40, { kind: 'complete', threshold: 30 })).toEqual({ kind: 'complete', n: 40, degree: 39, threshold: 30 })
    expect(() => graphParameters(40, { kind: 'harary', degree: 10, threshold: 5 })).toThrow(/threshold: expected an integer in \(5, 10\]/)
    expect(() => graphParameters(40, { kind: 'harary', degree: 9 })).toThrow(/degree: expected an even integer/)
    expect(() => graphParameters(40, { kind: 'harary', threshold: 9 })).toThrow(/needs an explicit degree/)
    expect(() => graphParameters(40, { kind: 'complete', degree: 10 })).toThrow(/complete graph over 40 clients has degree 39/)
  })

  it('counts colluders over the clients offered, not over the roster the server chose among them', () => {
    // 20 of 40 offered: alone, ⌊0.05 · 20⌋ = 1 colluder and 2t − k = 2 (two colluders beside a
    // client could answer both ways); over the offer, 2 colluders and 2t − k > 2.
    const alone = graphParameters(20, { kind: 'harary' })
    expect(alone).toEqual({ kind: 'harary', n: 20, degree: 6, threshold: 4 })
    const offered = graphParameters(20, { kind: 'harary', population: 40 })
    expect(2 * offered.threshold - offered.degree).toBeGreaterThan(2)
    expect(graphParameters(20, { kind: 'harary', population: 20 })).toEqual(alone)
    expect(graphParameters(40, { kind: 'harary', population: 40 })).toEqual(graphParameters(40, { kind: 'harary' }))
    for (const bad of [19, 20.5, MAX_CLIENTS + 1]) {
      expect(() => graphParameters(20, { kind: 'harary', population: bad })).toThrow(/graph population: expected an integer in \[20 \(the roster\)/)
    }
  })

  it('refuses infeasible threat models and bad rates', () => {
    expect(() => graphParameters(10, { kind: 'complete', adversarialRate: 0.5, dropoutRate: 0.5 })).toThrow(/cannot meet the threat model/)
    expect(() => graphParameters(10, { kind: 'harary', dropoutRate: 1 })).toThrow(/dropoutRate/)
    expect(() => graphParameters(10, { kind: 'harary', adversarialRate: -0.1 })).toThrow(/adversarialRate/)
    expect(() => graphParameters(2, { kind: 'harary' })).toThrow(/graph n/)
    expect(() => graphParameters(10, { kind: 'ring' as 'harary' })).toThrow(/graph kind/)
  })
})
