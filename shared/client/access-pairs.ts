/**
 * Access levels of units as `UNIT=LEVEL` text (the CLI's `--access`, the ingest route's `access`
 * query parameter) and back. Split at the last `=`: a unit name may hold one, a level may not.
 */
import { InvalidInputError } from '../errors/errors.ts'
import { accessLevelSchema, MAX_ACCESS_UNITS } from './api-schemas.ts'

/** `what` names the input in errors (`--access`, `querystring.access`). */
export function accessPairs (values: readonly string[], what = 'access'): Record<string, string> {
  if (values.length > MAX_ACCESS_UNITS) throw new InvalidInputError(`${what}: ${values.length} units named, at most ${MAX_ACCESS_UNITS}`)
  const levels = new Map<string, string>()
  for (const value of values) {
    const at = value.lastIndexOf('=')
    const unit = value.slice(0, at)
    const level = value.slice(at + 1)
    if (at < 1) throw new InvalidInputError(`${what} "${value}": expected UNIT=LEVEL (head=premium)`)
    const checked = accessLevelSchema.safeParse(level)
    if (!checked.success) throw new InvalidInputError(`${what} "${value}": "${level}" is not ${checked.error.issues[0]?.message ?? 'an access level'}`)
    if (levels.has(unit) && levels.get(unit) !== level) throw new InvalidInputError(`${what}: unit ${unit} given two levels (${levels.get(unit) ?? ''}, ${level})`)
    levels.set(unit, level)
  }
  return Object.fromEntries(levels)
}

/** Longest query an ingest sends: Node refuses request heads over 16 KiB, with no answer. */
const MAX_ACCESS_QUERY = 12 << 10

/** The query string of an ingest that sets `access` (empty without). */
export function accessQuery (access: Readonly<Record<string, string>> | undefined): string {
  const pairs = Object.entries(access ?? {})
  const query = pairs.length === 0 ? '' : `?${pairs.map(([unit, level]) => `access=${encodeURIComponent(`${unit}=${level}`)}`).join('&')}`
  // Said here: past it the coordinator drops the connection, which reads as an outage (review 51b).
  if (query.length > MAX_ACCESS_QUERY) throw new InvalidInputError(`access: ${pairs.length} units make a request of ${query.length} characters, at most ${MAX_ACCESS_QUERY}: name them by prefix (block_*=premium)`)
  return query
}
