/**
 * The decryptor's bound on work at once (DECRYPT_SLOTS). A decrypt request takes a slot before
 * its body is read and gives it back when its reply closes; a decryption it starts holds the slot
 * too, until the decryption itself ends. Review 37a found the slot given back on the caller's
 * close alone: a caller that hung up after each claim ran any number of decryptions at once, each
 * holding a round's contributions in memory.
 *
 * `stop()` aborts the decryptions still running (one may run for hours; its round is decided
 * either way) and `ended()` waits, within a deadline, for each to record how it ended: the data
 * dir is let go only after that, so nothing writes into it once another process may hold it.
 */
import { InvalidConfigError, UnavailableError } from '../../shared/errors/errors.ts'

export interface Slot {
  /**
   * Runs `work` on this slot: the slot is free again only once the request has let go of it and
   * `work` has ended. `work` gets a signal that `stop()` aborts. Throws UnavailableError if the
   * request already let go (its caller left) or the slots are stopped.
   */
  run: <T>(work: (signal: AbortSignal) => Promise<T>) => Promise<T>
  /** The request is done with its slot (its reply closed); later calls do nothing. */
  release: () => void
}

export interface DecryptSlots {
  /** Slots held now, by requests or by the decryptions they started. */
  readonly held: number
  /** A free slot, or undefined when all are held or the slots are stopped. */
  take: () => Slot | undefined
  /** Refuses new slots and work, and aborts the work still running. */
  stop: () => void
  /** Resolves true once no work runs, or false if some still does after `timeoutMs`. */
  ended: (timeoutMs: number) => Promise<boolean>
}

/**
 * @example
 * const slots = decryptSlots(DECRYPT_SLOTS)
 * const slot = slots.take() ?? busy()
 * reply.raw.once('close', slot.release)
 * const sum = await slot.run(async signal => await decrypt(signal))
 */
export function decryptSlots (limit: number): DecryptSlots {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new InvalidConfigError(`limit: expected an integer ≥ 1, got ${limit}`)
  let held = 0
  let stopped = false
  /** Work running, each as a promise that settles when it has ended, with its abort. */
  const running = new Map<Promise<void>, AbortController>()

  return {
    get held () { return held },
    take () {
      if (stopped || held >= limit) return undefined
      held++
      let holders = 1
      let released = false
      const letGo = (): void => { if (--holders === 0) held-- }
      return {
        async run (work) {
          if (stopped) throw new UnavailableError('the decryptor is stopping')
          if (holders === 0) throw new UnavailableError('the request gave its decrypt slot back before its work started')
          holders++
          const controller = new AbortController()
          const result = work(controller.signal)
          const ended = result.then(() => {}, () => {})
          running.set(ended, controller)
          try {
            return await result
          } finally {
            running.delete(ended)
            letGo()
          }
        },
        release () {
          if (released) return
          released = true
          letGo()
        }
      }
    },
    stop () {
      stopped = true
      for (const controller of running.values()) controller.abort(new UnavailableError('the decryptor stopped during the decryption'))
    },
    async ended (timeoutMs) {
      if (running.size === 0) return true
      let timer: ReturnType<typeof setTimeout> | undefined
      const late = new Promise<boolean>(resolve => { timer = setTimeout(resolve, timeoutMs, false) })
      try {
        return await Promise.race([Promise.all(running.keys()).then(() => true), late])
      } finally {
        clearTimeout(timer)
      }
    }
  }
}
