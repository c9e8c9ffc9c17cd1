/**
 * Request rates per peer and per host (shared/p2p/request-rate.ts) on fake timers: a peer's
 * burst goes at once and the rest at its rate; another peer is not slowed by it; Sybil ids of
 * one host share the host's rate; a wait ends with its signal; forgotten keys are bounded.
 */
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest'
import { requestRate } from '../../../shared/p2p/request-rate.ts'

let t0 = 0
const rate = (options: Parameters<typeof requestRate>[0]): ReturnType<typeof requestRate> => requestRate({ now: () => Date.now(), ...options })

/** Runs `count` waits of `peer` one after another (as one stream's requests are read); resolves with when the last one was let through. */
async function sequence (r: ReturnType<typeof requestRate>, peer: string, host: string | undefined, count: number): Promise<number> {
  for (let i = 0; i < count; i++) await r.wait(peer, host, AbortSignal.timeout(60_000))
  return Date.now() - t0
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
  t0 = Date.now()
})

afterEach(() => {
  vi.useRealTimers()
})

describe('request rate', () => {
  it('lets a peer\'s burst through at once, then one request per 1/rate', async () => {
    const r = rate({ perPeer: 10, peerBurst: 5 })
    expect(await sequence(r, 'a', undefined, 5)).toBe(0)
    expect(r.slowed).toBe(0)
    const rest = sequence(r, 'a', undefined, 10)
    await vi.advanceTimersByTimeAsync(999)
    let doneAt: number | undefined
    void rest.then(at => { doneAt = at })
    await vi.advanceTimersByTimeAsync(0)
    expect(doneAt).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(doneAt).toBe(1000)
    expect(r.slowed).toBe(10)
  })

  it('a peer over its rate does not slow another peer', async () => {
    const r = rate({ perPeer: 10, peerBurst: 2 })
    const flood = sequence(r, 'flooder', undefined, 50)
    await vi.advanceTimersByTimeAsync(100)
    expect(await sequence(r, 'other', undefined, 2)).toBe(100)
    await vi.advanceTimersByTimeAsync(5_000)
    expect(await flood).toBe(4_800)
  })

  it('ids of one host share the host\'s rate; a peer of another host is not slowed', async () => {
    const r = rate({ perPeer: 100, peerBurst: 10, perHost: 10 })
    // The host's burst is 4 × the peer's (40): four ids of 10 each use it up, the fifth waits.
    for (const id of ['s1', 's2', 's3', 's4']) expect(await sequence(r, id, 'one host', 10)).toBe(0)
    const fifth = sequence(r, 's5', 'one host', 10)
    expect(await sequence(r, 'honest', 'another host', 10)).toBe(0)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(await fifth).toBe(1_000)
  })

  it('an id flooding past its own rate does not drain its host\'s budget for the host\'s other ids', async () => {
    const r = rate({ perPeer: 10, peerBurst: 5, perHost: 20, hostBurst: 10 })
    const flood = sequence(r, 'flooder', 'one host', 30)
    await vi.advanceTimersByTimeAsync(0)
    // The flooder's burst took 5 of the host's 10; the rest of its requests wait on its own bucket.
    expect(await sequence(r, 'mate', 'one host', 5)).toBe(0)
    await vi.advanceTimersByTimeAsync(3_000)
    expect(await flood).toBe(2_500)
  })

  it('counts a request that waited on both its peer\'s and its host\'s bucket once', async () => {
    // The second request waits 200 ms for the peer's next token; the host's came at 100 ms.
    const r = rate({ perPeer: 5, peerBurst: 1, perHost: 10, hostBurst: 1 })
    await r.wait('a', 'h', AbortSignal.timeout(60_000))
    const second = r.wait('a', 'h', AbortSignal.timeout(60_000)).then(() => Date.now() - t0)
    await vi.advanceTimersByTimeAsync(300)
    expect(await second).toBe(200)
    expect(r.slowed).toBe(1)
  })

  it('a wait ends when its signal fires, and takes no turn from the requests after it', async () => {
    const r = rate({ perPeer: 10, peerBurst: 1 })
    await r.wait('a', undefined, AbortSignal.timeout(60_000))
    const controller = new AbortController()
    const aborted = r.wait('a', undefined, controller.signal)
    const next = r.wait('a', undefined, AbortSignal.timeout(60_000)).then(() => Date.now() - t0)
    controller.abort(new Error('the stream closed'))
    await expect(aborted).rejects.toThrow('the stream closed')
    await vi.advanceTimersByTimeAsync(100)
    expect(await next).toBe(100)
  })

  it('remembers at most maxKeys peers: the least recently seen is forgotten first', async () => {
    const r = rate({ perPeer: 1, peerBurst: 1, maxKeys: 2 })
    await r.wait('a', undefined, AbortSignal.timeout(60_000))
    await r.wait('b', undefined, AbortSignal.timeout(60_000))
    await r.wait('c', undefined, AbortSignal.timeout(60_000))
    // 'a' was forgotten (a fresh burst); 'c' is remembered (it waits for its next token).
    await r.wait('a', undefined, AbortSignal.timeout(60_000))
    expect(r.slowed).toBe(0)
    const c = r.wait('c', undefined, AbortSignal.timeout(60_000))
    await vi.advanceTimersByTimeAsync(1_000)
    await c
    expect(r.slowed).toBe(1)
  })
})
