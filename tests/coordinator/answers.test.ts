/**
 * The coordinator's answer budget (coordinator/answers.ts): bytes of block and shard answers
 * under way are bounded, HTTP and libp2p together; an answer beyond it is refused at once.
 */
import { describe, it, expect } from 'vitest'
import { answerAdmission } from '../../coordinator/answers.ts'

describe('answer admission', () => {
  it('admits up to the byte budget, always one answer when none is under way, and frees on release (once)', () => {
    const a = answerAdmission({ maxBytes: 100, deadlineMs: 10_000 })
    const big = a.admit(500)
    expect(big).toBeDefined()
    expect(a.admit(1)).toBeUndefined()
    big?.()
    big?.()
    expect(a.underway).toBe(0)
    const first = a.admit(60)
    const second = a.admit(40)
    expect(second).toBeDefined()
    expect(a.admit(1)).toBeUndefined()
    first?.()
    expect(a.admit(60)).toBeDefined()
    expect(a.underway).toBe(100)
  })

  it('under an upload cap, also admits only what the cap sends within half the deadline', () => {
    // 1 kB/s and a 10 s deadline: 5 kB under way at most, though the budget allows far more.
    const a = answerAdmission({ maxBytes: 1 << 20, bytesPerSecond: 1_000, deadlineMs: 10_000 })
    expect(a.pace).toBeDefined()
    const first = a.admit(4_000)
    expect(a.admit(1_000)).toBeDefined()
    expect(a.admit(1)).toBeUndefined()
    first?.()
    expect(a.admit(4_000)).toBeDefined()
  })
})
