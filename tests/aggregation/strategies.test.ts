import { describe, it, expect } from 'vitest'
import { strategy } from '../../aggregation/strategies/strategy.ts'
import { strategyConfigSchema } from '../../shared/rounds/strategy-config.ts'
import { decodeState, encodeState, type StrategyState } from '../../aggregation/strategies/state.ts'
import { weightedMean } from '../../aggregation/strategies/weighted-mean.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { InvalidConfigError, InvalidInputError } from '../../shared/errors/errors.ts'

const randomArray = (n: number, scale: number, random: () => number): number[] =>
  Array.from({ length: n }, () => (random() * 2 - 1) * scale)

/** Index of the first bit-level difference, or −1. */
function firstMismatch (a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length)
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i
  return -1
}

/** |a − b| ≤ abs + rel·|b| for every coordinate: the float32 storage of state and weights. */
function expectClose (actual: Float32Array, expected: number[], rel = 1e-5, abs = 1e-7): void {
  expect(actual.length).toBe(expected.length)
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i] as number
    expect(Math.abs((actual[i] as number) - e), `[${i}] ${actual[i]} vs ${e}`).toBeLessThanOrEqual(abs + rel * Math.abs(e))
  }
}

/**
 * Reddi et al. 2021, Alg. 2, written out plainly on JS arrays in float64: m, v start at 0 and τ²,
 * then per round m ← β1 m + (1−β1)Δ; v ← Adam or Yogi; x ← x + η m/(√v + τ).
 */
function referenceFedOpt (yogi: boolean, hp: { lr: number, beta1: number, beta2: number, tau: number }, x0: number[], rounds: number[][]): number[][] {
  const x = x0.slice()
  const m = x0.map(() => 0)
  const v = x0.map(() => hp.tau * hp.tau)
  const out: number[][] = []
  for (const delta of rounds) {
    for (let i = 0; i < x.length; i++) {
      const d = delta[i] as number
      m[i] = hp.beta1 * (m[i] as number) + (1 - hp.beta1) * d
      if (yogi) {
        const diff = (v[i] as number) - d * d
        const sign = diff > 0 ? 1 : diff < 0 ? -1 : 0
        v[i] = (v[i] as number) - (1 - hp.beta2) * d * d * sign
      } else {
        v[i] = hp.beta2 * (v[i] as number) + (1 - hp.beta2) * d * d
      }
      x[i] = (x[i] as number) + hp.lr * (m[i] as number) / (Math.sqrt(v[i] as number) + hp.tau)
    }
    out.push(x.slice())
  }
  return out
}

describe('FedAvg and FedProx', () => {
  it('fedavg: weights = base + meanDelta, exactly as float32 addition', () => {
    const random = mulberry32(1)
    const base = Float32Array.from(randomArray(1000, 3, random))
    const delta = Float32Array.from(randomArray(1000, 0.1, random))
    const { weights, state } = strategy({ name: 'fedavg' }).step(base, delta)
    expect(state).toBeUndefined()
    for (let i = 0; i < 1000; i++) expect(weights[i]).toBe(Math.fround((base[i] as number) + (delta[i] as number)))
  })

  it('fedprox: same server step, and mu (default 0.01) readable from the config for clients', () => {
    const base = Float32Array.of(1, 2, 3)
    const delta = Float32Array.of(0.5, -0.5, 0)
    const prox = strategy({ name: 'fedprox' })
    expect(prox.config).toEqual({ name: 'fedprox', mu: 0.01 })
    expect(strategy({ name: 'fedprox', mu: 0.1 }).config).toEqual({ name: 'fedprox', mu: 0.1 })
    expect(Array.from(prox.step(base, delta).weights)).toEqual([1.5, 1.5, 3])
  })
})

/** Hsu et al. 2019, §3, plainly in float64: v ← βv + Δ; x ← x + ηv, from v = 0. */
function referenceFedAvgM (hp: { lr: number, momentum: number }, x0: number[], rounds: number[][]): number[][] {
  const x = x0.slice()
  const v = x0.map(() => 0)
  const out: number[][] = []
  for (const delta of rounds) {
    for (let i = 0; i < x.length; i++) {
      v[i] = hp.momentum * (v[i] as number) + (delta[i] as number)
      x[i] = (x[i] as number) + hp.lr * (v[i] as number)
    }
    out.push(x.slice())
  }
  return out
}

describe('FedAvgM (Hsu et al. 2019)', () => {
  it('six rounds match the plain reference, state persisted and restored between rounds', () => {
    const random = mulberry32(5)
    const n = 301
    const x0 = randomArray(n, 1, random)
    const rounds = [0.5, 0.1, 0.3, 0.01, 0.2, 0.05].map(s => randomArray(n, s, random))
    const hp = { lr: 0.7, momentum: 0.8 }
    const s = strategy({ name: 'fedavgm', ...hp })
    const expected = referenceFedAvgM(hp, x0, rounds)
    let weights: Float32Array = Float32Array.from(x0)
    let state: StrategyState | undefined
    for (let r = 0; r < rounds.length; r++) {
      const step = s.step(weights, Float32Array.from(rounds[r] as number[]), state)
      weights = step.weights
      expect(step.state?.steps).toBe(r + 1)
      expect(step.state?.v.length).toBe(0)
      const bytes = encodeState(step.state as StrategyState)
      expect(bytes.length).toBe(12 + 4 * n) // one moment stored
      state = decodeState(bytes)
      expectClose(weights, expected[r] as number[])
    }
  })

  it('by hand: defaults η = 1, β = 0.9; two rounds of Δ = 1 give x = 1, then 1 + 1.9', () => {
    const s = strategy({ name: 'fedavgm' })
    expect(s.config).toEqual({ name: 'fedavgm', lr: 1, momentum: 0.9 })
    const first = s.step(new Float32Array(1), Float32Array.of(1))
    expect(Array.from(first.weights)).toEqual([1])
    const second = s.step(first.weights, Float32Array.of(1), first.state)
    expect(second.weights[0]).toBeCloseTo(2.9, 6)
    expect(second.state?.m[0]).toBeCloseTo(1.9, 6)
  })

  it('with β = 0 and η = 1 is FedAvg, exactly', () => {
    const random = mulberry32(6)
    const base = Float32Array.from(randomArray(500, 2, random))
    const delta = Float32Array.from(randomArray(500, 0.1, random))
    const m = strategy({ name: 'fedavgm', momentum: 0, lr: 1 })
    const first = m.step(base, delta)
    expect(firstMismatch(first.weights, strategy({ name: 'fedavg' }).step(base, delta).weights)).toBe(-1)
    const next = Float32Array.from(randomArray(500, 0.1, random))
    expect(firstMismatch(m.step(first.weights, next, first.state).weights, strategy({ name: 'fedavg' }).step(first.weights, next).weights)).toBe(-1)
  })

  it('refuses a state of another strategy (two moments) and of another size', () => {
    const avgm = strategy({ name: 'fedavgm' })
    const adamState = strategy({ name: 'fedadam' }).step(new Float32Array(2), new Float32Array(2)).state
    expect(() => avgm.step(new Float32Array(2), new Float32Array(2), adamState)).toThrow(/second moments, this strategy keeps 0/)
    const avgmState = avgm.step(new Float32Array(2), new Float32Array(2)).state
    expect(() => strategy({ name: 'fedadam' }).step(new Float32Array(2), new Float32Array(2), avgmState)).toThrow(/has 0 second moments, this strategy keeps 2/)
    expect(() => avgm.step(new Float32Array(3), new Float32Array(3), avgmState)).toThrow(/2 moments, the model has 3 weights/)
  })
})

describe('FedAdam and FedYogi (Reddi et al. 2021, Alg. 2)', () => {
  for (const name of ['fedadam', 'fedyogi'] as const) {
    it(`${name}: six rounds match the plain reference, state persisted and restored between rounds`, () => {
      const random = mulberry32(name === 'fedadam' ? 2 : 3)
      const n = 257
      const x0 = randomArray(n, 1, random)
      // Large deltas first, then small ones: Yogi's sign(v − Δ²) takes both branches.
      const rounds = [0.5, 0.5, 0.01, 0.2, 0.001, 0.3].map((s) => randomArray(n, s, random))
      const hp = { lr: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 }
      const s = strategy({ name, ...hp })
      const expected = referenceFedOpt(name === 'fedyogi', hp, x0, rounds)
      let weights: Float32Array = Float32Array.from(x0)
      let state: StrategyState | undefined
      for (let r = 0; r < rounds.length; r++) {
        const step = s.step(weights, Float32Array.from(rounds[r] as number[]), state)
        weights = step.weights
        expect(step.state?.steps).toBe(r + 1)
        state = decodeState(encodeState(step.state as StrategyState)) // as the coordinator does
        expectClose(weights, expected[r] as number[])
      }
    })
  }

  it('uses the documented defaults (β1 0.9, β2 0.99, τ 1e-3, η 1e-2) and starts from v = τ²', () => {
    const s = strategy({ name: 'fedadam' })
    expect(s.config).toEqual({ name: 'fedadam', lr: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-3 })
    // One coordinate by hand: Δ = 0.5 → m = 0.05, v = 0.99·1e-6 + 0.01·0.25 = 0.00250099,
    // x = 0 + 0.01·0.05 / (√0.00250099 + 0.001).
    const { weights, state } = s.step(new Float32Array(1), Float32Array.of(0.5))
    expect(weights[0]).toBeCloseTo(0.01 * 0.05 / (Math.sqrt(0.00250099) + 0.001), 7)
    expect(state?.m[0]).toBeCloseTo(0.05, 7)
    expect(state?.v[0]).toBeCloseTo(0.00250099, 9)
  })

  it('fedadam and fedyogi differ once Δ² falls below v', () => {
    const base = new Float32Array(1)
    const go = (name: 'fedadam' | 'fedyogi'): number => {
      const s = strategy({ name })
      const first = s.step(base, Float32Array.of(1))
      return s.step(first.weights, Float32Array.of(0.01), first.state).state?.v[0] as number
    }
    // From v = τ² = 1e-6. Δ = 1: Adam v = 0.99e-6 + 0.01; Yogi v = 1e-6 + 0.01 (Δ² > v, so it grows
    // by (1−β2)Δ²). Then Δ = 0.01: Adam v = 0.99·v + 0.01·1e-4; Yogi v − 0.01·1e-4 (now Δ² < v).
    expect(go('fedadam')).toBeCloseTo(0.99 * (0.99e-6 + 0.01) + 0.01 * 1e-4, 9)
    expect(go('fedyogi')).toBeCloseTo((1e-6 + 0.01) - 0.01 * 1e-4, 9)
  })
})

describe('every strategy (contract)', () => {
  for (const name of ['fedavg', 'fedprox', 'fedavgm', 'fedadam', 'fedyogi'] as const) {
    it(`${name}: a zero delta keeps the weights, inputs are never modified`, () => {
      const s = strategy({ name })
      const base = Float32Array.of(1, -2, 3)
      expect(Array.from(s.step(base, new Float32Array(3)).weights)).toEqual([1, -2, 3])
      const delta = Float32Array.of(0.1, -0.1, 0.5)
      const first = s.step(base, delta)
      const snapshot = (): unknown => [Array.from(base), Array.from(delta), first.state && [first.state.steps, Array.from(first.state.m), Array.from(first.state.v)]]
      const before = snapshot()
      const second = s.step(first.weights, delta, first.state)
      expect(snapshot()).toEqual(before)
      expect(second.weights).not.toBe(first.weights)
      expect(second.weights.length).toBe(3)
    })

    it(`${name}: refuses a delta of the wrong length or with NaN`, () => {
      const s = strategy({ name })
      expect(() => s.step(new Float32Array(3), new Float32Array(2))).toThrow('meanDelta: has 2 coordinates, expected 3')
      expect(() => s.step(new Float32Array(2), Float32Array.of(0, Number.NaN))).toThrow(/meanDelta: coordinate 1 is NaN/)
      expect(() => s.step(new Float32Array(2), Float32Array.of(0, Number.NaN))).toThrow(InvalidInputError)
    })
  }

  it('fedavgm / fedadam / fedyogi refuse a state for another model size', () => {
    for (const name of ['fedavgm', 'fedadam', 'fedyogi'] as const) {
      const s = strategy({ name })
      const { state } = s.step(new Float32Array(2), new Float32Array(2))
      expect(() => s.step(new Float32Array(3), new Float32Array(3), state)).toThrow(/2 moments, the model has 3 weights/)
    }
  })
})

describe('strategy config', () => {
  it('survives JSON (it crosses the wire in round offers) and fills defaults', () => {
    const wire = JSON.parse(JSON.stringify({ name: 'fedyogi', lr: 0.1 }))
    expect(strategyConfigSchema.parse(wire)).toEqual({ name: 'fedyogi', lr: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 })
  })

  it('rejects an unknown strategy, an unknown key and out-of-range values, naming the field', () => {
    expect(() => strategy({ name: 'sgd' } as never)).toThrow(InvalidConfigError)
    expect(() => strategy({ name: 'fedadam', learningRate: 0.1 } as never)).toThrow(/learningRate/)
    expect(() => strategy({ name: 'fedadam', beta1: 1 })).toThrow(/beta1 must be in \[0, 1\)/)
    expect(() => strategy({ name: 'fedyogi', tau: 0 })).toThrow(/tau must be a positive number/)
    expect(() => strategy({ name: 'fedprox', mu: -1 })).toThrow(/mu/)
    expect(() => strategy({ name: 'fedadam', lr: Infinity })).toThrow(/lr/)
    expect(() => strategy({ name: 'fedavgm', momentum: 1 })).toThrow(/momentum must be in \[0, 1\)/)
    expect(() => strategy({ name: 'fedavgm', lr: 0 })).toThrow(/lr must be a positive number/)
    expect(() => strategy({ name: 'fedavgm', beta1: 0.9 } as never)).toThrow(/beta1/)
  })
})

describe('non-finite steps', () => {
  it.each([
    ['fedadam', { name: 'fedadam', lr: 1e39 }],
    ['fedavgm', { name: 'fedavgm', lr: 1e39 }]
  ] as const)('%s with a huge server lr overflows float32: refused, never returned', (name, config) => {
    const s = strategy(config)
    expect(() => s.step(Float32Array.of(1, -1), Float32Array.of(0.5, -0.5))).toThrow(InvalidInputError)
    expect(() => s.step(Float32Array.of(1, -1), Float32Array.of(0.5, -0.5))).toThrow(new RegExp(`${name} step \\(new weights; server lr too large\\?\\): coordinate 0 is`))
  })
})

describe('strategy state storage', () => {
  it('round-trips exactly, in a fixed little-endian layout', () => {
    const state: StrategyState = { steps: 7, m: Float32Array.of(1.5, -0.25), v: Float32Array.of(1e-6, 3) }
    const bytes = encodeState(state)
    expect(bytes.length).toBe(12 + 16)
    expect(Array.from(bytes.subarray(0, 12))).toEqual([0x42, 0x46, 0x53, 0x31, 7, 0, 0, 0, 2, 0, 0, 0])
    expect(Array.from(bytes.subarray(12, 16))).toEqual([0x00, 0x00, 0xc0, 0x3f]) // 1.5f, IEEE 754 little-endian
    expect(decodeState(bytes)).toEqual(state)
  })

  it('stores a one-moment state (FedAvgM) without v, and reads it back', () => {
    const state: StrategyState = { steps: 3, m: Float32Array.of(0.5, -2), v: new Float32Array(0) }
    const bytes = encodeState(state)
    expect(Array.from(bytes.subarray(0, 12))).toEqual([0x42, 0x46, 0x53, 0x31, 3, 0, 0, 0, 2, 0, 0, 0])
    expect(bytes.length).toBe(12 + 8)
    expect(decodeState(bytes)).toEqual(state)
    expect(() => encodeState({ steps: 1, m: new Float32Array(2), v: new Float32Array(1) })).toThrow(/expected 2 or 0/)
    expect(() => decodeState(bytes.subarray(0, 12 + 6))).toThrow(/header says 2 weights \(20 or 28 bytes\) but has 18 bytes/)
  })

  it('refuses a wrong header, a truncation and non-finite moments', () => {
    const bytes = encodeState({ steps: 1, m: Float32Array.of(1), v: Float32Array.of(1) })
    expect(() => decodeState(new Uint8Array(4))).toThrow(/BFS1/)
    expect(() => decodeState(bytes.subarray(0, bytes.length - 1))).toThrow(/header says 1 weights/)
    const nanM = bytes.slice(); new DataView(nanM.buffer).setFloat32(12, Number.NaN, true)
    expect(() => decodeState(nanM)).toThrow(/m\[0\] is NaN/)
    const negV = bytes.slice(); new DataView(negV.buffer).setFloat32(16, -1, true)
    expect(() => decodeState(negV)).toThrow(/v\[0\] is -1/)
  })
})

describe('weightedMean (plaintext FedAvg)', () => {
  it('matches Σ n_k·Δ_k / Σ n_k with different sample counts', () => {
    const random = mulberry32(4)
    const samples = [1, 10, 100, 7, 5000]
    const deltas = samples.map(() => randomArray(300, 1, random))
    const mean = weightedMean(deltas.map((d) => Float32Array.from(d)), samples)
    const total = samples.reduce((a, b) => a + b, 0)
    const expected: number[] = []
    for (let i = 0; i < 300; i++) {
      let s = 0
      for (let k = 0; k < samples.length; k++) s += (samples[k] as number) * Math.fround(deltas[k]![i] as number)
      expected.push(s / total)
    }
    expectClose(mean, expected, 1e-6, 1e-9)
  })

  it('is the plain mean for equal weights and ignores a common factor in the weights', () => {
    const deltas = [Float32Array.of(1, 0), Float32Array.of(0, 1), Float32Array.of(2, 2)]
    expect(Array.from(weightedMean(deltas, [1, 1, 1]))).toEqual([1, 1])
    expect(Array.from(weightedMean(deltas, [3, 3, 3]))).toEqual([1, 1])
    expect(Array.from(weightedMean([Float32Array.of(1, 0), Float32Array.of(0, 1)], [300, 100]))).toEqual([0.75, 0.25])
  })

  it('refuses empty input, mismatched lengths and bad weights', () => {
    expect(() => weightedMean([], [])).toThrow(/deltas is empty/)
    expect(() => weightedMean([new Float32Array(2)], [1, 2])).toThrow(/2 weights for 1 deltas/)
    expect(() => weightedMean([new Float32Array(2), new Float32Array(3)], [1, 1])).toThrow(/deltas\[1\] has 3 coordinates/)
    expect(() => weightedMean([new Float32Array(2)], [0])).toThrow(/weights\[0\]/)
    expect(() => weightedMean([new Float32Array(2)], [Number.NaN])).toThrow(InvalidInputError)
  })

  it('refuses a non-finite delta, naming it', () => {
    expect(() => weightedMean([Float32Array.of(1, 2), Float32Array.of(3, Number.NaN)], [1, 1])).toThrow(/weightedMean: deltas\[1\]: coordinate 1 is NaN/)
    expect(() => weightedMean([Float32Array.of(Infinity)], [1])).toThrow(InvalidInputError)
  })

  it('takes weights at the ends of the float64 range: their sum no longer overflows, nor underflows to a coarse subnormal', () => {
    const deltas = [Float32Array.of(1, 2), Float32Array.of(3, 4)]
    expect(Array.from(weightedMean(deltas, [1e308, 1e308]))).toEqual([2, 3])
    expect(Array.from(weightedMean(deltas, [1.5e308, 0.5e308]))).toEqual([1.5, 2.5])
    expect(Array.from(weightedMean(deltas, [1e-320, 1e-320]))).toEqual([2, 3])
  })
})
