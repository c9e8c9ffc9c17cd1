/**
 * Sending a runtime's kept verdicts on versions (what its own data said: rejected by validation,
 * rolled back from) to the coordinator. They are kept in the model's folder first
 * (local-store.ts, `verdicts-unsent.json`), so a verdict reached offline, or before a restart,
 * goes at a later contact instead of being lost (review 49f: a version every runtime rejected
 * became the next round's base, unseen).
 */
import { ConflictError, InvalidInputError, NotFoundError, TooLargeError } from '../../shared/errors/errors.ts'
import { answeredByService } from '../../shared/client/json-call.ts'
import type { LocalVersions, Verdict } from './local-store.ts'

/**
 * Whether the coordinator refused a verdict for good: its version gone or out of the window that
 * takes verdicts (404, 409), its list full (409), a malformed report (400, 413) — said in its
 * own error body, since a proxy's 404 or 400 says nothing of the verdict. Anything else (down,
 * busy, a refused token, a failure of its own) is worth another try.
 */
export function refusedForGood (err: unknown): boolean {
  return (err instanceof NotFoundError || err instanceof ConflictError || err instanceof InvalidInputError || err instanceof TooLargeError) && answeredByService(err)
}

/**
 * One pass over a folder's kept verdicts, oldest first: each is sent, then forgotten once taken
 * or refused for good; the pass ends at the first that does not get through (the coordinator is
 * not reachable now: the rest would fail alike). The list is read again after each send, so a
 * verdict kept meanwhile goes in this pass too.
 */
export async function sendKeptVerdicts (local: Pick<LocalVersions, 'unsentVerdicts' | 'verdictSent'>, send: (verdict: Verdict) => Promise<void>): Promise<{ sent: number, dropped: number, left: number }> {
  const tried = new Set<string>()
  const named = (v: Verdict): string => `${v.version} ${v.verdict}`
  let sent = 0
  let dropped = 0
  for (;;) {
    const unsent = await local.unsentVerdicts()
    const next = unsent.find(v => !tried.has(named(v)))
    if (next === undefined) return { sent, dropped, left: unsent.length }
    tried.add(named(next))
    try {
      await send(next)
      sent++
    } catch (err) {
      if (!refusedForGood(err)) return { sent, dropped, left: unsent.length }
      dropped++
    }
    await local.verdictSent(next)
  }
}

/**
 * Runs passes one at a time per folder (two at once would send each verdict twice). A pass asked
 * for while one runs is run after it: the running one may have read the list before the verdict
 * that asked was kept. `track` gets every pass (the runtime's stop waits for them).
 */
export function verdictPasses (track: (pass: Promise<void>) => void): (folder: string, pass: () => Promise<unknown>) => void {
  const running = new Set<string>()
  const again = new Set<string>()
  const run = (folder: string, pass: () => Promise<unknown>): void => {
    if (running.has(folder)) {
      again.add(folder)
      return
    }
    running.add(folder)
    track(pass().then(() => {}, () => {}).finally(() => {
      running.delete(folder)
      if (again.delete(folder)) run(folder, pass)
    }))
  }
  return run
}
