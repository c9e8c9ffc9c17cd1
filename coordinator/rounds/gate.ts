/**
 * Waiting for a set of clients with a deadline: `settle(id)` when one answers or is dropped;
 * `done` resolves when every expected client is settled, the deadline passes or the signal
 * aborts — whichever comes first. A round never waits longer than its deadline for anyone.
 */
export interface Gate {
  settle: (id: string) => void
  readonly pending: ReadonlySet<string>
  done: Promise<{ timedOut: boolean }>
}

export function gate (expected: Iterable<string>, timeoutMs: number, signal?: AbortSignal): Gate {
  const pending = new Set(expected)
  let finish: (value: { timedOut: boolean }) => void = () => {}
  const done = new Promise<{ timedOut: boolean }>(resolve => { finish = resolve })
  const timer = setTimeout(() => end(true), timeoutMs)
  const onAbort = (): void => end(true)
  signal?.addEventListener('abort', onAbort, { once: true })
  function end (timedOut: boolean): void {
    clearTimeout(timer)
    signal?.removeEventListener('abort', onAbort)
    finish({ timedOut })
  }
  if (pending.size === 0) end(false)
  // A signal that fired before the gate was built never dispatches 'abort' again.
  else if (signal?.aborted === true) end(true)
  return {
    pending,
    settle (id) {
      if (pending.delete(id) && pending.size === 0) end(false)
    },
    done
  }
}
