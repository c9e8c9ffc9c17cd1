/**
 * Cleanup that does not stop at the first failure: each step runs, in order, whether or not an
 * earlier one threw, and the errors come back for the caller to report once everything ran.
 */

/**
 * @example
 * const errors = await runAll([() => runtime.stop(), () => coordinator.stop(), () => rm(dir, { recursive: true })])
 * if (errors.length > 0) throw errors[0]
 */
export async function runAll (steps: Array<() => Promise<unknown>>): Promise<unknown[]> {
  const errors: unknown[] = []
  for (const step of steps) {
    try {
      await step()
    } catch (err) {
      errors.push(err)
    }
  }
  return errors
}
