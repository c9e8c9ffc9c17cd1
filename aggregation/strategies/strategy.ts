/**
 * Server strategies behind one interface: `strategy(config)` parses the config (the schema that
 * round offers carry) and returns a pure step function from (base weights, mean delta, state) to
 * (new weights, new state). FedAvg / FedProx: McMahan et al. 2017 and Li et al. 2020 (fedavg.ts);
 * FedAvgM: Hsu et al. 2019 (fedavgm.ts); FedAdam / FedYogi: Reddi et al. 2021, Alg. 2 (fedopt.ts).
 */
import { InvalidConfigError, InvalidInputError } from '../../shared/errors/errors.ts'
import { checkFinite, checkUpdateShape } from '../validate.ts'
import { fedAvgStep } from './fedavg.ts'
import { fedAvgMStep, initialFedAvgMState } from './fedavgm.ts'
import { fedOptStep, initialFedOptState } from './fedopt.ts'
import { strategyConfigSchema, type StrategyConfig, type StrategyConfigInput, type StrategyName } from '../../shared/rounds/strategy-config.ts'
import type { StrategyState } from './state.ts'

/** The result of one server step; `state` is present for the stateful strategies only. */
export interface StrategyStep {
  weights: Float32Array
  state?: StrategyState
}

export interface Strategy {
  readonly name: StrategyName
  /** The parsed config, defaults filled in (what clients should read, e.g. FedProx's `mu`). */
  readonly config: StrategyConfig
  /**
   * One server step. `base` is the round's base weights, `meanDelta` the weighted mean of the
   * client deltas (same length, finite). `state` is the previous step's state; leave it out only
   * on the first round of FedAvgM / FedAdam / FedYogi (it then starts at a zero momentum, or at
   * m = 0, v = τ²). Inputs are never modified.
   */
  step: (base: Float32Array, meanDelta: Float32Array, state?: StrategyState) => StrategyStep
}

function parseConfig (config: StrategyConfigInput): StrategyConfig {
  const parsed = strategyConfigSchema.safeParse(config)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  throw new InvalidConfigError(`strategy config: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`, { cause: parsed.error })
}

/** `moments`: how many per-weight vectors the strategy keeps (FedAvgM 1: m; FedAdam / FedYogi 2: m, v). */
function checkState (state: StrategyState, length: number, moments: 1 | 2): void {
  if (state.m.length !== length) {
    throw new InvalidInputError(`strategy state: has ${state.m.length} moments, the model has ${length} weights (trainable tensors changed?)`)
  }
  const v = moments === 2 ? length : 0
  if (state.v.length !== v) throw new InvalidInputError(`strategy state: has ${state.v.length} second moments, this strategy keeps ${v} (a state of another strategy?)`)
}

/**
 * Builds a strategy from its config; throws InvalidConfigError naming the bad field.
 *
 * @example
 * const s = strategy({ name: 'fedyogi' })
 * let { weights, state } = s.step(base, meanDelta)          // round 1
 * ;({ weights, state } = s.step(weights, nextMean, state))  // round 2
 */
export function strategy (config: StrategyConfigInput): Strategy {
  const parsed = parseConfig(config)
  // A large server learning rate can overflow float32: a step to ±Infinity is refused, never published.
  const finite = (step: StrategyStep): StrategyStep => {
    checkFinite(step.weights, `${parsed.name} step (new weights; server lr too large?)`)
    return step
  }
  const checked = (base: Float32Array, meanDelta: Float32Array): void => {
    checkUpdateShape(meanDelta, base.length, 'meanDelta')
    checkFinite(meanDelta, 'meanDelta')
  }
  if (parsed.name === 'fedavg' || parsed.name === 'fedprox') {
    return Object.freeze({
      name: parsed.name,
      config: parsed,
      step: (base: Float32Array, meanDelta: Float32Array) => {
        checked(base, meanDelta)
        return finite({ weights: fedAvgStep(base, meanDelta) })
      }
    })
  }
  if (parsed.name === 'fedavgm') {
    return Object.freeze({
      name: parsed.name,
      config: parsed,
      step: (base: Float32Array, meanDelta: Float32Array, state?: StrategyState) => {
        checked(base, meanDelta)
        const prev = state ?? initialFedAvgMState(base.length)
        checkState(prev, base.length, 1)
        return finite(fedAvgMStep(parsed, base, meanDelta, prev))
      }
    })
  }
  const yogi = parsed.name === 'fedyogi'
  return Object.freeze({
    name: parsed.name,
    config: parsed,
    step: (base: Float32Array, meanDelta: Float32Array, state?: StrategyState) => {
      checked(base, meanDelta)
      const prev = state ?? initialFedOptState(base.length, parsed.tau)
      checkState(prev, base.length, 2)
      return finite(fedOptStep(yogi, parsed, base, meanDelta, prev))
    }
  })
}
