/**
 * A cooperative-yield helper for long loops: `await pause()` hands control back to the event
 * loop once `sliceMs` have passed since the last time, so long work neither freezes a page nor
 * starves a server (its sockets, timers and pings), without paying a timer tick per item.
 */
export function yielder (sliceMs = 10): () => Promise<void> {
  let last = performance.now()
  return async () => {
    if (performance.now() - last < sliceMs) return
    await new Promise<void>(resolve => setTimeout(resolve, 0))
    last = performance.now()
  }
}
