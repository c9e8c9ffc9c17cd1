/**
 * FedAvgM server step (Hsu, Qi & Brown 2019, "Measuring the Effects of Non-Identical Data
 * Distribution for Federated Visual Classification", §3): server SGD with momentum on the
 * pseudo-gradient −Δ_t, Δ_t the weighted mean of client deltas:
 *   v_t = β·v_{t−1} + Δ_t          (v_{−1} = 0)
 *   x_{t+1} = x_t + η·v_t
 * With β = 0 and η = 1 this is FedAvg. Momentum carries the directions that several rounds agree
 * on and damps the round-to-round swing that label-skewed clients cause; the effective step is
 * η/(1 − β) (the paper's §4 keeps it fixed while varying β). Arithmetic in float64 per
 * coordinate, the buffer stored as float32 (state.ts, in `m`; FedAvgM keeps no `v`).
 */
import type { StrategyState } from './state.ts'

export interface FedAvgMHyper {
  lr: number
  momentum: number
}

/** The state before the first step: a zero momentum buffer. */
export function initialFedAvgMState (length: number): StrategyState {
  return { steps: 0, m: new Float32Array(length), v: new Float32Array(0) }
}

/**
 * One FedAvgM step; returns new weights and a new state (inputs are not modified). Lengths are
 * checked by the caller (strategy.ts).
 */
export function fedAvgMStep (hyper: FedAvgMHyper, base: Float32Array, meanDelta: Float32Array, state: StrategyState): { weights: Float32Array, state: StrategyState } {
  const { lr, momentum } = hyper
  const n = base.length
  const weights = new Float32Array(n)
  const m = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const vi = momentum * (state.m[i] as number) + (meanDelta[i] as number)
    m[i] = vi
    weights[i] = (base[i] as number) + lr * vi
  }
  return { weights, state: { steps: state.steps + 1, m, v: new Float32Array(0) } }
}
