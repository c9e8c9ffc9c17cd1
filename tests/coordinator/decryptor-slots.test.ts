/**
 * The decryptor's slots (coordinator/decryptor/slots.ts) on their own: a slot is free again only
 * once its request and the work it started have both let go; stop() aborts the work.
 */
import { describe, it, expect } from 'vitest'
import { decryptSlots } from '../../coordinator/decryptor/slots.ts'
import { UnavailableError } from '../../shared/errors/errors.ts'

/** Work that runs until the test ends it, or until its signal is aborted. */
function pending (): { work: (signal: AbortSignal) => Promise<string>, finish: () => void } {
  let finish!: () => void
  return {
    work: async signal => await new Promise<string>((resolve, reject) => {
      finish = () => { resolve('done') }
      signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
    }),
    finish: () => { finish() }
  }
}

describe('decrypt slots', () => {
  it('holds a slot until both the request and its work let go, in either order', async () => {
    const slots = decryptSlots(2)
    const a = slots.take()!
    const b = slots.take()!
    expect(slots.take()).toBeUndefined()
    const work = pending()
    const result = a.run(work.work)
    a.release()
    a.release() // once is enough
    expect(slots.held).toBe(2)
    expect(slots.take()).toBeUndefined()
    work.finish()
    expect(await result).toBe('done')
    expect(slots.held).toBe(1)
    b.release()
    expect(slots.held).toBe(0)
    // Its request gone, a slot starts no work.
    await expect(b.run(async () => 'late')).rejects.toThrow(UnavailableError)
    expect(slots.held).toBe(0)
  })

  it('stop() aborts the work running, refuses new slots, and ended() reports when the work has ended', async () => {
    const slots = decryptSlots(2)
    expect(await slots.ended(0)).toBe(true)
    const slot = slots.take()!
    const work = pending()
    const result = slot.run(work.work)
    result.catch(() => {})
    slots.stop()
    await expect(result).rejects.toThrow(/stopped during the decryption/)
    expect(await slots.ended(1_000)).toBe(true)
    expect(slots.take()).toBeUndefined()
  })

  it('ended() gives up at its deadline on work that does not end', async () => {
    const slots = decryptSlots(1)
    const slot = slots.take()!
    void slot.run(async () => await new Promise<never>(() => {}))
    slots.stop()
    expect(await slots.ended(10)).toBe(false)
  })
})
