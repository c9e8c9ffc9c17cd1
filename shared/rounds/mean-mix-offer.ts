/**
 * A client's side of NaiveMix in a round (shared/training/mean-mix.ts): the class means the offer
 * carries, checked before training uses them, and the class statistics the round asks the client
 * to append to its update. Isomorphic: Node and browser runtimes call the same checks.
 */
import { InvalidInputError } from '../errors/errors.ts'
import { bytesFloat32, decodeBase64, float32Bytes, toBase64 } from '../crypto/bytes.ts'
import { rowSize, type TrainingData } from '../training/data.ts'
import { checkClassMeans, classStats, type ClassMeans } from '../training/mean-mix.ts'
import { minUploadsOf, type RoundConfig } from './config.ts'

export interface OfferedMeanMix {
  /** The pooled class means to train with; absent until a round has gathered them. */
  means?: ClassMeans
  /** The class statistics to append to the update, when the round gathers them. */
  stats?: Float32Array
}

/**
 * What the offer asks of this client for NaiveMix. Throws InvalidInputError (the client then
 * declines, saying why) when the offer is inconsistent (statistics or means without `meanMix`,
 * means of the wrong size or not finite, `dp` with NaiveMix), or when the client's data does not
 * fit: another row size, a label outside the classes, or inputs beyond ±clip, which the
 * fixed-point encoding would clip, so its statistics would be wrong rather than imprecise.
 */
export function offeredMeanMix (config: Pick<RoundConfig, 'id' | 'meanMix' | 'statsLength' | 'classMeans' | 'dp' | 'fixedPoint' | 'secure' | 'selection' | 'clients'>, data: TrainingData): OfferedMeanMix {
  const mix = config.meanMix
  const statsLength = config.statsLength ?? 0
  const classMeans = config.classMeans ?? null
  if (mix === null || mix === undefined) {
    if (statsLength !== 0 || classMeans !== null) throw new InvalidInputError(`round ${config.id}: class statistics or means offered without meanMix`)
    return {}
  }
  if (config.dp !== null) throw new InvalidInputError(`round ${config.id}: meanMix with dp is not supported`)
  const features = rowSize(data.featureShape)
  if (features !== mix.features) throw new InvalidInputError(`round ${config.id}: meanMix expects ${mix.features} features a row, this runtime's data has ${features}`)
  let means: ClassMeans | undefined
  if (classMeans !== null) {
    const bytes = decodeBase64(classMeans.means, `round ${config.id}: classMeans.means`)
    if (bytes.length !== mix.classes * mix.features * 4) throw new InvalidInputError(`round ${config.id}: classMeans.means holds ${bytes.length} bytes, expected ${mix.classes} × ${mix.features} float32 values`)
    means = { classes: mix.classes, features: mix.features, means: bytesFloat32(bytes), shares: Float32Array.from(classMeans.shares) }
    checkClassMeans(means, `round ${config.id}: classMeans`, config.fixedPoint.clip)
  }
  if (statsLength === 0) return means === undefined ? {} : { means }
  // The statistics may leave this client only inside a sum of several (checkRoundRequest's rules, checked again here).
  if (config.secure.mode === 'none') throw new InvalidInputError(`round ${config.id}: class statistics asked for in mode none, where the coordinator would see them alone`)
  if (minUploadsOf(config) < 2) throw new InvalidInputError(`round ${config.id}: class statistics asked for in a round that may publish the sum of one upload`)
  if (config.fixedPoint.clip < 1) throw new InvalidInputError(`round ${config.id}: class statistics need clip ≥ 1, the round has ${config.fixedPoint.clip}`)
  const stats = classStats(data, mix.classes)
  if (stats.length !== statsLength) throw new InvalidInputError(`round ${config.id}: statsLength ${statsLength}, but ${mix.classes} classes × ${mix.features} features give ${stats.length}`)
  const clip = config.fixedPoint.clip
  if (!data.xs.every(v => v >= -clip && v <= clip)) throw new InvalidInputError(`round ${config.id}: meanMix class statistics need inputs within ±${clip} (the round's clip)`)
  return means === undefined ? { stats } : { means, stats }
}

/** The pooled class means as a round offer carries them (float32 little-endian, base64), read back by `offeredMeanMix`. */
export function classMeansOffer (m: ClassMeans): NonNullable<RoundConfig['classMeans']> {
  return { means: toBase64(float32Bytes(m.means)), shares: [...m.shares] }
}

/** The clipped update followed by the class statistics a NaiveMix round asks for, if any. */
export function withClassStats (deltas: Float32Array, stats: Float32Array | undefined): Float32Array {
  if (stats === undefined) return deltas
  const out = new Float32Array(deltas.length + stats.length)
  out.set(deltas)
  out.set(stats, deltas.length)
  return out
}
