/**
 * The upload cap (shared/p2p/token-bucket.ts) on fake timers and an injected clock: a full
 * bucket lets a burst go at once, then bytes go at the configured rate, in arrival order; a
 * frame larger than the burst goes once the bucket is full and its debt delays the next one;
 * an aborted wait rejects and takes nothing. A seeded run checks the defining property of a
 * token bucket (by time t at most burst + rate·t bytes have gone) and that it is not slower
 * than that by more than rounding. Admission (`uploadCap`) bounds the bytes under way.
 */
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { tokenBucket, uploadCap, type TokenBucket } from '../../../shared/p2p/token-bucket.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

let t0 = 0
const elapsed = (): number => Date.now() - t0
const bucket = (bytesPerSecond: number, burstBytes?: number): TokenBucket => tokenBucket({ bytesPerSecond, burstBytes, now: () => Date.now() })

/** A take whose settlement is observable: when it resolved (ms after t0) or why it failed. */
function watched (p: Promise<unknown>): { resolvedAt?: number, error?: unknown } {
  const state: { resolvedAt?: number, error?: unknown } = {}
  p.then(() => { state.resolvedAt = elapsed() }, (err: unknown) => { state.error = err })
  return state
}

/** Lets promise chains run without moving the clock. */
async function settle (): Promise<void> {
  await vi.advanceTimersByTimeAsync(0)
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
  t0 = Date.now()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('token bucket', () => {
  it('refuses a rate or burst that is not a positive number, naming it', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => bucket(bad)).toThrow(InvalidInputError)
      expect(() => bucket(bad)).toThrow(/bytesPerSecond/)
      expect(() => bucket(1000, bad)).toThrow(/burstBytes/)
    }
  })

  it('lets a burst go at once, then paces at the rate', async () => {
    const b = bucket(1000, 1000)
    const first = watched(b.take(1000))
    await settle()
    expect(first.resolvedAt).toBe(0)
    const second = watched(b.take(500))
    await vi.advanceTimersByTimeAsync(499)
    expect(second.resolvedAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(second.resolvedAt).toBe(500)
  })

  it('says whether a take had to wait for tokens', async () => {
    const b = bucket(1000, 1000)
    expect(await b.take(600)).toBe(false)
    const short = b.take(600)
    await vi.advanceTimersByTimeAsync(200)
    expect(await short).toBe(true)
  })

  it('defaults the burst to one second of bytes and caps refill at the burst', async () => {
    const b = bucket(2000)
    await vi.advanceTimersByTimeAsync(10_000) // idle: the bucket must not hold 10 s of tokens
    const full = watched(b.take(2000))
    await settle()
    expect(full.resolvedAt).toBe(10_000)
    const next = watched(b.take(1000))
    await vi.advanceTimersByTimeAsync(499)
    expect(next.resolvedAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(next.resolvedAt).toBe(10_500)
  })

  it('serves waiters in arrival order: a small frame does not overtake a large one', async () => {
    const b = bucket(1000, 1000)
    await b.take(1000)
    const large = watched(b.take(800))
    const small = watched(b.take(100))
    // At 100 ms the small frame would fit; it must still wait for the large one.
    await vi.advanceTimersByTimeAsync(799)
    expect(large.resolvedAt).toBeUndefined()
    expect(small.resolvedAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(large.resolvedAt).toBe(800)
    expect(small.resolvedAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(100)
    expect(small.resolvedAt).toBe(900)
  })

  it('lets a frame larger than the burst go once the bucket is full; the next frame pays its debt', async () => {
    const b = bucket(1000, 1000)
    const big = watched(b.take(3000))
    await settle()
    expect(big.resolvedAt).toBe(0)
    const after = watched(b.take(1))
    await vi.advanceTimersByTimeAsync(2000)
    expect(after.resolvedAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(after.resolvedAt).toBe(2001)
  })

  it('an aborted wait rejects with the reason at once and draws no tokens', async () => {
    const b = bucket(1000, 1000)
    await b.take(1000)
    const controller = new AbortController()
    const aborted = watched(b.take(500, controller.signal))
    const next = watched(b.take(500))
    await vi.advanceTimersByTimeAsync(100)
    const reason = new Error('peer went away')
    controller.abort(reason)
    await settle()
    expect(aborted.error).toBe(reason)
    expect(elapsed()).toBe(100)
    // Had the aborted take drawn its 500 bytes, the next would wait until 1000 ms.
    await vi.advanceTimersByTimeAsync(399)
    expect(next.resolvedAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(next.resolvedAt).toBe(500)
  })

  it('an already-aborted signal rejects a take that has to wait', async () => {
    const b = bucket(1000, 1000)
    await b.take(1000)
    const reason = new Error('gone')
    const late = watched(b.take(10, AbortSignal.abort(reason)))
    await settle()
    expect(late.error).toBe(reason)
  })

  // Regression (fixed): a take queued behind another waiter only looks at its signal when its
  // turn comes, so an abort waits for every earlier waiter (here 5 s) instead of rejecting at once.
  it('an aborted wait rejects at once even while queued behind another waiter', async () => {
    const b = bucket(1000, 1000)
    await b.take(1000)
    void b.take(5000)
    const controller = new AbortController()
    const queued = watched(b.take(1, controller.signal))
    await vi.advanceTimersByTimeAsync(10)
    controller.abort(new Error('stop'))
    await vi.advanceTimersByTimeAsync(10)
    expect(queued.error).toBeInstanceOf(Error)
  })

  it('never exceeds burst + rate·t, and is late by at most 1 ms per frame (seeded run of 200 frames)', async () => {
    const rate = 50_000
    const burst = 16_384
    const b = bucket(rate, burst)
    const next = mulberry32(11)
    const sizes = Array.from({ length: 200 }, () => 1 + Math.floor(next() * burst))
    const done: Array<{ resolvedAt?: number }> = sizes.map(n => watched(b.take(n)))
    const total = sizes.reduce((a, n) => a + n, 0)
    const ideal = (total - burst) * 1000 / rate
    for (let step = 0; step < Math.ceil(ideal) + sizes.length + 10 && done.some(d => d.resolvedAt === undefined); step++) {
      await vi.advanceTimersByTimeAsync(1)
    }
    let sent = 0
    for (const [i, d] of done.entries()) {
      expect(d.resolvedAt, `frame ${i}`).toBeDefined()
      const at = d.resolvedAt as number
      if (i > 0) expect(at).toBeGreaterThanOrEqual(done[i - 1]?.resolvedAt as number)
      sent += sizes[i] as number
      expect(sent, `frame ${i} at ${at} ms`).toBeLessThanOrEqual(burst + rate * at / 1000)
    }
    const last = done.at(-1)?.resolvedAt as number
    expect(last).toBeGreaterThanOrEqual(Math.floor(ideal))
    expect(last).toBeLessThanOrEqual(Math.ceil(ideal) + sizes.length)
  })
})

describe('upload cap admission', () => {
  it('admits answers while the bytes under way fit half the deadline, and one always when idle', async () => {
    const cap = uploadCap(1000, 2000) as NonNullable<ReturnType<typeof uploadCap>>
    expect(cap.drainMs()).toBe(0)
    const a = cap.admit(600)
    expect(a).toBeDefined()
    expect(cap.drainMs()).toBe(600) // what a busy answer asks a requester to wait
    await cap.pace(200, AbortSignal.timeout(5_000)) // within the 1000-byte burst: at once
    expect(cap.drainMs()).toBe(400) // bytes already sent are not waited for again
    expect(cap.admit(600)).toBeUndefined() // 1200 bytes at 1000 B/s: past 1 s
    const b = cap.admit(400) // exactly 1 s
    expect(b).toBeDefined()
    a?.()
    a?.() // a release counts once
    const c = cap.admit(600)
    expect(c).toBeDefined()
    expect(cap.admit(1)).toBeUndefined()
    b?.()
    c?.()
    expect(cap.drainMs()).toBe(0)
    // Idle, an answer larger than the bound still goes (alone), else it could never be served.
    expect(cap.admit(5000)).toBeDefined()
    expect(cap.admit(1)).toBeUndefined()
  })

  it("takes back, when an answer admitted with its signal ends, only the bytes it paced itself", async () => {
    // 1000 B/s, burst 1000: every pace below is at once.
    const cap = uploadCap(1000, 10_000) as NonNullable<ReturnType<typeof uploadCap>>
    const a = new AbortController()
    const b = new AbortController()
    const releaseA = cap.admit(1000, a.signal)
    const releaseB = cap.admit(1000, b.signal)
    await cap.pace(600, a.signal)
    expect(cap.drainMs()).toBe(1400)
    // B breaks off having sent nothing: A's last 400 bytes are all that is left. Before, B took
    // back its whole 1000 from the 600 A had paced: 1000 ms asked for 400 ms of work.
    releaseB?.()
    expect(cap.drainMs()).toBe(400)
    await cap.pace(400, a.signal)
    releaseA?.()
    expect(cap.drainMs()).toBe(0)
  })
})
