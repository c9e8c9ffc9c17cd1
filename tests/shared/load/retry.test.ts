import { describe, it, expect } from 'vitest'
import { MIN_BUSY_WAIT_MS, retrying } from '../../../shared/load/retry.ts'
import { statusError } from '../../../shared/load/http-source.ts'
import { BusyError, IntegrityError, NotFoundError, UnavailableError } from '../../../shared/errors/errors.ts'
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
  it('stops waiting when the caller aborts, even on a source that ignores its signal', async () => {
    const deaf: BlockSource = { name: 'deaf', get: async () => await new Promise<Uint8Array>(() => {}) }
    const controller = new AbortController()
    const reason = new Error('stop')
    const pending = retrying(deaf, 3, 1).get('x', { signal: controller.signal })
    controller.abort(reason)
    const outcome = await Promise.race([pending.then(() => 'got', (err: unknown) => err), new Promise<'hung'>(resolve => setTimeout(() => resolve('hung'), 5_000).unref())])
    expect(outcome).toBe(reason)
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
  it('waits at least MIN_BUSY_WAIT_MS after a busy answer asking for no wait, so its patience runs out', async () => {
    // A server answering busy with a wait of 0, for ever: asked again at once before, never giving up.
    const s = flaky(Array.from({ length: 1_000 }, () => new BusyError('busy', 0)))
    await expect(retrying(s, 0, 1, 100).get('x', { signal })).rejects.toThrow(BusyError)
    // 100 ms of patience over waits of 10–15 ms: at most 11 answers, at least 7.
    expect(s.calls).toBeGreaterThanOrEqual(100 / (MIN_BUSY_WAIT_MS * 1.5))
    expect(s.calls).toBeLessThanOrEqual(100 / MIN_BUSY_WAIT_MS + 1)
  })
})

describe('HTTP status → error (statusError)', () => {
  it('turns a 503 with a Retry-After in seconds into a BusyError, clamped; anything else stays unavailable or not found', () => {
    const of = (status: number, retryAfter: string | null): Error => statusError(status, retryAfter, 'http://c/v1/blocks/x', 'x', 'http://c')
    expect(of(503, '1')).toMatchObject({ name: 'BusyError', retryAfterMs: 1000 })
    expect(of(503, ' 2 ')).toMatchObject({ name: 'BusyError', retryAfterMs: 2000 })
    expect(of(503, '0')).toMatchObject({ retryAfterMs: 100 })
    expect(of(503, '86400')).toMatchObject({ retryAfterMs: 30_000 })
    // An HTTP date, a negative, a fraction or garbage is not a delay in seconds we honour.
    for (const bad of [null, 'Wed, 21 Oct 2026 07:28:00 GMT', '-1', '1.5', 'soon', '9999999999']) {
      const err = of(503, bad)
      expect(err).toBeInstanceOf(UnavailableError)
      expect(err).not.toBeInstanceOf(BusyError)
    }
    expect(of(500, '1')).not.toBeInstanceOf(BusyError)
    expect(of(404, null)).toBeInstanceOf(NotFoundError)
  })
  it("reads a 502 as damage only when the body is the coordinator's own IntegrityError; a proxy's 502 stays unavailable", () => {
    const of = (status: number, body: string): Error => statusError(status, null, 'http://c/v1/blocks/x', 'x', 'http://c', body)
    const damaged = JSON.stringify({ error: 'IntegrityError', message: 'blocks/x is damaged' })
    expect(of(502, damaged)).toBeInstanceOf(IntegrityError)
    expect(of(502, damaged).message).toBe('GET http://c/v1/blocks/x: HTTP 502: blocks/x is damaged')
    for (const [status, body] of [[502, '<html>Bad Gateway</html>'], [502, JSON.stringify({ error: 'UnavailableError', message: 'm' })], [500, damaged], [502, '']] as const) {
      const err = of(status, body)
      expect(err).toBeInstanceOf(UnavailableError)
      expect(err).not.toBeInstanceOf(IntegrityError)
    }
  })
})
