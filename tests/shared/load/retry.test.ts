import { describe, it, expect } from 'vitest'
import { retrying } from '../../../shared/load/retry.ts'
import { BusyError, NotFoundError, UnavailableError } from '../../../shared/errors/errors.ts'
import type { BlockSource } from '../../../shared/load/source.ts'

function flaky (failures: Error[]): BlockSource & { calls: number } {
  const source = {
    name: 'flaky',
    calls: 0,
    async get () {
      const err = failures[source.calls++]
      if (err !== undefined) throw err
      return new Uint8Array([1])
    }
  }
  return source
}

describe('retrying block source', () => {
  const signal = AbortSignal.timeout(10_000)
  it('retries transient failures up to the bound', async () => {
    const s = flaky([new UnavailableError('a'), new UnavailableError('b')])
    expect(await retrying(s, 2, 1).get('x', { signal })).toEqual(new Uint8Array([1]))
    expect(s.calls).toBe(3)
    const t = flaky([new UnavailableError('a'), new UnavailableError('b'), new UnavailableError('c')])
    await expect(retrying(t, 2, 1).get('x', { signal })).rejects.toThrow('c')
    expect(t.calls).toBe(3)
  })
  it('never retries a NotFoundError or other errors', async () => {
    const s = flaky([new NotFoundError('gone')])
    await expect(retrying(s, 5, 1).get('x', { signal })).rejects.toThrow('gone')
    expect(s.calls).toBe(1)
  })
  it('stops waiting when the caller aborts', async () => {
    const s = flaky([new UnavailableError('a'), new UnavailableError('b')])
    const controller = new AbortController()
    const pending = retrying(s, 3, 60_000).get('x', { signal: controller.signal })
    controller.abort(new Error('stop'))
    await expect(pending).rejects.toThrow('stop')
    expect(s.calls).toBe(1)
  })
  it('waits out busy answers as asked (jittered to at most 1.5 ×) without using a retry, within its patience', async () => {
    const busy = (): BusyError => new BusyError('busy', 20)
    const s = flaky([busy(), busy(), busy(), new UnavailableError('down'), busy()])
    const started = performance.now()
    // One retry for the one real failure: the four busy answers use none.
    expect(await retrying(s, 1, 1, 1_000).get('x', { signal })).toEqual(new Uint8Array([1]))
    expect(s.calls).toBe(6)
    expect(performance.now() - started).toBeGreaterThanOrEqual(4 * 20 - 1)
    // Patience of 50 ms: two waits of 20–30 ms may not both fit; past it a busy answer counts as a failure.
    const t = flaky(Array.from({ length: 10 }, busy))
    await expect(retrying(t, 0, 1, 50).get('x', { signal })).rejects.toThrow(BusyError)
    expect(t.calls).toBeGreaterThanOrEqual(2)
    expect(t.calls).toBeLessThanOrEqual(3)
  })
})
