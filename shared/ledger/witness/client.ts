/**
 * Client of a witness's add-checkpoint (c2sp.org/tlog-witness), over fetch with a deadline.
 * Isomorphic (no `node:` imports). It returns the witness's signature lines unverified: append
 * them to the checkpoint note and open it with the witness's cosignature verifier to trust them.
 */
import {
  AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, TooLargeError, UnavailableError, type BlockfedError
} from '../../errors/errors.ts'
import { readTextBounded } from '../../client/bounded-body.ts'
import { deadlineError, withDeadline } from '../../load/deadline.ts'
import { parseSignatureLine } from '../note.ts'
import { ADD_CHECKPOINT_TIMEOUT_MS, WITNESS_BODY_LIMIT } from './constants.ts'
import { InconsistentCheckpointError, WitnessConflictError } from './errors.ts'
import { formatAddCheckpoint, type AddCheckpointRequest } from './request.ts'

export { InconsistentCheckpointError, WitnessConflictError } from './errors.ts'

const ERRORS: Record<number, new (message: string) => BlockfedError> = {
  400: InvalidInputError, 403: AccessDeniedError, 404: NotFoundError, 413: TooLargeError, 422: InconsistentCheckpointError
}

/**
 * Asks the witness at `url` (its submission prefix) to cosign `note`, proving consistency from
 * `old`, the size it last cosigned. Returns its signature lines without newlines. A 409 throws
 * WitnessConflictError whose `size` is the witness's size: retry from there.
 * @example
 *   const lines = await addCheckpoint(url, { old: 0, proof: [], note })
 *   openNote(note + lines.map(l => `${l}\n`).join(''), [witnessVerifier])
 */
export async function addCheckpoint (url: string, request: AddCheckpointRequest, signal?: AbortSignal, timeoutMs = ADD_CHECKPOINT_TIMEOUT_MS): Promise<string[]> {
  if (typeof url !== 'string' || !/^https?:\/\//.test(url)) throw new InvalidInputError(`url: expected an http(s) URL, got "${String(url).slice(0, 100)}"`)
  const body = formatAddCheckpoint(request)
  const target = `${url.replace(/\/+$/, '')}/add-checkpoint`
  const what = `POST ${target}`
  let res: Response
  let text: string
  try {
    res = await fetch(target, { method: 'POST', body, headers: { 'content-type': 'text/plain; charset=utf-8' }, signal: withDeadline(signal, timeoutMs) })
    text = await readTextBounded(res, WITNESS_BODY_LIMIT, `${what}: answer far longer than cosignatures take`)
  } catch (err) {
    if (err instanceof TooLargeError) throw err
    if (signal?.aborted === true) throw signal.reason
    const timedOut = deadlineError(err, what, timeoutMs)
    if (timedOut !== err) throw timedOut
    throw new UnavailableError(`${what}: witness unreachable: ${(err as Error).message}`, { cause: err })
  }
  if (res.status === 409) throw conflict(what, res, text)
  if (!res.ok) {
    const Err = ERRORS[res.status] ?? UnavailableError
    throw new Err(`${what}: HTTP ${res.status}: ${text.trim().slice(0, 300)}`)
  }
  return signatureLines(what, text)
}

/** 409's body is the witness's size and a newline, typed `text/x.tlog.size`. */
function conflict (what: string, res: Response, text: string): BlockfedError {
  const type = res.headers.get('content-type')?.split(';')[0]?.trim()
  const size = /^(0|[1-9][0-9]*)\n$/.exec(text)
  if (type !== 'text/x.tlog.size' || size === null || !Number.isSafeInteger(Number(size[1]))) {
    return new IntegrityError(`${what}: 409 without a text/x.tlog.size body`)
  }
  return new WitnessConflictError(`${what}: the witness holds size ${size[1]}`, Number(size[1]))
}

/** 200's body is one or more note signature lines, each ending in a newline. */
function signatureLines (what: string, text: string): string[] {
  if (text === '' || !text.endsWith('\n')) throw new IntegrityError(`${what}: answer is not newline-terminated signature lines`)
  return text.slice(0, -1).split('\n').map(line => {
    try {
      return parseSignatureLine(line).line
    } catch (err) {
      throw new IntegrityError(`${what}: answer holds a line that is not a note signature`, { cause: err })
    }
  })
}
