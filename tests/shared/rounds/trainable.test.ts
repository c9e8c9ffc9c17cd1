/** What a round may name in `trainable`, and what it is told when it names something else. */
import { expect, it } from 'vitest'
import { trainableLayout, trainableUnits } from '../../../shared/rounds/trainable.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'

const plain = (layer: string): TensorInfo => ({ name: `${layer}/kernel`, dtype: 'float32', shape: [2, 2], byteLength: 16, layer })
const quantised = (layer: string): TensorInfo => ({ ...plain(layer), byteLength: 4, quantization: { dtype: 'uint8', scale: 0.1, min: 0 } })

it('lists the units with plain float32 tensors, and names them when an unknown one is asked for', () => {
  const tensors = [plain('dense_1'), quantised('conv'), plain('head')]
  expect(trainableUnits(tensors)).toEqual(['dense_1', 'head'])
  expect(trainableLayout(tensors, ['head'])).toMatchObject({ names: ['head/kernel'], offsets: [0], parameters: 4 })
  expect(() => trainableLayout(tensors, ['conv', 'tail'])).toThrow('trainable: unknown or non-float32 unit(s) conv, tail; this model has dense_1, head')
})

it('says a model with no plain float32 tensor has nothing to train, instead of an empty list', () => {
  expect(() => trainableLayout([quantised('a'), { ...plain('b'), dtype: 'int32' }], ['head'])).toThrow('trainable: unknown or non-float32 unit(s) head; this model has none: no tensor of it is plain float32 (quantised or integer weights take no float updates)')
  // Without a list (a round on all of the model's units): the model is named as the reason, not the clients.
  expect(() => trainableLayout([quantised('a')], undefined)).toThrow('trainable: this model has no trainable unit: no tensor of it is plain float32 (quantised or integer weights take no float updates)')
})

it('keeps the message short for a model with many units, and points to where they are listed', () => {
  const tensors = Array.from({ length: 300 }, (_, i) => plain(`layer_${i}`))
  const message = (() => { try { trainableLayout(tensors, Array.from({ length: 50 }, (_, i) => `x${i}`)); return '' } catch (err) { return (err as Error).message } })()
  expect(message).toMatch(/^trainable: unknown or non-float32 unit\(s\) x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, …; this model has layer_0, .*layer_39, … \(300 in all; `blockfed versions` lists them\)$/)
  expect(message.length).toBeLessThan(1000)
})
