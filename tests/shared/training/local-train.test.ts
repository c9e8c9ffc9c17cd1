/**
 * trainLocal on real MNIST digits and on small linear models whose gradients are computed here by
 * hand in float64 (the independent reference for the loss functions and FedProx's proximal term).
 */
import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'
import { trainLocal, type TrainLocalOptions } from '../../../shared/training/local-train.ts'
import { evaluateAccuracy } from '../../../shared/training/evaluate.ts'
import { readWeights, setTrainableWeights, weightNames } from '../../../shared/training/weights.ts'
import type { TrainingData } from '../../../shared/training/data.ts'
import { denseLogits, digits, firstDifference, norm, seededMlp, seedWeights, softmaxRegression, worstDifference } from './fixtures.ts'

let backend: string
beforeAll(async () => { backend = await tfjsBackend() })

const base = (model: tfl.LayersModel, data: TrainingData): TrainLocalOptions => ({
  model, trainable: weightNames(model), data, epochs: 1, batchSize: 32, learningRate: 0.1,
  optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy', seed: 1
})


/**
 * Float64 reference for one full-batch gradient of a dense layer y = act(xW + b):
 * cross-entropy over softmax → ∂L/∂z = (p − onehot)/n; mean squared error (linear) → 2(z − t)/(n·m).
 */
function denseGradient (x: Float32Array, n: number, d: number, w: Float32Array, b: Float32Array, m: number, loss: 'ce' | 'mse', targets: ArrayLike<number>): { gw: Float64Array, gb: Float64Array } {
  const gw = new Float64Array(d * m)
  const gb = new Float64Array(m)
  for (let r = 0; r < n; r++) {
    const z = denseLogits(x, r, d, w, b, m)
    const dz = new Float64Array(m)
    if (loss === 'ce') {
      const max = Math.max(...z)
      const e = z.map(v => Math.exp(v - max))
      const sum = e.reduce((a, v) => a + v, 0)
      for (let j = 0; j < m; j++) dz[j] = ((e[j] as number) / sum - (j === targets[r] ? 1 : 0)) / n
    } else {
      for (let j = 0; j < m; j++) dz[j] = 2 * ((z[j] as number) - (targets[r * m + j] as number)) / (n * m)
    }
    for (let j = 0; j < m; j++) {
      gb[j] = (gb[j] as number) + (dz[j] as number)
      for (let i = 0; i < d; i++) gw[i * m + j] = (gw[i * m + j] as number) + (x[r * d + i] as number) * (dz[j] as number)
    }
  }
  return { gw, gb }
}

function expectClose (actual: Float32Array, expected: ArrayLike<number>, tolerance: number): void {
  expect(worstDifference(actual, expected)).toBeLessThan(tolerance)
}

describe('trainLocal', () => {
  it('trains only the named tensors and returns new − base in the order given', async () => {
    const model = seededMlp([32], 3)
    const all = weightNames(model)
    const before = all.map(n => readWeights(model, [n]))
    const result = await trainLocal({ ...base(model, digits(0, 300)), trainable: ['head/bias', 'head/kernel'] })
    const after = all.map(n => readWeights(model, [n]))
    for (const n of ['hidden_1/kernel', 'hidden_1/bias']) expect(firstDifference(after[all.indexOf(n)]!, before[all.indexOf(n)]!)).toBe(-1)
    const expected = new Float32Array(10 + 32 * 10)
    let offset = 0
    for (const n of ['head/bias', 'head/kernel']) {
      const a = after[all.indexOf(n)]!
      const b = before[all.indexOf(n)]!
      for (let i = 0; i < a.length; i++) expected[offset + i] = (a[i] as number) - (b[i] as number)
      offset += a.length
    }
    expect(firstDifference(result.deltas, expected)).toBe(-1)
    expect(norm(result.deltas)).toBeGreaterThan(0.01)
    expect(result.samples).toBe(300)
    model.dispose()
  })

  it('one full-batch SGD step equals −lr × the hand-computed cross-entropy gradient', async () => {
    const data = digits(0, 64)
    const model = softmaxRegression(784, 10, 5)
    const [w, b] = [readWeights(model, ['head/kernel']), readWeights(model, ['head/bias'])]
    const lr = 0.5
    const { deltas } = await trainLocal({ ...base(model, data), batchSize: 64, learningRate: lr, trainable: ['head/kernel', 'head/bias'] })
    const { gw, gb } = denseGradient(data.xs, 64, 784, w, b, 10, 'ce', data.ys)
    expectClose(deltas, [...gw, ...gb].map(g => -lr * g), 2e-6)
    model.dispose()
  })

  it('one full-batch SGD step equals −lr × the hand-computed mean-squared-error gradient', async () => {
    const random = mulberry32(8)
    const n = 40
    const xs = Float32Array.from({ length: n * 6 }, () => random() * 2 - 1)
    const ys = Float32Array.from({ length: n * 3 }, () => random() * 4 - 2)
    const model = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [6], units: 3, name: 'head' })] })
    seedWeights(model, 9)
    const [w, b] = [readWeights(model, ['head/kernel']), readWeights(model, ['head/bias'])]
    const { deltas, meanLoss } = await trainLocal({
      ...base(model, { xs, ys, count: n, featureShape: [6] }), loss: 'meanSquaredError', batchSize: n, learningRate: 0.2, trainable: ['head/kernel', 'head/bias']
    })
    const { gw, gb } = denseGradient(xs, n, 6, w, b, 3, 'mse', ys)
    expectClose(deltas, [...gw, ...gb].map(g => -0.2 * g), 1e-6)
    expect(meanLoss).toBeGreaterThan(0)
    model.dispose()
  })

  it('adds FedProx\'s μ/2‖w − w⁰‖²: two full-batch steps differ from plain SGD by −lr·μ·(w¹ − w⁰)', async () => {
    const data = digits(100, 164)
    const model = softmaxRegression(784, 10, 6)
    const names = ['head/kernel', 'head/bias']
    const start = readWeights(model, names)
    const lr = 0.5
    const mu = 0.7
    const run = async (epochs: number, proxMu: number): Promise<Float32Array> => {
      setTrainableWeights(model, names, start)
      return (await trainLocal({ ...base(model, data), trainable: names, epochs, batchSize: 64, learningRate: lr, proxMu, seed: 4 })).deltas
    }
    const firstStep = await run(1, 0)
    const plain = await run(2, 0)
    const prox = await run(2, mu)
    // Step 1 starts at w⁰, where the proximal gradient μ(w − w⁰) is zero; step 2 adds μ(w¹ − w⁰).
    expectClose(prox, plain.map((p, i) => p - lr * mu * (firstStep[i] as number)), 2e-6)
    expect(firstDifference(prox, plain)).not.toBe(-1)
    model.dispose()
  })

  it('with proxMu > 0 ends closer to the start than with proxMu = 0 on the same data and seed', async () => {
    const model = seededMlp([32], 2)
    const names = weightNames(model)
    const start = readWeights(model, names)
    const data = digits(0, 500)
    const plain = await trainLocal({ ...base(model, data), epochs: 3 })
    setTrainableWeights(model, names, start)
    const prox = await trainLocal({ ...base(model, data), epochs: 3, proxMu: 1 })
    expect(norm(prox.deltas)).toBeLessThan(0.9 * norm(plain.deltas))
    model.dispose()
  })

  it('lowers the loss on MNIST epoch after epoch and learns the digits', async () => {
    const model = seededMlp([64], 1)
    const test = digits(0, 1000, 'test')
    const untrained = await evaluateAccuracy(model, test)
    const seen: number[] = []
    const result = await trainLocal({ ...base(model, digits(0, 2000)), epochs: 3, onProgress: p => { if (p.batch === p.batches) seen.push(p.epoch) } })
    expect(seen).toEqual([1, 2, 3])
    expect(result.epochLosses).toHaveLength(3)
    for (let i = 1; i < 3; i++) expect(result.epochLosses[i]).toBeLessThan(result.epochLosses[i - 1] as number)
    expect(result.meanLoss).toBe(result.epochLosses[2])
    expect(result.meanLoss).toBeLessThan(0.5 * (result.epochLosses[0] as number))
    expect(untrained).toBeLessThan(0.3)
    expect(await evaluateAccuracy(model, test)).toBeGreaterThan(0.85)
    model.dispose()
  })

  it('is reproducible: the same seed gives bit-identical deltas (on the default backend and on cpu), another seed does not', async () => {
    const runTwice = async (): Promise<[Float32Array, Float32Array, Float32Array]> => {
      const model = seededMlp([16], 7)
      const names = weightNames(model)
      const start = readWeights(model, names)
      const data = digits(0, 256)
      const go = async (seed: number, optimizer: 'adam' | 'momentum'): Promise<Float32Array> => {
        setTrainableWeights(model, names, start)
        return (await trainLocal({ ...base(model, data), epochs: 2, optimizer, learningRate: 0.01, proxMu: 0.1, seed })).deltas
      }
      const out: [Float32Array, Float32Array, Float32Array] = [await go(1, 'adam'), await go(1, 'adam'), await go(2, 'adam')]
      expect(firstDifference(await go(3, 'momentum'), await go(3, 'momentum'))).toBe(-1)
      model.dispose()
      return out
    }
    try {
      for (const name of [backend, 'cpu']) {
        await tf.setBackend(name)
        const [a, b, c] = await runTwice()
        expect(firstDifference(a, b)).toBe(-1)
        expect(firstDifference(a, c)).not.toBe(-1)
      }
    } finally {
      await tf.setBackend(backend)
    }
  })

  it('stops between batches when its signal aborts, with the signal\'s reason, leaking nothing', async () => {
    const model = seededMlp([16], 1)
    const before = tf.memory().numTensors
    const controller = new AbortController()
    const reason = new Error('round closed')
    const batches: number[] = []
    await expect(trainLocal({
      ...base(model, digits(0, 320)), epochs: 3, optimizer: 'adam', proxMu: 0.5, signal: controller.signal,
      onProgress: p => { batches.push(p.batch); if (p.batch === 3) controller.abort(reason) }
    })).rejects.toBe(reason)
    expect(batches).toEqual([1, 2, 3])
    expect(tf.memory().numTensors).toBe(before)
    let called = false
    await expect(trainLocal({ ...base(model, digits(0, 32)), signal: AbortSignal.abort(reason), onProgress: () => { called = true } })).rejects.toBe(reason)
    expect(called).toBe(false)
    model.dispose()
  })

  it('leaks no tensor with any optimizer, with or without the proximal term', async () => {
    const model = seededMlp([16], 1)
    const data = digits(0, 100)
    const before = tf.memory().numTensors
    for (const optimizer of ['sgd', 'momentum', 'adam'] as const) {
      for (const proxMu of [0, 0.01]) await trainLocal({ ...base(model, data), optimizer, proxMu, epochs: 2, batchSize: 30 })
    }
    await evaluateAccuracy(model, digits(0, 100, 'test'), 33)
    expect(tf.memory().numTensors).toBe(before)
    model.dispose()
  })

  it('returns to the event loop while training, so timers (WebSocket pings) still run', async () => {
    const model = seededMlp([16], 1)
    let ticks = 0
    const timer = setInterval(() => { ticks++ }, 1)
    let ticksDuringTraining = 0
    try {
      await trainLocal({ ...base(model, digits(0, 1000)), epochs: 3, batchSize: 4, onProgress: p => { if (p.epoch === 3 && p.batch === p.batches) ticksDuringTraining = ticks } })
    } finally {
      clearInterval(timer)
    }
    expect(ticksDuringTraining).toBeGreaterThan(0)
    model.dispose()
  })

  it('trains a tensor the coordinator names even if its layer is frozen, and restores the flag', async () => {
    const model = seededMlp([16], 1)
    model.getLayer('hidden_1').trainable = false
    const { deltas } = await trainLocal({ ...base(model, digits(0, 64)), trainable: ['hidden_1/bias'] })
    expect(norm(deltas)).toBeGreaterThan(0)
    expect(model.getLayer('hidden_1').trainableWeights).toHaveLength(0)
    expect(model.weights.find(w => w.originalName === 'hidden_1/bias')!.read()).toHaveProperty('trainable', false)
    model.dispose()
  })

  it('leaves BatchNorm\'s moving statistics to the layer: no optimizer step, no proximal term, the change still in the update', async () => {
    // BatchNorm first, so its statistics see the raw inputs. One full batch per epoch: each epoch
    // moves them by m ← m·momentum + (1 − momentum)·batch moment (population variance, as tf.moments).
    const count = 48
    const d = 4
    const momentum = 0.9
    const epochs = 3
    const random = mulberry32(7)
    const data: TrainingData = {
      xs: Float32Array.from({ length: count * d }, (_, i) => (i % d) * 2 + random() * (1 + (i % d))),
      ys: Int32Array.from({ length: count }, (_, i) => i % 3),
      count,
      featureShape: [d]
    }
    const mean = new Float64Array(d)
    const variance = new Float64Array(d)
    for (let j = 0; j < d; j++) {
      for (let r = 0; r < count; r++) mean[j] = (mean[j] as number) + (data.xs[r * d + j] as number) / count
      for (let r = 0; r < count; r++) variance[j] = (variance[j] as number) + ((data.xs[r * d + j] as number) - (mean[j] as number)) ** 2 / count
    }
    const kept = momentum ** epochs
    const expectedMean = Array.from(mean, m => (1 - kept) * m)
    const expectedVariance = Array.from(variance, v => kept + (1 - kept) * v)
    const bnModel = (): tfl.LayersModel => {
      const input = tfl.input({ shape: [d] })
      const normed = tfl.layers.batchNormalization({ name: 'bn', momentum }).apply(input) as tfl.SymbolicTensor
      const out = tfl.layers.dense({ units: 3, activation: 'softmax', name: 'head', kernelInitializer: 'glorotUniform' }).apply(normed) as tfl.SymbolicTensor
      return tfl.model({ inputs: input, outputs: out })
    }
    for (const [optimizer, proxMu, frozen] of [['sgd', 0, false], ['adam', 0, false], ['adam', 0.5, false], ['momentum', 0.5, true]] as const) {
      const model = bnModel()
      if (frozen) model.getLayer('bn').trainable = false
      const trainable = ['bn/gamma', 'bn/beta', 'bn/moving_mean', 'bn/moving_variance', 'head/kernel']
      const { deltas } = await trainLocal({ ...base(model, data), trainable, batchSize: count, epochs, optimizer, proxMu, learningRate: 0.05 })
      const label = `${optimizer} μ=${proxMu}${frozen ? ' frozen' : ''}`
      expect(worstDifference(readWeights(model, ['bn/moving_mean']), expectedMean), label).toBeLessThan(1e-5)
      expect(worstDifference(readWeights(model, ['bn/moving_variance']), expectedVariance), label).toBeLessThan(1e-4)
      // The update carries the statistics' change (they started at 0 and 1) after gamma and beta.
      expect(worstDifference(deltas.subarray(2 * d, 3 * d), expectedMean), label).toBeLessThan(1e-5)
      expect(worstDifference(deltas.subarray(3 * d, 4 * d), expectedVariance.map(v => v - 1)), label).toBeLessThan(1e-4)
      // gamma is a parameter: trained even in a frozen layer, whose flags come back as they were.
      expect(norm(deltas.subarray(0, d)), label).toBeGreaterThan(0)
      expect(model.getLayer('bn').trainableWeights, label).toHaveLength(frozen ? 0 : 2)
      model.dispose()
    }
  })

  it('with only layer state named, runs training-mode forward passes and no optimizer step, FedProx\'s term included', async () => {
    const data: TrainingData = { xs: Float32Array.from({ length: 32 * 4 }, (_, i) => i % 5), ys: new Int32Array(32), count: 32, featureShape: [4] }
    const runs: Float32Array[] = []
    // The proximal term is over parameters: with none named there is none (it once threw on tf.addN([])).
    for (const proxMu of [0, 0.1]) {
      const input = tfl.input({ shape: [4] })
      const normed = tfl.layers.batchNormalization({ name: 'bn' }).apply(input) as tfl.SymbolicTensor
      const out = tfl.layers.dense({ units: 3, activation: 'softmax', name: 'head' }).apply(normed) as tfl.SymbolicTensor
      const model = tfl.model({ inputs: input, outputs: out })
      const before = readWeights(model, ['bn/gamma', 'head/kernel'])
      const { deltas } = await trainLocal({ ...base(model, data), trainable: ['bn/moving_mean', 'bn/moving_variance'], batchSize: 8, proxMu })
      expect(norm(deltas)).toBeGreaterThan(0)
      expect(readWeights(model, ['bn/gamma', 'head/kernel'])).toEqual(before)
      model.dispose()
      runs.push(deltas)
    }
    expect(runs[1]).toEqual(runs[0])
  })

  it('rejects bad arguments with InvalidInputError naming them, and leaks nothing doing so', async () => {
    const model = seededMlp([16], 1)
    const data = digits(0, 10)
    const before = tf.memory().numTensors
    const cases: Array<[Partial<TrainLocalOptions>, RegExp]> = [
      [{ trainable: ['head/kernel', 'hidden_9/kernel', 'nope'] }, /trainable: no tensor named "hidden_9\/kernel", "nope"/],
      [{ trainable: ['head/bias', 'head/bias'] }, /trainable: "head\/bias" named more than once/],
      [{ trainable: [] }, /trainable must be a non-empty list/],
      [{ epochs: 0 }, /epochs must be a positive integer/],
      [{ batchSize: 1.5 }, /batchSize must be a positive integer/],
      [{ learningRate: 0 }, /learningRate/],
      [{ optimizer: 'rmsprop' as 'sgd' }, /optimizer must be one of sgd, adam, momentum/],
      [{ loss: 'hinge' as 'meanSquaredError' }, /loss must be one of/],
      [{ proxMu: -1 }, /proxMu/],
      [{ momentum: 1 }, /momentum/],
      [{ seed: 0.5 }, /seed/],
      [{ data: { ...data, featureShape: [28, 28] } }, /featureShape \[28, 28\] does not fit the model's input \[784\]/],
      [{ data: { ...data, ys: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) } }, /data.ys\[9\] = 10 is not a class index in 0..9/],
      [{ data: { ...data, xs: data.xs.subarray(1) } }, /data.xs has 7839 values/],
      [{ data: { ...data, count: 0 } }, /data.count must be a positive integer/],
      [{ loss: 'meanSquaredError' }, /meanSquaredError needs count × 10 targets/]
    ]
    for (const [change, message] of cases) {
      const attempt = trainLocal({ ...base(model, data), ...change })
      await expect(attempt).rejects.toThrow(InvalidInputError)
      await expect(trainLocal({ ...base(model, data), ...change })).rejects.toThrow(message)
    }
    expect(tf.memory().numTensors).toBe(before)
    model.dispose()
  })
})
