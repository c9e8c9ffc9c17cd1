/**
 * The end of a round that was summed (DESIGN.md, pipeline 5): sum → mean delta, checked against the
 * round's norm bound → the strategy's server step → the changed blocks → a new version, published
 * with the round's metrics (its privacy spent among them) in one transaction with the round's own
 * end. Shared by live rounds and by the rounds a restart left to finish (rounds.ts).
 */
import { checkClassMeans, classMeansFromStats } from '../../shared/training/mean-mix.ts'
import { minUploadsOf, type RoundConfig } from '../../shared/rounds/config.ts'
import { layerStateRanges, trainableLayout, readTrainable } from '../../shared/rounds/trainable.ts'
import type { TensorInfo } from '../../shared/model/types.ts'
import { fixedPointParams, decodeMean } from '../../aggregation/fixed-point.ts'
import { gaussianEpsilon } from '../../aggregation/dp/accountant.ts'
import { noiseNormBound, sumNoiseSd } from '../../aggregation/dp/noise.ts'
import { l2Norm } from '../../aggregation/dp/clip.ts'
import { applyUpdate } from './apply.ts'
import { carriedState, decodeResidual, encodeResidual, layoutKey, residualKey, serverStep } from './strategy.ts'
import { RoundFailure } from './failure.ts'
import type { AcceptedUpload, RoundIo, SecureRoundServer } from './secure/types.ts'
import type { RoundManagerDeps } from './rounds.ts'

export type PublishDeps = Pick<RoundManagerDeps, 'store' | 'repo' | 'readBase' | 'publish' | 'onEvent'>

/** Sum → mean delta → strategy → new version. Shared by live rounds and recovery. */
export async function aggregateAndPublish (deps: PublishDeps, config: RoundConfig, uploads: Map<string, AcceptedUpload>, secure: SecureRoundServer, roundIo: RoundIo, extra: Record<string, number>): Promise<{ version: number, metrics: Record<string, number> }> {
  const started = performance.now()
  const sum = await secure.sum(uploads, roundIo)
  // Seen: with DP, this round's budget is spent even if it fails from here on.
  deps.store.markSummed(config.id)
  const decoded = decodeMean(sum, fixedPointParams(config.fixedPoint))
  const { totalWeight } = decoded
  // NaiveMix's class statistics ride after the tensors: bounded by the clip, not the norm bound.
  const statsLength = config.statsLength ?? 0
  const mean = decoded.mean.subarray(0, decoded.mean.length - statsLength)
  const classMeans = statsLength === 0 || config.meanMix === null ? undefined : classMeansFromStats(decoded.mean.subarray(mean.length), config.meanMix.classes, config.meanMix.features)
  if (classMeans !== undefined) {
    // No data gives shares that do not sum to 1 or means beyond the clip: some client's
    // statistics were made up. Such means would be kept and offered to every later round.
    try {
      checkClassMeans(classMeans, 'class statistics', config.fixedPoint.clip)
    } catch (err) {
      throw new RoundFailure(`${(err as Error).message}: a client sent statistics no data gives; nothing is kept`)
    }
  }
  const meanNorm = l2Norm(mean)
  // A weighted mean of vectors each within the bound is within the bound: a larger one means
  // some client broke the rules (or the masks did not cancel). Refuse it.
  // With DP the sum also carries each contributor's noise, N(0, (zC)²·U/m) per coordinate for U
  // uploads each noised for m = minUploads (aggregation/dp/noise.ts), divided here by Σw: allow
  // its norm up to a bound it passes with probability 1 − 10⁻⁹.
  const noise = config.dp === null ? 0 : noiseNormBound(sumNoiseSd({ noiseMultiplier: config.dp.noiseMultiplier, clip: config.dp.clip, minClients: minUploadsOf(config), contributions: uploads.size }), mean.length) / totalWeight
  if (meanNorm > config.normBound * 1.001 + noise + 1e-3) throw new RoundFailure(`aggregate delta norm ${meanNorm.toPrecision(4)} exceeds the bound ${config.normBound}`)
  const base = await deps.readBase(config.model, config.baseVersion)
  const layout = trainableLayout(base.model.tensors, config.trainable)
  const current = readTrainable(base.model.tensors, base.model.weights, layout)
  const layerState = layerStateRanges(base.model.tensors, base.model.metadata.layers, layout)
  const stateKey = layoutKey(config, layout.indices.map(i => base.model.tensors[i] as TensorInfo))
  const stored = carriedState(deps.store.strategyState(config.model, stateKey), config.baseVersion, (from, to) => deps.repo.uploadedBetween(config.model, from, to))
  const step = serverStep(config, current, mean, stored, layerState)
  const tensorsKey = residualKey(layout.indices.map(i => base.model.tensors[i] as TensorInfo))
  const storedResidual = deps.store.strategyState(config.model, tensorsKey)
  const carried = decodeResidual(carriedState(storedResidual, config.baseVersion, (from, to) => deps.repo.uploadedBetween(config.model, from, to)), current.length)
  const applied = applyUpdate(base.model, base.plans, layout, step.values, config.changeThreshold, carried)
  const metrics: Record<string, number> = {
    ...extra,
    ...privacySpent(deps, config),
    uploads: uploads.size,
    aggregateWeight: totalWeight,
    deltaNorm: meanNorm,
    // This round's step by the strategy (FedAdam's is not the mean; review 49f), before the
    // threshold and without the residual earlier rounds carried.
    stepNorm: distance(step.values, current),
    changedBlocks: applied.changed.length,
    aggregateMs: Math.round(performance.now() - started)
  }
  let version = 0
  const result = await deps.publish(config.model, applied.model, {
    round: config.id,
    parent: config.baseVersion,
    metrics,
    plans: base.plans,
    inTransaction: v => {
      version = v
      if (step.state !== undefined) deps.store.saveStrategyState(config.model, stateKey, step.state, v)
      if (applied.residual !== undefined) deps.store.saveStrategyState(config.model, tensorsKey, encodeResidual(applied.residual), v)
      else if (storedResidual !== undefined) deps.store.deleteStrategyState(config.model, tensorsKey)
      if (classMeans !== undefined) deps.store.saveClassMeans(config.model, classMeans, config.id)
      deps.store.transition(config.id, 'published', { version: v, metrics })
      deps.store.deleteUploads(config.id)
    }
  })
  deps.onEvent?.({ type: 'state', roundId: config.id, state: 'published', detail: `version ${result.version}` })
  return { version, metrics }
}

/**
 * (ε, δ) of this round and of all the model's DP rounds so far (this one included: its sum is
 * taken), failed ones too once their sum was seen, by RDP composition: Gaussian mechanisms with
 * multipliers z_i compose to one with z = (Σ 1/z_i²)^(-1/2) (Mironov 2017, Prop. 1 and the
 * Gaussian RDP curve α/2z²). No subsampling amplification: conservative.
 *
 * Neighbouring rounds are those where one client's update is replaced by zero, its weight kept
 * ("zero-out", Kairouz et al. 2021, DP-FTRL §2): sensitivity C. The upload count and the total
 * weight are published un-noised, so neighbours that add or remove a client are not covered;
 * neighbours that replace one client's data move the sum by 2C, an ε of multiplier z/2
 * (2–3× larger; review 48a). Weights differ between clients unless `sampleCap` makes them equal.
 *
 * That is against whoever sees the published model. In secure mode `none` the coordinator also
 * sees each upload alone, which carries only its client's share of the noise, z·C/√m for
 * m = minUploads: `dpEpsilonRoundVsCoordinator` is this round's ε against the coordinator. It
 * knows the client takes part, so neighbouring datasets replace the client's data (an upload
 * moves from +C·u to −C·u: sensitivity 2C, multiplier z/(2√m)); charged at C, as first written,
 * the figure came out 2–2.5× too small (review 47c).
 */
function privacySpent (deps: PublishDeps, config: RoundConfig): Record<string, number> {
  if (config.dp === null) return {}
  const { noiseMultiplier, delta } = config.dp
  const all = deps.store.dpNoiseMultipliers(config.model)
  const composed = 1 / Math.sqrt(all.reduce((s, z) => s + 1 / (z * z), 0))
  const seenAlone: Record<string, number> = config.secure.mode === 'none' ? { dpEpsilonRoundVsCoordinator: gaussianEpsilon({ noiseMultiplier: noiseMultiplier / (2 * Math.sqrt(minUploadsOf(config))), rounds: 1, delta }) } : {}
  return {
    ...seenAlone,
    dpEpsilonRound: gaussianEpsilon({ noiseMultiplier, rounds: 1, delta }),
    dpEpsilonTotal: gaussianEpsilon({ noiseMultiplier: composed, rounds: 1, delta }),
    dpDelta: delta,
    dpRounds: all.length
  }
}

function distance (a: Float32Array, b: Float32Array): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += ((a[i] as number) - (b[i] as number)) ** 2
  return Math.sqrt(s)
}
