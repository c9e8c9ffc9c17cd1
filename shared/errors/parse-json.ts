/**
 * JSON text from outside, checked by a zod schema: the one place that turns "not JSON" and
 * schema failures into a typed error naming what is wrong. Callers pick the error class that
 * fits their boundary (a wire frame, a config or key file, local state that may be damaged).
 */
import type { z } from 'zod'
import { InvalidInputError, type BlockfedError } from './errors.ts'
// zod's unknown-key messages say which known key each most likely meant (installed on import).
import './suggest.ts'

/** One line naming the first problems zod found, with their paths (none for the whole value: the caller names it). */
export function describeIssues (error: z.ZodError): string {
  return error.issues.slice(0, 3).map(i => i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message).join('; ')
}

/** Parses `text` as JSON and checks it with `schema`; throws `Err` (`what: …`) otherwise. */
export function parseJsonWith<T> (schema: z.ZodType<T>, text: string, what: string, Err: new (message: string, options?: { cause?: unknown }) => BlockfedError = InvalidInputError): T {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new Err(`${what}: not JSON`, { cause: err })
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw new Err(`${what}: ${describeIssues(parsed.error)}`, { cause: parsed.error })
  return parsed.data
}
