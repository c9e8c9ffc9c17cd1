/**
 * "Did you mean …?" for unknown keys, wherever input is checked: the AoE config names them with
 * their path (shared/config/aoe.ts), and every other strict zod object (round requests, wire
 * messages, HTTP bodies, key files) through zod's global error hook below, which knows the
 * object's own keys from the schema that raised the issue.
 */
import { z } from 'zod'

/** Longest key a guess is made for (no known key is near this long). */
const MAX_GUESSED_KEY = 64

/** The known key a typo most likely meant: same letters in another case, or ≤ 2 edits away. */
export function closestKey (key: string, known: readonly string[]): string | undefined {
  if (key.length > MAX_GUESSED_KEY) return undefined
  const lower = key.toLowerCase()
  const sameCase = known.find((k) => k.toLowerCase() === lower)
  if (sameCase !== undefined) return sameCase
  let best: string | undefined
  let bestDistance = Math.min(2, Math.floor(key.length / 3))
  for (const k of known) {
    const d = editDistance(lower, k.toLowerCase())
    if (d <= bestDistance) {
      best = k
      bestDistance = d - 1 // a later candidate must be strictly closer
    }
  }
  return best
}

/** Levenshtein distance (insert, delete, substitute: 1 each). */
function editDistance (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]!
}

/** Keys named in one message at most (a body of 40,000 unknown keys is described as fast as one). */
const MAX_KEYS_NAMED = 5

/** The keys of the object schema that raised an issue (zod core's `def.shape`), if it is one. */
function shapeKeys (inst: unknown): string[] {
  const shape = (inst as { _zod?: { def?: { shape?: unknown } } } | undefined)?._zod?.def?.shape
  return shape !== null && typeof shape === 'object' ? Object.keys(shape) : []
}

/**
 * zod's message for unknown keys, with the known key each most likely meant:
 * `Unrecognized key: "epoch" (did you mean "epochs"?)`. Other issues keep zod's messages.
 */
function unknownKeysMessage (issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code !== 'unrecognized_keys') return undefined
  const known = shapeKeys(issue.inst)
  const named = issue.keys.slice(0, MAX_KEYS_NAMED).map((key) => {
    const guess = closestKey(key, known)
    const shown = key.length > MAX_GUESSED_KEY ? `${key.slice(0, MAX_GUESSED_KEY)}…` : key
    return `${JSON.stringify(shown)}${guess === undefined ? '' : ` (did you mean ${JSON.stringify(guess)}?)`}`
  })
  const more = issue.keys.length > MAX_KEYS_NAMED ? ` and ${issue.keys.length - MAX_KEYS_NAMED} more` : ''
  return `Unrecognized key${issue.keys.length === 1 ? '' : 's'}: ${named.join(', ')}${more}`
}

z.config({ customError: unknownKeysMessage })
