/**
 * FedRS and FedLC in trainLocal, against float64 gradients computed here by hand for a softmax
 * regression, and against plain training where the correction must vanish (FedRS with α = 1,
 * FedLC with equal class counts) for an MLP, whose logits come through the sub-model path.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { trainLocal, type TrainLocalOptions } from '../../../shared/training/local-train.ts'
import { classCounts, fedLcOffsets, fedRsScale, type LabelSkew } from '../../../shared/training/label-skew.ts'
import { readWeights, setTrainableWeights, weightNames } from '../../../shared/training/weights.ts'
import { takeRows, type TrainingData } from '../../../shared/training/data.ts'
import { labelSkewSchema, roundRequestSchema } from '../../../shared/rounds/config.ts'
import { denseLogits, digits, norm, seededMlp, softmaxRegression, worstDifference } from './fixtures.ts'

beforeAll(async () => { await tfjsBackend() })

const base = (model: tfl.LayersModel, data: TrainingData): TrainLocalOptions => ({
  model, trainable: weightNames(model), data, epochs: 1, batchSize: 32, learningRate: 0.1,
  optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy', seed: 1
})

/** The first `perClass` digits of each class in `classes`, from the first 3,000 training digits. */
function digitsOf (classes: number[], perClass: number | number[]): TrainingData {
  const all = digits(0, 3000)
  const picked: number[] = []
  classes.forEach((c, k) => {
    const want = typeof perClass === 'number' ? perClass : perClass[k] as number
    let got = 0
    for (let i = 0; i < all.count && got < want; i++) if (all.ys[i] === c) { picked.push(i); got++ }
  })
  return takeRows(all, picked)
}

/**
 * Float64 reference for one full-batch gradient of y = softmax(xW + b) under a corrected loss:
 * FedRS: z' = s ⊙ z, ∂L/∂z = s ⊙ (softmax(z') − onehot)/n. FedLC: over the present classes only,
 * z'_c = z_c + o_c, ∂L/∂z_c = (softmax(z')_c − onehot_c)/n, and 0 for absent classes.
 */
function correctedGradient (data: TrainingData, w: Float32Array, b: Float32Array, m: number, skew: LabelSkew): { gw: Float64Array, gb: Float64Array } {
  const { count: n, xs: x, ys: y } = data
  const d = 784
  const counts = new Array<number>(m).fill(0)
  for (let r = 0; r < n; r++) counts[y[r] as number] = (counts[y[r] as number] as number) + 1
  const gw = new Float64Array(d * m)
  const gb = new Float64Array(m)
  for (let r = 0; r < n; r++) {
    const z = denseLogits(x, r, d, w, b, m)
    const classes = [...Array(m).keys()].filter(c => skew.method !== 'fedlc' || (counts[c] as number) > 0)
    const zz = new Map(classes.map(c => {
      if (skew.method === 'fedrs') return [c, (counts[c] as number) > 0 ? z[c] as number : skew.alpha * (z[c] as number)]
      if (skew.method === 'fedlc') return [c, (z[c] as number) - skew.tau * (counts[c] as number) ** -0.25]
      return [c, z[c] as number]
    }))
    const max = Math.max(...zz.values())
    let sum = 0
    for (const v of zz.values()) sum += Math.exp(v - max)
    for (const c of classes) {
      const p = Math.exp((zz.get(c) as number) - max) / sum
      const scale = skew.method === 'fedrs' && (counts[c] as number) === 0 ? skew.alpha : 1
      const dz = scale * (p - (c === y[r] ? 1 : 0)) / n
      gb[c] = (gb[c] as number) + dz
      for (let i = 0; i < d; i++) gw[i * m + c] = (gw[i * m + c] as number) + (x[r * d + i] as number) * dz
    }
  }
  return { gw, gb }
}


describe('label-skew helpers', () => {
  it('count classes, and give FedRS factors and FedLC offsets by hand', () => {
    expect(Array.from(classCounts(Uint8Array.of(2, 0, 2, 2), 4))).toEqual([1, 0, 3, 0])
    expect(Array.from(fedRsScale(Int32Array.of(5, 0, 2), 0.25))).toEqual([1, 0.25, 1])
    const { present, offsets } = fedLcOffsets(Int32Array.of(16, 0, 1, 81), 2)
    expect(Array.from(present)).toEqual([0, 2, 3])
    expect(Array.from(offsets)).toEqual([-1, -2, -2 / 3].map(Math.fround)) // −2·16^(−1/4), −2·1, −2·81^(−1/4)
  })

  it('the round request carries the correction, defaults filled in, and rejects bad values', () => {
    expect(roundRequestSchema.parse({ model: 'm' }).labelSkew).toEqual({ method: 'none' })
    expect(labelSkewSchema.parse({ method: 'fedrs' })).toEqual({ method: 'fedrs', alpha: 0.5 })
    expect(labelSkewSchema.parse(JSON.parse(JSON.stringify({ method: 'fedlc', tau: 0.3 })))).toEqual({ method: 'fedlc', tau: 0.3 })
    expect(labelSkewSchema.parse({ method: 'fedlc' })).toEqual({ method: 'fedlc', tau: 1 })
    expect(() => labelSkewSchema.parse({ method: 'fedrs', alpha: 1.5 })).toThrow(/alpha must be in \[0, 1\]/)
    expect(() => labelSkewSchema.parse({ method: 'fedlc', alpha: 0.5 })).toThrow(/alpha/)
    expect(() => labelSkewSchema.parse({ method: 'fedbn' })).toThrow()
  })
})

describe('trainLocal with a label-skew correction', () => {
  // Three of the ten classes, unequal counts: FedRS scales seven logits, FedLC's offsets differ.
  const data = (): TrainingData => digitsOf([1, 4, 7], [30, 20, 14])

  for (const skew of [{ method: 'fedrs', alpha: 0.3 }, { method: 'fedlc', tau: 1.5 }] as const) {
    it(`${skew.method}: one full-batch SGD step equals −lr × the hand-computed gradient`, async () => {
      const d = data()
      const model = softmaxRegression(784, 10, 11)
      const [w, b] = [readWeights(model, ['head/kernel']), readWeights(model, ['head/bias'])]
      const lr = 0.5
      const { deltas } = await trainLocal({ ...base(model, d), batchSize: d.count, learningRate: lr, trainable: ['head/kernel', 'head/bias'], labelSkew: skew })
      const { gw, gb } = correctedGradient(d, w, b, 10, skew)
      const expected = [...gw, ...gb].map(g => -lr * g)
      expect(worstDifference(deltas, expected)).toBeLessThan(2e-6)
      // …and it is not the plain step: the correction changed something measurable.
      const plain = correctedGradient(d, w, b, 10, { method: 'none' })
      expect(worstDifference(deltas, [...plain.gw, ...plain.gb].map(g => -lr * g))).toBeGreaterThan(1e-3)
      model.dispose()
    })
  }

  it('fedlc: the head columns of absent classes do not move at all; fedrs: they move less than without it', async () => {
    const d = digitsOf([3, 8], 100)
    const model = seededMlp([32], 4)
    const names = weightNames(model)
    const start = readWeights(model, names)
    const run = async (labelSkew: LabelSkew): Promise<{ kernel: Float32Array, bias: Float32Array }> => {
      setTrainableWeights(model, names, start)
      await trainLocal({ ...base(model, d), epochs: 2, labelSkew })
      return { kernel: readWeights(model, ['head/kernel']), bias: readWeights(model, ['head/bias']) }
    }
    const before = { kernel: readWeights(model, ['head/kernel']), bias: readWeights(model, ['head/bias']) }
    const absent = [0, 1, 2, 4, 5, 6, 7, 9]
    const columnChange = (after: { kernel: Float32Array, bias: Float32Array }, c: number): number =>
      norm([...Array.from({ length: 32 }, (_, i) => (after.kernel[i * 10 + c] as number) - (before.kernel[i * 10 + c] as number)), (after.bias[c] as number) - (before.bias[c] as number)])
    const lc = await run({ method: 'fedlc', tau: 1 })
    for (const c of absent) expect(columnChange(lc, c)).toBe(0)
    expect(columnChange(lc, 3)).toBeGreaterThan(0.01)
    const plain = await run({ method: 'none' })
    const rs = await run({ method: 'fedrs', alpha: 0.3 })
    const total = (after: { kernel: Float32Array, bias: Float32Array }): number => absent.reduce((s, c) => s + columnChange(after, c), 0)
    expect(total(rs)).toBeLessThan(0.7 * total(plain))
    model.dispose()
  })

  it('an MLP (logits through the sub-model) on data holding every class, equally often, trains as with plain cross-entropy', async () => {
    // Every class present: FedRS scales nothing, whatever α. Equal counts: FedLC's offsets are one
    // constant, which the softmax ignores.
    const d = digitsOf([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 20)
    const model = seededMlp([24, 12], 9)
    const names = weightNames(model)
    const start = readWeights(model, names)
    const run = async (labelSkew: LabelSkew): Promise<Float32Array> => {
      setTrainableWeights(model, names, start)
      return (await trainLocal({ ...base(model, d), epochs: 2, batchSize: 16, labelSkew })).deltas
    }
    const plain = await run({ method: 'none' })
    const size = norm(plain)
    expect(size).toBeGreaterThan(0.1)
    // Logits → logSoftmax versus softmax → clip → log: equal up to float32 rounding.
    for (const skew of [{ method: 'fedrs', alpha: 0.2 }, { method: 'fedlc', tau: 2 }] as const) {
      const corrected = await run(skew)
      expect(norm(corrected.map((c, i) => c - (plain[i] as number)))).toBeLessThan(1e-4 * size)
    }
    model.dispose()
  })

  it('rejects a bad correction, a regression loss, and a model without a dense softmax head, leaking nothing', async () => {
    const model = seededMlp([8], 1)
    const d = digits(0, 20)
    const before = tf.memory().numTensors
    const cases: Array<[Partial<TrainLocalOptions>, RegExp]> = [
      [{ labelSkew: { method: 'fedrs', alpha: 1.5 } }, /labelSkew.alpha must be in \[0, 1\]/],
      [{ labelSkew: { method: 'fedlc', tau: -1 } }, /labelSkew.tau must be a finite number ≥ 0/],
      [{ labelSkew: { method: 'fedbn' } as unknown as LabelSkew }, /labelSkew.method must be none, fedrs or fedlc/],
      [{ labelSkew: { method: 'fedrs', alpha: 0.5 }, loss: 'meanSquaredError', data: { ...d, ys: new Float32Array(200) } }, /needs loss sparseCategoricalCrossentropy/]
    ]
    for (const [change, message] of cases) {
      await expect(trainLocal({ ...base(model, d), ...change })).rejects.toThrow(InvalidInputError)
      await expect(trainLocal({ ...base(model, d), ...change })).rejects.toThrow(message)
    }
    const linear = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [784], units: 10, name: 'head' })] })
    await expect(trainLocal({ ...base(linear, d), labelSkew: { method: 'fedlc', tau: 1 } })).rejects.toThrow(/last layer is a dense softmax layer, its last layer is Dense \(linear\)/)
    linear.dispose()
    for (const labelSkew of [{ method: 'fedrs', alpha: 0.5 }, { method: 'fedlc', tau: 1 }] as const) {
      await trainLocal({ ...base(model, d), labelSkew, optimizer: 'momentum', proxMu: 0.1, epochs: 2, batchSize: 7 })
    }
    expect(tf.memory().numTensors).toBe(before)
    model.dispose()
  })
})
