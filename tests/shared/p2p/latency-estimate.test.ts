/**
 * The latency estimate (shared/p2p/latency-estimate.ts) against RFC 6298 §2 worked by hand:
 * R1 = 100 → SRTT 100, RTTVAR 50; R2 = 300 → RTTVAR ¾·50 + ¼·|100 − 300| = 87.5,
 * SRTT ⅞·100 + ⅛·300 = 125; R3 = 125 → RTTVAR ¾·87.5 + 0 = 65.625, SRTT 125.
 */
import { describe, it, expect } from 'vitest'
import { latencyEstimate } from '../../../shared/p2p/latency-estimate.ts'

describe('latencyEstimate', () => {
  it('follows RFC 6298 §2 (2.2) and (2.3)', () => {
    const e = latencyEstimate()
    expect(e.upper(4)).toBeUndefined()
    e.observe(100)
    expect(e.upper(0)).toBe(100)
    expect(e.upper(4)).toBe(300)
    e.observe(300)
    expect(e.upper(0)).toBe(125)
    expect(e.upper(1)).toBe(125 + 87.5)
    e.observe(125)
    expect(e.upper(0)).toBe(125)
    expect(e.upper(4)).toBe(125 + 4 * 65.625)
    expect(e.samples).toBe(3)
  })

  it('ignores measures that are not finite non-negative numbers', () => {
    const e = latencyEstimate()
    for (const bad of [Number.NaN, -1, Infinity]) e.observe(bad)
    expect(e.samples).toBe(0)
    expect(e.upper(4)).toBeUndefined()
  })

  it('settles on a steady latency: its variation decays by ¾ a measure', () => {
    const e = latencyEstimate()
    for (let i = 0; i < 40; i++) e.observe(50)
    expect(e.upper(0)).toBe(50)
    expect(e.upper(4) as number).toBeCloseTo(50 + 4 * 25 * 0.75 ** 39, 9)
  })
})
