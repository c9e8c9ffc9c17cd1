/**
 * The models an API token may act on (review 49b: one edge token opened every model's keys): a
 * token may be limited to model names and `name-*` prefixes; null is every model.
 */

/** Whether a token that reads the access levels `reads` (`*`: every level) may read a block at `level`. */
export function readsLevel (reads: readonly string[], level: string): boolean {
  return reads.includes('*') || reads.includes(level)
}

/** Whether a token limited to `models` (null: every model) may act on `model`. */
export function inScope (models: readonly string[] | null, model: string): boolean {
  return models === null || models.some(m => m.endsWith('*') ? model.startsWith(m.slice(0, -1)) : m === model)
}
