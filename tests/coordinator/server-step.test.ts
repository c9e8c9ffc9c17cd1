/**
 * The server step over a real tfjs layers model with BatchNormalization: server optimisers step
 * the parameters; the layer's moving statistics take the clients' plain mean under every strategy.
 */
import { describe, expect, it } from 'vitest'
import * as tfl from '@tensorflow/tfjs-layers'
import { modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'
import { readModel } from '../../shared/formats/index.ts'
import { layerStateRanges, readTrainable, trainableLayout } from '../../shared/rounds/trainable.ts'
import { carriedState, layoutKey, serverStep } from '../../coordinator/rounds/strategy.ts'
import type { RoundConfig } from '../../shared/rounds/config.ts'
import type { NormalisedModel } from '../../shared/model/types.ts'

async function batchNormModel (): Promise<NormalisedModel> {
  const model = tfl.sequential()
  model.add(tfl.layers.dense({ inputShape: [3], units: 4, name: 'hidden' }))
  model.add(tfl.layers.batchNormalization({ name: 'norm' }))
  // A layer of another kind whose weight is merely named like a statistic stays a parameter.
  model.add(tfl.layers.dense({ units: 2, name: 'moving_mean_head' }))
  const files = await modelFiles(model)
  model.dispose()
  return await readModel(files)
}

describe('layerStateRanges', () => {
  it('finds BatchNormalization\'s moving mean and variance in the update layout, and nothing else', async () => {
    const model = await batchNormModel()
    const layout = trainableLayout(model.tensors, undefined)
    const ranges = layerStateRanges(model.tensors, model.metadata.layers, layout)
    const named = ranges.map(([start, end]) => [layout.names[layout.offsets.indexOf(start)], end - start])
    expect(named).toEqual([['norm/moving_mean', 4], ['norm/moving_variance', 4]])
    expect(layerStateRanges(model.tensors, model.metadata.layers, trainableLayout(model.tensors, ['hidden']))).toEqual([])
  })
})

describe('layoutKey', () => {
  it('keeps apart optimiser states of tensors with the same names and other shapes', () => {
    const fedadam = { strategy: { name: 'fedadam' } } as unknown as RoundConfig
    const v1 = [{ name: 'hidden/kernel', shape: [3, 4] }, { name: 'hidden/bias', shape: [4] }]
    const v2 = [{ name: 'hidden/kernel', shape: [3, 2] }, { name: 'hidden/bias', shape: [2] }]
    expect(layoutKey(fedadam, v1)).toBe(layoutKey(fedadam, v1.map(t => ({ ...t }))))
    expect(layoutKey(fedadam, v1)).not.toBe(layoutKey(fedadam, v2))
    expect(layoutKey(fedadam, v1)).not.toBe(layoutKey({ strategy: { name: 'fedyogi' } } as unknown as RoundConfig, v1))
  })
})

describe('serverStep', () => {
  it.each(['fedadam', 'fedyogi', 'fedavgm', 'fedavg'] as const)('%s: the statistics become base + mean delta; the parameters take the strategy\'s step', async name => {
    const model = await batchNormModel()
    const layout = trainableLayout(model.tensors, undefined)
    const ranges = layerStateRanges(model.tensors, model.metadata.layers, layout)
    const base = readTrainable(model.tensors, model.weights, layout)
    // A tiny change everywhere: FedAdam's step is η·m/(√v + τ), far larger than the change itself.
    const meanDelta = new Float32Array(base.length).fill(-1e-4)
    const config = { strategy: name === 'fedavg' ? { name } : { name, lr: 0.5 } } as unknown as RoundConfig
    const plain = serverStep(config, base, meanDelta, undefined).values
    const { values } = serverStep(config, base, meanDelta, undefined, ranges)
    const inState = (i: number): boolean => ranges.some(([s, e]) => i >= s && i < e)
    for (let i = 0; i < base.length; i++) {
      if (inState(i)) expect(values[i]).toBe(Math.fround((base[i] as number) - 1e-4))
      else expect(values[i]).toBe(plain[i])
    }
    // moving_variance starts at 1; without the rule FedAdam moves it 25× further than the clients did.
    const variance = ranges[1] as [number, number]
    expect(Math.min(...values.subarray(...variance))).toBeGreaterThan(0.9998)
    if (name === 'fedadam') expect(Math.max(...plain.subarray(...variance))).toBeLessThan(1 - 20e-4)
  })
})

describe('carriedState', () => {
  const state = new Uint8Array([1, 2, 3])
  /** Versions 1… made by `rounds` (null: uploaded), as repo.uploadedBetween answers over them. */
  const uploadedBetween = (...rounds: Array<string | null>) => (from: number, to: number): boolean =>
    rounds.some((round, i) => i + 1 > from && i + 1 <= to && round === null)

  it('carries the optimiser state across rounds, and from a row kept before versions were recorded', () => {
    expect(carriedState({ state, version: 3 }, 4, uploadedBetween(null, 'r1', 'r2', 'r3'))).toBe(state)
    expect(carriedState({ state, version: null }, 3, uploadedBetween(null, 'r1', null))).toBe(state)
    expect(carriedState(undefined, 1, uploadedBetween(null))).toBeUndefined()
  })

  it('starts afresh after an uploaded version, or for a base older than the state', () => {
    // v1 uploaded, v2 and v3 from rounds, v4 uploaded by an operator: a round on v4 or later starts fresh.
    expect(carriedState({ state, version: 3 }, 4, uploadedBetween(null, 'r1', 'r2', null))).toBeUndefined()
    expect(carriedState({ state, version: 3 }, 5, uploadedBetween(null, 'r1', 'r2', null, 'r4'))).toBeUndefined()
    expect(carriedState({ state, version: 3 }, 2, uploadedBetween(null, 'r1', 'r2'))).toBeUndefined()
  })
})
