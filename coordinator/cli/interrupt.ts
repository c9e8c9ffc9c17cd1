/**
 * Long-running commands (simulate, demo, pull, ingest) end cleanly when they are told to stop:
 * SIGINT, SIGTERM, or a standard output that closed under them (EPIPE: `blockfed simulate --json
 * | head -1`) abort the signal handed to the run, whose own cleanup then stops the runtimes, the
 * coordinator and any decryptor child and deletes its temporary data. The process then exits as a
 * shell reports a process killed by that signal: 128 + its number (130 SIGINT, 143 SIGTERM, 141
 * SIGPIPE).
 */
import { BlockfedError } from '../../shared/errors/errors.ts'

/** The run was stopped from outside (a signal, a closed output), not by a failure of its own. */
export class InterruptedError extends BlockfedError {
  override readonly name = 'InterruptedError'
}

export const EXIT_SIGINT = 130
export const EXIT_SIGTERM = 143
export const EXIT_SIGPIPE = 141

/**
 * Runs `run` with a signal that SIGINT, SIGTERM and an error on stdout abort. Once `run` has
 * settled after such an abort (its cleanup done), says so on stderr and exits with the matching
 * code; otherwise returns what `run` returned, or throws what it threw. A second SIGINT or
 * SIGTERM during the cleanup is not caught: it ends the process at once.
 *
 * @example
 * await interruptible(async signal => { await simulate({ ...options, signal }) })
 */
export async function interruptible<T> (run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  let exitCode = 0
  let settled = false
  const stop = (code: number, why: string): void => {
    if (controller.signal.aborted) return
    exitCode = code
    // A signal during the cleanup, of either kind, has its default action (review 53d: a SIGTERM after a SIGINT was swallowed).
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigterm)
    controller.abort(new InterruptedError(why))
  }
  const onSigint = (): void => stop(EXIT_SIGINT, 'interrupted (SIGINT)')
  const onSigterm = (): void => stop(EXIT_SIGTERM, 'terminated (SIGTERM)')
  const onStdoutError = (err: NodeJS.ErrnoException): void => {
    stop(EXIT_SIGPIPE, `standard output closed (${err.code ?? err.message})`)
    // After the run nothing is left to clean up; what was still to print has nowhere to go.
    if (settled) process.exit(exitCode)
  }
  process.once('SIGINT', onSigint)
  process.once('SIGTERM', onSigterm)
  // Stays for the life of the process: a write after the run (the summary) may fail too, and an
  // 'error' event without a listener would crash the process with a stack trace.
  process.stdout.on('error', onStdoutError)
  let outcome: { value: T } | undefined
  try {
    outcome = { value: await run(controller.signal) }
  } catch (err) {
    if (!controller.signal.aborted) throw err
  } finally {
    settled = true
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigterm)
  }
  if (outcome === undefined || controller.signal.aborted) {
    console.error(`blockfed: ${(controller.signal.reason as Error).message}; stopped and cleaned up`)
    process.exit(exitCode)
  }
  return outcome.value
}

/**
 * The stop of a command that serves until told to (coordinator, decryptor, witness): SIGINT,
 * SIGTERM or a standard output that closed under it (EPIPE: `blockfed coordinator | head -1`)
 * run `stop` once, then the process exits: 0 after a signal, 141 after the output closed (review
 * 53b: that exited at once, rounds, token uses and the database left as a kill leaves them). A
 * stop that fails (a decryptor whose decryptions outlast its deadline) is said on stderr and
 * exits 1. A signal during the stop ends the process at once. Installed before the command prints
 * anything; returns the stop for other causes (the decryptor's parent going away).
 */
export function serveUntilStopped (stop: () => Promise<unknown>): () => void {
  let stopping = false
  const onSignal = (): void => { stopWith(0) }
  const stopWith = (code: number): void => {
    if (stopping) return
    stopping = true
    // From now on a signal has its default action: a second one, of either kind, ends the process at once.
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    stop().then(() => process.exit(code), (err: unknown) => {
      console.error(`blockfed: could not stop cleanly: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`)
      process.exit(1)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  // Stays for the life of the process: every later write to the closed output fails the same way.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (stopping) return
    console.error(`blockfed: standard output closed (${err.code ?? err.message}); stopping`)
    stopWith(err.code === 'EPIPE' ? EXIT_SIGPIPE : 1)
  })
  return () => { stopWith(0) }
}
