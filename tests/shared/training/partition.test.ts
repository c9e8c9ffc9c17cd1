import { describe, expect, it } from 'vitest'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { classesPartition, dirichletPartition, iidPartition, parsePartition, partitionIndices } from '../../../shared/training/partition.ts'
import { mnistSplit } from '../../../node-runtime/data/mnist.ts'

const mnistLabels = mnistSplit().train.labels

/** Slow, obviously-correct check: every index 0..n−1 appears in exactly one part, parts ascending. */
function expectExactCover (parts: Int32Array[], n: number): void {
  const seen = new Uint8Array(n)
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) {
      const x = p[i] as number
      expect(x >= 0 && x < n).toBe(true)
      seen[x] = (seen[x] as number) + 1
      if (i > 0) expect(x).toBeGreaterThan(p[i - 1] as number)
    }
  }
  expect(seen.every(c => c === 1)).toBe(true)
}

const classesOf = (part: Int32Array, labels: ArrayLike<number>): Set<number> => new Set(Array.from(part, i => labels[i] as number))

/** Shannon entropy (bits) of a client's label histogram. */
function labelEntropy (part: Int32Array, labels: ArrayLike<number>): number {
  const counts = new Map<number, number>()
  for (const i of part) counts.set(labels[i] as number, (counts.get(labels[i] as number) ?? 0) + 1)
  let h = 0
  for (const c of counts.values()) { const p = c / part.length; h -= p * Math.log2(p) }
  return h
}

describe('parsePartition', () => {
  it('reads the three forms', () => {
    expect(parsePartition('iid')).toEqual({ kind: 'iid' })
    expect(parsePartition('classes:2')).toEqual({ kind: 'classes', k: 2 })
    expect(parsePartition(' classes:10 ')).toEqual({ kind: 'classes', k: 10 })
    expect(parsePartition('dirichlet:0.5')).toEqual({ kind: 'dirichlet', alpha: 0.5 })
    expect(parsePartition('dirichlet:3')).toEqual({ kind: 'dirichlet', alpha: 3 })
    expect(parsePartition('dirichlet:1e-2')).toEqual({ kind: 'dirichlet', alpha: 0.01 })
  })

  it.each(['classes:0', 'classes:-1', 'classes:1.5', 'classes:', 'dirichlet:-1', 'dirichlet:0', 'dirichlet:abc', 'dirichlet:', 'foo', 'iid:3', ''])(
    'rejects %j and says which forms are accepted', spec => {
      expect(() => parsePartition(spec)).toThrow(InvalidInputError)
      expect(() => parsePartition(spec)).toThrow(/"iid", "classes:K".*"dirichlet:ALPHA"/)
    })
})

describe('iid', () => {
  it('covers every index once, in near-equal parts, reproducibly', () => {
    const parts = iidPartition(1003, 7, 5)
    expectExactCover(parts, 1003)
    const sizes = parts.map(p => p.length)
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1)
    expect(iidPartition(1003, 7, 5)).toEqual(parts)
    expect(iidPartition(1003, 7, 6)).not.toEqual(parts)
  })

  it('gives every MNIST client all ten digits', () => {
    for (const p of partitionIndices('iid', mnistLabels, 10, 1)) expect(classesOf(p, mnistLabels).size).toBe(10)
  })
})

describe('classes:K (McMahan et al. 2017 shards)', () => {
  it.each([1, 2, 3, 5])('K = %i: every index once, exactly K classes per client on MNIST', k => {
    const parts = partitionIndices(`classes:${k}`, mnistLabels, 10, 3)
    expectExactCover(parts, mnistLabels.length)
    for (const p of parts) expect(classesOf(p, mnistLabels).size).toBe(k)
    // Shards are cut evenly inside a class, so clients hold similar amounts of data.
    const sizes = parts.map(p => p.length)
    expect(Math.max(...sizes) / Math.min(...sizes)).toBeLessThan(1.5)
  })

  it('keeps ≤ K classes per client on imbalanced labels with many clients, and is deterministic', () => {
    const random = mulberry32(11)
    // Class c is drawn with weight c + 1: class 9 is ten times as common as class 0.
    const labels = Int32Array.from({ length: 5000 }, () => { let u = random() * 55; let c = 0; while (u >= c + 1) { u -= c + 1; c++ } return c })
    for (const [clients, k] of [[50, 2], [37, 3], [10, 1], [5, 2]] as const) {
      const parts = classesPartition(labels, clients, k, 4)
      expectExactCover(parts, labels.length)
      const held = parts.map(p => classesOf(p, labels).size)
      expect(Math.max(...held)).toBeLessThanOrEqual(k)
      expect(held.filter(h => h === k).length / clients).toBeGreaterThan(0.9)
      expect(classesPartition(labels, clients, k, 4)).toEqual(parts)
    }
    expect(classesPartition(labels, 50, 2, 5)).not.toEqual(classesPartition(labels, 50, 2, 4))
  })

  it('refuses a split that would leave rows without a client', () => {
    expect(() => partitionIndices('classes:2', mnistLabels, 4, 1)).toThrow(/8 shards, fewer than the 10 classes/)
    expect(() => classesPartition([0, 1, 2], 2, 2, 1)).toThrow(InvalidInputError)
    expect(() => classesPartition([0, 1, -1], 2, 2, 1)).toThrow(/labels\[2\]/)
  })
})

describe('dirichlet:ALPHA (per class, Dirichlet shares over clients: Yurochkin et al. 2019)', () => {
  it('covers every index once and is deterministic by seed', () => {
    for (const alpha of [0.05, 1, 100]) {
      const parts = dirichletPartition(mnistLabels, 10, alpha, 9)
      expectExactCover(parts, mnistLabels.length)
      expect(dirichletPartition(mnistLabels, 10, alpha, 9)).toEqual(parts)
      expect(dirichletPartition(mnistLabels, 10, alpha, 10)).not.toEqual(parts)
    }
  })

  it('skews labels less as α grows (mean per-client label entropy rises toward log2 10)', () => {
    const meanEntropy = (alpha: number): number => {
      let sum = 0
      let n = 0
      for (let seed = 1; seed <= 4; seed++) {
        for (const p of dirichletPartition(mnistLabels, 10, alpha, seed)) if (p.length > 0) { sum += labelEntropy(p, mnistLabels); n++ }
      }
      return sum / n
    }
    const entropies = [0.05, 0.3, 1, 10, 1000].map(meanEntropy)
    for (let i = 1; i < entropies.length; i++) expect(entropies[i]).toBeGreaterThan(entropies[i - 1] as number)
    expect(entropies[0]).toBeLessThan(1.5)
    expect(entropies.at(-1)).toBeGreaterThan(Math.log2(10) - 0.02)
  })

  it('rejects bad arguments by name', () => {
    expect(() => dirichletPartition(mnistLabels, 10, 0, 1)).toThrow(/alpha/)
    expect(() => dirichletPartition(mnistLabels, 0, 1, 1)).toThrow(/clients/)
    expect(() => dirichletPartition(mnistLabels, 3, 1, 0.5)).toThrow(/seed/)
  })
})
