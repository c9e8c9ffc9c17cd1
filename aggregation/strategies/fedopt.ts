/**
 * FedAdam and FedYogi server steps (Reddi et al. 2021, "Adaptive Federated Optimization",
 * Alg. 2), with Δ_t the weighted mean of client deltas:
 *   m_t = β1·m_{t−1} + (1 − β1)·Δ_t
 *   Adam: v_t = β2·v_{t−1} + (1 − β2)·Δ_t²
 *   Yogi: v_t = v_{t−1} − (1 − β2)·Δ_t²·sign(v_{t−1} − Δ_t²)
 *   x_{t+1} = x_t + η·m_t / (√v_t + τ)
 * Initial state as in Alg. 2: m_{−1} = 0 and v_{−1} = τ² (the algorithm asks for v_{−1} ≥ τ²;
 * the least value keeps the first steps as adaptive as the paper's). No bias correction, as in
 * the paper. Arithmetic in float64 per coordinate, state stored as float32.
 */
import type { StrategyState } from './state.ts'

export interface FedOptHyper {
  lr: number
  beta1: number
  beta2: number
  tau: number
}

/** The state before the first step: m = 0, v = τ². */
export function initialFedOptState (length: number, tau: number): StrategyState {
  return { steps: 0, m: new Float32Array(length), v: new Float32Array(length).fill(tau * tau) }
}

/**
 * One FedAdam (`yogi` false) or FedYogi (`yogi` true) step; returns new weights and a new state
 * (inputs are not modified). Lengths are checked by the caller (strategy.ts).
 */
export function fedOptStep (yogi: boolean, hyper: FedOptHyper, base: Float32Array, meanDelta: Float32Array, state: StrategyState): { weights: Float32Array, state: StrategyState } {
  const { lr, beta1, beta2, tau } = hyper
  const n = base.length
  const weights = new Float32Array(n)
  const m = new Float32Array(n)
  const v = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const d = meanDelta[i] as number
    const d2 = d * d
    const mi = beta1 * (state.m[i] as number) + (1 - beta1) * d
    const vPrev = state.v[i] as number
    const vi = yogi ? vPrev - (1 - beta2) * d2 * Math.sign(vPrev - d2) : beta2 * vPrev + (1 - beta2) * d2
    m[i] = mi
    v[i] = vi
    weights[i] = (base[i] as number) + lr * mi / (Math.sqrt(vi) + tau)
  }
  return { weights, state: { steps: state.steps + 1, m, v } }
}
