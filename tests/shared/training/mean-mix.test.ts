/**
 * NaiveMix (shared/training/mean-mix.ts) and a client's checks of what a round offers for it
 * (shared/rounds/mean-mix-offer.ts): class statistics against sums taken here in float64, pooled
 * means from two clients' weighted statistics against the pooled data's own means, the mixing
 * formula, one full-batch training step against a hand-computed soft cross-entropy gradient, and
 * offers that a client must refuse.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { toBase64 } from '../../../shared/crypto/bytes.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { classMeansFromStats, classStats, classStatsLength, naiveMixBatch, type ClassMeans } from '../../../shared/training/mean-mix.ts'
import { offeredMeanMix, withClassStats } from '../../../shared/rounds/mean-mix-offer.ts'
import { trainLocal } from '../../../shared/training/local-train.ts'
import { readWeights, weightNames } from '../../../shared/training/weights.ts'
import { takeRows, type TrainingData } from '../../../shared/training/data.ts'
import { fixedPointParams } from '../../../aggregation/fixed-point.ts'
import { denseLogits, digits, softmaxRegression, worstDifference } from './fixtures.ts'

beforeAll(async () => { await tfjsBackend() })

/** Float64 class means and shares of `data`, straight from the rows. */
function pooledMeans (data: TrainingData, classes: number): { means: Float64Array, shares: Float64Array } {
  const f = data.xs.length / data.count
  const means = new Float64Array(classes * f)
  const counts = new Float64Array(classes)
  for (let r = 0; r < data.count; r++) {
    const c = data.ys[r] as number
    counts[c]!++
    for (let i = 0; i < f; i++) means[c * f + i]! += data.xs[r * f + i] as number
  }
  for (let c = 0; c < classes; c++) for (let i = 0; i < f; i++) if (counts[c]! > 0) means[c * f + i]! /= counts[c]!
  return { means, shares: counts.map(n => n / data.count) }
}

describe('class statistics', () => {
  it('are per-class input sums and counts over the client\'s row count', () => {
    const stats = classStats({ xs: Float32Array.of(1, 3, 5), ys: Uint8Array.of(0, 0, 1), count: 3, featureShape: [1] }, 2)
    expect(worstDifference(stats, [4 / 3, 5 / 3, 2 / 3, 1 / 3])).toBeLessThan(1e-7)
    expect(() => classStats({ xs: Float32Array.of(1, 2), ys: Uint8Array.of(0, 2), count: 2, featureShape: [1] }, 2)).toThrow(/row 1: label 2 is not a class index in 0..1/)
  })

  it('weighted by row count over two clients, give the pooled data\'s class means and shares', () => {
    // Client A holds digits of the first 300 rows with label < 5, client B the rest: a label-skewed split.
    const all = digits(0, 300)
    const a = takeRows(all, [...all.ys.keys()].filter(i => (all.ys[i] as number) < 5))
    const b = takeRows(all, [...all.ys.keys()].filter(i => (all.ys[i] as number) >= 5))
    const [sa, sb] = [classStats(a, 10), classStats(b, 10)]
    // What the round's weighted mean computes: Σ n_k s_k / Σ n_k.
    const mean = sa.map((v, i) => (a.count * v + b.count * (sb[i] as number)) / (a.count + b.count))
    const got = classMeansFromStats(mean, 10, 784)
    const want = pooledMeans(all, 10)
    expect(worstDifference(got.means, want.means)).toBeLessThan(1e-5)
    expect(worstDifference(got.shares, want.shares)).toBeLessThan(1e-7)
  })

  it('give a class nobody holds share 0 and a zero mean, even through rounding noise', () => {
    const stats = Float32Array.of(0.5, 0.25, 1e-9, 0.5, 0.5, 1e-9) // 3 classes × 1 feature, then shares
    const m = classMeansFromStats(stats, 3, 1)
    expect([...m.shares]).toEqual([0.5, 0.5, 0])
    expect([...m.means]).toEqual([1, 0.5, 0])
    expect(() => classMeansFromStats(stats, 2, 1)).toThrow(/6 values, expected 4/)
  })
})

describe('naiveMixBatch', () => {
  it('mixes each row with a class mean and splits its target λ : 1 − λ', () => {
    const means: ClassMeans = { classes: 3, features: 2, means: Float32Array.of(10, 20, 30, 40, 50, 60), shares: Float32Array.of(0.5, 0, 0.5) }
    const xs = Float32Array.of(1, 2, 3, 4)
    const labels = Int32Array.of(0, 1)
    // The draws the function makes: one per row, over the classes held (0 and 2).
    const draws = mulberry32(3)
    const js = [0, 1].map(() => [0, 2][Math.floor(draws() * 2)] as number)
    const targets = naiveMixBatch(xs, labels, means, Int32Array.of(0, 2), 0.25, mulberry32(3))
    const want = [0, 1].flatMap(r => [0, 1].map(f => 0.75 * (r * 2 + f + 1) + 0.25 * (means.means[js[r]! * 2 + f] as number)))
    expect(worstDifference(xs, want)).toBeLessThan(1e-6)
    for (const r of [0, 1]) {
      const row = [...targets.subarray(r * 3, r * 3 + 3)]
      const expected = [0, 0, 0]
      expected[labels[r]!]! += 0.75
      expected[js[r]!]! += 0.25
      expect(row).toEqual(expected)
    }
  })
})

describe('trainLocal with meanMix', () => {
  it('takes one full-batch step of −lr × the hand-computed soft cross-entropy gradient on mixed rows', async () => {
    const n = 48
    const data = digits(0, n)
    const model = softmaxRegression(784, 10, 5)
    const [w, b] = [readWeights(model, ['head/kernel']), readWeights(model, ['head/bias'])]
    // One class held (3): every row mixes with class 3's mean, so the reference needs no draws.
    const pooled = pooledMeans(digits(0, 500), 10)
    const means: ClassMeans = { classes: 10, features: 784, means: Float32Array.from(pooled.means), shares: Float32Array.from({ length: 10 }, (_, c) => c === 3 ? 1 : 0) }
    const lambda = 0.2
    const lr = 0.5
    const { deltas } = await trainLocal({
      model, trainable: ['head/kernel', 'head/bias'], data, epochs: 1, batchSize: n, learningRate: lr,
      optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy', seed: 1, meanMix: { lambda, means }
    })
    const x = data.xs.map((v, i) => (1 - lambda) * v + lambda * (means.means[3 * 784 + (i % 784)] as number))
    const gw = new Float64Array(784 * 10)
    const gb = new Float64Array(10)
    for (let r = 0; r < n; r++) {
      const z = denseLogits(x, r, 784, w, b, 10)
      const max = Math.max(...z)
      const e = z.map(v => Math.exp(v - max))
      const sum = e.reduce((s, v) => s + v, 0)
      for (let j = 0; j < 10; j++) {
        const t = (j === data.ys[r] ? 1 - lambda : 0) + (j === 3 ? lambda : 0)
        const dz = ((e[j] as number) / sum - t) / n
        gb[j]! += dz
        for (let i = 0; i < 784; i++) gw[i * 10 + j]! += (x[r * 784 + i] as number) * dz
      }
    }
    expect(worstDifference(deltas, [...gw, ...gb].map(g => -lr * g))).toBeLessThan(2e-6)
    model.dispose()
  })

  it('refuses means of another shape, λ outside (0, 1), and NaiveMix beside a label-skew loss', async () => {
    const model = softmaxRegression(784, 10, 5)
    const data = digits(0, 32)
    const ok: ClassMeans = { classes: 10, features: 784, means: new Float32Array(7840), shares: new Float32Array(10).fill(0.1) }
    const run = async (meanMix: { lambda: number, means: ClassMeans }, extra = {}): Promise<unknown> => await trainLocal({
      model, trainable: weightNames(model), data, epochs: 1, batchSize: 32, learningRate: 0.1, optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy', seed: 1, meanMix, ...extra
    })
    await expect(run({ lambda: 0.1, means: { ...ok, features: 10, means: new Float32Array(100) } })).rejects.toThrow(/means for 10 classes × 10 features, the model has 10 classes and the data 784 features a row/)
    await expect(run({ lambda: 1, means: ok })).rejects.toThrow(/meanMix.lambda must be in \(0, 1\)/)
    await expect(run({ lambda: 0.1, means: { ...ok, shares: new Float32Array(10) } })).rejects.toThrow(/no class has a share above 0/)
    await expect(run({ lambda: 0.1, means: ok }, { labelSkew: { method: 'fedrs', alpha: 0.5 } })).rejects.toThrow(InvalidInputError)
    model.dispose()
  })
})

describe('offeredMeanMix: what a client accepts from an offer', () => {
  const data = digits(0, 40)
  const classes = 10
  const features = 784
  const fixedPoint = { ...fixedPointParams({ clip: 1, clients: 3 }) }
  const means = new Float32Array(classes * features).fill(0.1)
  const encoded = toBase64(new Uint8Array(means.buffer))
  const offer = (over: Record<string, unknown> = {}): Parameters<typeof offeredMeanMix>[0] => ({
    id: 'r_0123456789abcdef',
    meanMix: { lambda: 0.05, classes, features },
    statsLength: 0,
    classMeans: { means: encoded, shares: new Array(classes).fill(0.1) },
    dp: null,
    fixedPoint,
    secure: { mode: 'masking', graph: 'sparse' },
    selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0 },
    clients: ['a', 'b', 'c'],
    ...over
  })

  it('hands over the offered means, and the statistics when the round gathers them', () => {
    const got = offeredMeanMix(offer(), data)
    expect(got.stats).toBeUndefined()
    expect(worstDifference(got.means!.means, means)).toBe(0)
    const gathering = offeredMeanMix(offer({ classMeans: null, statsLength: classStatsLength(classes, features) }), data)
    expect(gathering.means).toBeUndefined()
    expect(worstDifference(gathering.stats!, classStats(data, classes))).toBe(0)
    const update = withClassStats(Float32Array.of(7, 8), Float32Array.of(9))
    expect([...update]).toEqual([7, 8, 9])
  })

  it('refuses offers that do not add up, and data that does not fit, saying what is wrong', () => {
    const nan = means.slice()
    nan[5] = Number.NaN
    const cases: Array<[Record<string, unknown>, TrainingData, RegExp]> = [
      [{ classMeans: { means: toBase64(new Uint8Array(12)), shares: new Array(classes).fill(0.1) } }, data, /classMeans.means holds 12 bytes, expected 10 × 784 float32 values/],
      [{ classMeans: { means: toBase64(new Uint8Array(nan.buffer)), shares: new Array(classes).fill(0.1) } }, data, /holds a value that is not finite/],
      [{ classMeans: { means: encoded, shares: [0.1, 0.1] } }, data, /shares must be a Float32Array of 10 values/],
      [{ classMeans: { means: 'A', shares: new Array(classes).fill(0.1) } }, data, /classMeans.means: not base64/],
      // What a made-up share or mean gives: no data sums to other than 1, or averages beyond the clip.
      [{ classMeans: { means: encoded, shares: new Array(classes).fill(0.2) } }, data, /the class shares sum to 2.00000, not 1/],
      [{ classMeans: { means: toBase64(new Uint8Array(new Float32Array(classes * features).fill(3).buffer)), shares: new Array(classes).fill(0.1) } }, data, /class 0's mean holds 3, beyond ±1/],
      // Statistics leave a client only inside a sum of several, encoded without clipping.
      [{ classMeans: null, statsLength: classStatsLength(classes, features), secure: { mode: 'none', graph: 'sparse' } }, data, /class statistics asked for in mode none/],
      [{ classMeans: null, statsLength: classStatsLength(classes, features), selection: { fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0, minUploads: 1 } }, data, /may publish the sum of one upload/],
      [{ classMeans: null, statsLength: classStatsLength(classes, features), fixedPoint: { ...fixedPointParams({ clip: 0.5, clients: 3 }) } }, data, /class statistics need clip ≥ 1, the round has 0.5/],
      [{ meanMix: null }, data, /class statistics or means offered without meanMix/],
      [{ dp: { noiseMultiplier: 1, clip: 1, delta: 1e-5 } }, data, /meanMix with dp is not supported/],
      [{ meanMix: { lambda: 0.05, classes, features: 100 } }, data, /meanMix expects 100 features a row, this runtime's data has 784/],
      [{ classMeans: null, statsLength: 17 }, data, /statsLength 17, but 10 classes × 784 features give 7850/],
      [{ classMeans: null, statsLength: classStatsLength(classes, features) }, { ...data, xs: data.xs.map(v => v * 255) }, /need inputs within ±1 \(the round's clip\)/]
    ]
    for (const [over, d, message] of cases) expect(() => offeredMeanMix(offer(over), d)).toThrow(message)
  })
})
