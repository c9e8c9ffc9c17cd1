/**
 * The server step after aggregation: mean delta → new trainable values, through the round's
 * strategy (aggregation/strategies), with the optimiser state (FedAvgM's momentum, FedAdam /
 * FedYogi's moments) carried between rounds per model, strategy and trainable layout: a round on
 * other tensors, or with another strategy, starts its own state (one optimiser's moments mean
 * nothing to another), and so does a round after an uploaded version (`carriedState`).
 *
 * Layer state (BatchNorm's moving statistics, `layerStateRanges`) is no parameter: a server
 * optimiser's step there (FedAdam's η·m/(√v + τ), sized by η rather than by the clients' change)
 * could take a variance below 0, so it takes the plain mean of the clients' values, base + mean
 * delta, under every strategy. DP noise can still take that mean below 0: applyUpdate (apply.ts),
 * which knows the tensors' names, floors variances.
 */
import type { RoundConfig } from '../../shared/rounds/config.ts'
import type { TensorInfo } from '../../shared/model/types.ts'
import { strategy } from '../../aggregation/strategies/strategy.ts'
import { decodeState, encodeState } from '../../aggregation/strategies/state.ts'
import type { StoredStrategyState } from './store.ts'

export interface ServerStep {
  values: Float32Array
  /** New state bytes to persist (undefined for stateless strategies). */
  state: Uint8Array | undefined
}

/**
 * The stored state if it still belongs to `baseVersion`'s lineage: no version between the one
 * its step produced and the base came from anywhere but a round. Moments built on one set of
 * weights mean nothing for weights an operator uploaded since (a re-trained or replaced model):
 * those start afresh.
 */
export function carriedState (stored: StoredStrategyState | undefined, baseVersion: number, uploadedBetween: (from: number, to: number) => boolean): Uint8Array | undefined {
  if (stored === undefined) return undefined
  const from = stored.version
  if (from !== null && (from > baseVersion || uploadedBetween(from, baseVersion))) return undefined
  return stored.state
}

/**
 * The key a model's optimiser state is kept under: the strategy and the trained tensors, in
 * update order, with their shapes (a re-ingested model with the same names and other shapes
 * starts fresh moments instead of failing every round on the old ones).
 */
export function layoutKey (config: Pick<RoundConfig, 'strategy'>, tensors: ReadonlyArray<Pick<TensorInfo, 'name' | 'shape'>>): string {
  return [`strategy:${config.strategy.name}`, ...tensors.map(t => `${t.name}:${t.shape.join('x')}`)].join('\n')
}

/**
 * The key the change a round's threshold held back (apply.ts, `residual`) is kept under, beside
 * the optimiser state and under the same lineage rule: per trained tensors, whatever the strategy
 * (it is a change of weights, which any strategy's next step goes on from).
 */
export function residualKey (tensors: ReadonlyArray<Pick<TensorInfo, 'name' | 'shape'>>): string {
  return ['residual', ...tensors.map(t => `${t.name}:${t.shape.join('x')}`)].join('\n')
}

/** A residual in its stored form: a one-moment state (aggregation/strategies/state.ts) holding it as m. */
export const encodeResidual = (residual: Float32Array): Uint8Array => encodeState({ steps: 0, m: residual, v: new Float32Array(0) })

/** A stored residual, if it fits `length` trainable values (else none: the layout changed under the same names). */
export function decodeResidual (bytes: Uint8Array | undefined, length: number): Float32Array | undefined {
  if (bytes === undefined) return undefined
  const { m } = decodeState(bytes)
  return m.length === length ? m : undefined
}

export function serverStep (config: RoundConfig, base: Float32Array, meanDelta: Float32Array, stored: Uint8Array | undefined, layerState: ReadonlyArray<readonly [number, number]> = []): ServerStep {
  const step = strategy(config.strategy).step(base, meanDelta, stored === undefined ? undefined : decodeState(stored))
  for (const [start, end] of layerState) {
    for (let i = start; i < end; i++) step.weights[i] = (base[i] as number) + (meanDelta[i] as number)
  }
  return { values: step.weights, state: step.state === undefined ? undefined : encodeState(step.state) }
}
