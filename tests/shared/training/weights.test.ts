import { beforeAll, describe, expect, it } from 'vitest'
import * as tf from '@tensorflow/tfjs-core'
import { tfjsBackend } from '../../../node-runtime/engines/tfjs.ts'
import { mnistMlp } from '../../../node-runtime/examples/mnist-mlp.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { evaluateAccuracy } from '../../../shared/training/evaluate.ts'
import { takeRows } from '../../../shared/training/data.ts'
import { readWeights, setTrainableWeights, weightNames, weightSize } from '../../../shared/training/weights.ts'
import { digits, firstDifference, seededMlp } from './fixtures.ts'

beforeAll(async () => { await tfjsBackend() })

describe('mnistMlp hidden sizes', () => {
  it('names layers hidden_1 … hidden_n, head, with the sizes asked for; defaults to 128-64', () => {
    const wide = mnistMlp({ hidden: [200, 200] })
    expect(wide.weights.map(w => [w.originalName, w.shape])).toEqual([
      ['hidden_1/kernel', [784, 200]], ['hidden_1/bias', [200]], ['hidden_2/kernel', [200, 200]], ['hidden_2/bias', [200]], ['head/kernel', [200, 10]], ['head/bias', [10]]
    ])
    const plain = mnistMlp()
    expect(plain.weights.map(w => w.shape)).toEqual([[784, 128], [128], [128, 64], [64], [64, 10], [10]])
    expect(weightSize(plain, weightNames(plain))).toBe(784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10)
    expect(() => mnistMlp({ hidden: [0] })).toThrow(InvalidInputError)
    tf.dispose([wide, plain].flatMap(m => m.weights.map(w => w.read())))
  })

  it('with a seed starts from the same weights every time (on any backend), another seed from others', async () => {
    const initial = (seed: number): Float32Array => {
      const model = mnistMlp({ hidden: [32, 16], seed })
      const values = readWeights(model, weightNames(model))
      model.dispose()
      return values
    }
    const a = initial(1)
    expect(firstDifference(a, initial(1))).toBe(-1)
    expect(firstDifference(a, initial(2))).not.toBe(-1)
    const backend = tf.getBackend()
    try {
      await tf.setBackend(backend === 'cpu' ? 'wasm' : 'cpu')
      expect(firstDifference(a, initial(1))).toBe(-1)
    } finally {
      await tf.setBackend(backend)
    }
    // Glorot-normal kernels (truncated at 2σ, σ² = 2 / (fan in + fan out)), distinct per layer; zero biases.
    const kernel1 = a.subarray(0, 784 * 32)
    const kernel2 = a.subarray(784 * 32 + 32, 784 * 32 + 32 + 32 * 16)
    const sigma = Math.sqrt(2 / (784 + 32))
    expect(Math.max(...kernel1.map(Math.abs))).toBeLessThanOrEqual(2 * sigma * 1.0001)
    const variance = kernel1.reduce((s, x) => s + x * x, 0) / kernel1.length
    expect(variance).toBeGreaterThan(0.7 * sigma * sigma) // a 2σ-truncated normal keeps ≈ 0.77 of σ²
    expect(variance).toBeLessThan(0.85 * sigma * sigma)
    expect(firstDifference(kernel1.subarray(0, 16), kernel2.subarray(0, 16))).toBe(0)
    expect(a.subarray(784 * 32, 784 * 32 + 32).every(x => x === 0)).toBe(true)
    expect(() => mnistMlp({ seed: 1.5 })).toThrow(/mnistMlp: seed must be an integer/)
  })
})

describe('readWeights / setTrainableWeights', () => {
  it('concatenate and split in the order of the names given, exactly', () => {
    const model = seededMlp([8], 1)
    const kernel = readWeights(model, ['head/kernel'])
    const bias = readWeights(model, ['head/bias'])
    const both = readWeights(model, ['head/bias', 'head/kernel'])
    expect(both.length).toBe(10 + 80)
    expect(firstDifference(both.subarray(0, 10), bias)).toBe(-1)
    expect(firstDifference(both.subarray(10), kernel)).toBe(-1)
    const values = Float32Array.from({ length: 90 }, (_, i) => Math.fround(i / 7 - 3))
    setTrainableWeights(model, ['head/bias', 'head/kernel'], values)
    expect(firstDifference(readWeights(model, ['head/bias', 'head/kernel']), values)).toBe(-1)
    expect(Array.from(readWeights(model, ['head/bias']))).toEqual(Array.from(values.subarray(0, 10)))
    model.dispose()
  })

  it('find tensors by their saved name even when tfjs renamed the variable (a second model with the same layers)', () => {
    const first = seededMlp([8], 1)
    const second = seededMlp([8], 2)
    const secondHead = second.weights.find(w => w.originalName === 'head/bias')!
    expect(secondHead.name).not.toBe('head/bias')
    setTrainableWeights(second, ['head/bias'], new Float32Array(10).fill(0.25))
    expect(Array.from(readWeights(second, ['head/bias']))).toEqual(new Array(10).fill(0.25))
    expect(Array.from(readWeights(first, ['head/bias']))).toEqual(new Array(10).fill(0))
    first.dispose()
    second.dispose()
  })

  it('reject unknown names, a wrong length and a non-Float32Array, naming the argument', () => {
    const model = seededMlp([8], 1)
    expect(() => readWeights(model, ['head/kernal'])).toThrow(/names: no tensor named "head\/kernal" in the model \(it has hidden_1\/kernel, hidden_1\/bias, head\/kernel, head\/bias\)/)
    expect(() => setTrainableWeights(model, ['head/bias'], new Float32Array(9))).toThrow(/values has 9 entries, the tensors named in trainable hold 10/)
    expect(() => setTrainableWeights(model, ['nope'], new Float32Array(9))).toThrow(/trainable: no tensor named "nope"/)
    expect(() => setTrainableWeights(model, ['head/bias'], new Array(10).fill(0) as unknown as Float32Array)).toThrow(InvalidInputError)
    model.dispose()
  })
})

describe('evaluateAccuracy', () => {
  it('matches argmax over model.predict computed separately, for any batch size', async () => {
    const model = seededMlp([16], 4)
    const data = digits(0, 300, 'test')
    const probs = model.predict(tf.tensor2d(data.xs, [300, 784])) as tf.Tensor2D
    const p = await probs.array()
    probs.dispose()
    let right = 0
    p.forEach((row, i) => { if (row.indexOf(Math.max(...row)) === data.ys[i]) right++ })
    const before = tf.memory().numTensors
    for (const batch of [1, 7, 300, 512]) expect(await evaluateAccuracy(model, data, batch)).toBe(right / 300)
    expect(tf.memory().numTensors).toBe(before)
    await expect(evaluateAccuracy(model, { ...data, ys: new Uint8Array(600) })).rejects.toThrow(/one class label per row/)
    await expect(evaluateAccuracy(model, data, 0)).rejects.toThrow(/batchSize/)
    model.dispose()
  })

  it('counts a row whose output holds a NaN as wrong, not as class 0', async () => {
    const model = seededMlp([16], 4)
    const data = digits(0, 300, 'test')
    const zeros = Array.from(data.ys).filter(y => y === 0).length
    expect(zeros).toBeGreaterThan(0)
    setTrainableWeights(model, ['head/bias'], Float32Array.of(NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    const before = tf.memory().numTensors
    expect(await evaluateAccuracy(model, data, 64)).toBe(0)
    expect(tf.memory().numTensors).toBe(before)
    model.dispose()
  })
})

describe('takeRows', () => {
  it('copies the chosen rows and their labels, in order', () => {
    const data = digits(0, 50)
    const part = takeRows(data, [7, 3, 49])
    expect(part.count).toBe(3)
    expect(Array.from(part.ys)).toEqual([data.ys[7], data.ys[3], data.ys[49]])
    expect(Array.from(part.xs.subarray(784, 1568))).toEqual(Array.from(data.xs.subarray(3 * 784, 4 * 784)))
    expect(() => takeRows(data, [50])).toThrow(/indices\[0\] = 50 is not a row of data/)
  })
})
