/**
 * Classification accuracy of a tfjs LayersModel on a labelled dataset: the share of rows whose
 * highest-scoring output is the label. Evaluated in batches so a large test set fits a phone.
 */
import * as tf from '@tensorflow/tfjs-core'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import { InvalidInputError } from '../errors/errors.ts'
import { checkData, rowSize, type TrainingData } from './data.ts'
import { EVAL_BATCH_SIZE } from './constants.ts'

/**
 * Fraction of rows in `data` (one class label per row) the model classifies right, in [0, 1].
 * A row whose output holds a NaN counts as wrong rather than throwing: accuracy measures the
 * model, and a diverged one (NaN weights after a bad round) classifies nothing, so reads 0.
 *
 * @example
 * const acc = await evaluateAccuracy(model, { xs, ys: labels, count, featureShape: [784] })
 */
export async function evaluateAccuracy (model: LayersModel, data: TrainingData, batchSize = EVAL_BATCH_SIZE): Promise<number> {
  checkData(data)
  if (data.ys.length !== data.count) throw new InvalidInputError(`data.ys has ${data.ys.length} values; accuracy needs one class label per row (${data.count})`)
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidInputError(`batchSize must be a positive integer, got ${String(batchSize)}`)
  const size = rowSize(data.featureShape)
  let right = 0
  for (let start = 0; start < data.count; start += batchSize) {
    const end = Math.min(start + batchSize, data.count)
    const predicted = tf.tidy(() => {
      const x = tf.tensor(data.xs.subarray(start * size, end * size), [end - start, ...data.featureShape], 'float32')
      const scores = model.predict(x) as tf.Tensor
      // argMax reads NaNs as class 0, the label of many rows; −1 is no row's label.
      return tf.where(tf.any(tf.isNaN(scores), -1), tf.scalar(-1, 'int32'), tf.argMax(scores, -1))
    })
    const classes = await predicted.data()
    predicted.dispose()
    for (let i = 0; i < classes.length; i++) if (classes[i] === data.ys[start + i]) right++
  }
  return right / data.count
}
