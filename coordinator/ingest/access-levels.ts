/**
 * Which access level each unit of a model is sealed at (DESIGN.md, "Keys and access": role →
 * block ranges; review 50a M2). An ingest may name units and their levels; a unit it does not name
 * keeps its level in the model's latest version, and a new unit gets the default. Rounds keep each
 * block's level as it is (base-model.ts `plansOf`).
 */
import { unitsOfTensors } from '../../shared/blocks/partition.ts'
import { accessLevelSchema, MAX_ACCESS_UNITS } from '../../shared/client/api-schemas.ts'
import type { Manifest } from '../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../shared/model/types.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { DEFAULT_ACCESS_LEVEL } from '../constants.ts'

/** Each unit's level in a version: its blocks' (a unit split over blocks has one level in all). */
export function levelsIn (manifest: Manifest): Map<string, string> {
  const units = unitsOfTensors(manifest.tensors)
  const levels = new Map<string, string>()
  for (const block of manifest.blocks) {
    for (const part of block.parts) levels.set(units[part.tensor] as string, block.access)
  }
  return levels
}

/**
 * The level of every unit of `tensors`: `given` (unit → level; a key ending in `*` names every
 * unit it prefixes, the longest such key winning, and an exact name any prefix) over
 * `previous`'s, else the default. A name that is no unit, a prefix of none, or a malformed level
 * is refused; so is a new unit left unnamed while `previous` seals some above the default.
 */
export function unitLevels (tensors: readonly TensorInfo[], given: Readonly<Record<string, string>> | undefined, previous: Manifest | undefined): Map<string, string> {
  const units = [...new Set(unitsOfTensors(tensors))]
  const kept = previous === undefined ? new Map<string, string>() : levelsIn(previous)
  const named = namedLevels(units, given ?? {})
  // Levels follow unit names, which change when layers are renamed or added (tfjs numbers its
  // layers anew in each rebuilt model): a model whose latest version seals some units above the
  // default does not let new units go out at the default unsaid (review 51b: premium weights were
  // published at default after a rebuild).
  // Names kept are no proof either: a rebuild with one layer fewer numbers the head `dense_2`,
  // a unit that was at the default (review 51c). So once the names differ in any way, every unit
  // is named (`--access '*=default' --access dense_2=premium`).
  const raised = [...kept].filter(([, level]) => level !== DEFAULT_ACCESS_LEVEL)
  const changed = units.length !== kept.size || units.some(u => !kept.has(u))
  const unnamed = units.filter(u => !named.has(u))
  if (raised.length > 0 && changed && unnamed.length > 0) {
    const some = (list: string[]): string => `${list.slice(0, 5).join(', ')}${list.length > 5 ? `, … (${list.length})` : ''}`
    throw new InvalidInputError(`access: version ${previous?.version ?? ''} seals ${some(raised.map(([unit, level]) => `${unit} at ${level}`))}, and this model's units are not that version's (${some(units)} against ${some([...kept.keys()])}): name every unit's level (--access '*=default', then the raised ones)`)
  }
  return new Map(units.map(u => [u, named.get(u) ?? kept.get(u) ?? DEFAULT_ACCESS_LEVEL]))
}

/** Each unit `given` names, directly or by a prefix, with its level. */
function namedLevels (units: readonly string[], given: Readonly<Record<string, string>>): Map<string, string> {
  const entries = Object.entries(given)
  if (entries.length > MAX_ACCESS_UNITS) throw new InvalidInputError(`access: ${entries.length} units named, at most ${MAX_ACCESS_UNITS}`)
  const known = new Set(units)
  // Exact names first, then prefixes from the longest: the first to claim a unit keeps it.
  const ordered = entries.map(([key, level]) => ({ key, level, prefix: key.endsWith('*') ? key.slice(0, -1) : undefined }))
    .sort((a, b) => (a.prefix === undefined ? -1 : 0) - (b.prefix === undefined ? -1 : 0) || (b.prefix?.length ?? 0) - (a.prefix?.length ?? 0))
  const named = new Map<string, string>()
  for (const { key, level, prefix } of ordered) {
    const checked = accessLevelSchema.safeParse(level)
    if (!checked.success) throw new InvalidInputError(`access: unit ${key}: "${level}" is not ${checked.error.issues[0]?.message ?? 'an access level'}`)
    const matched = prefix === undefined ? (known.has(key) ? [key] : []) : units.filter(u => u.startsWith(prefix))
    if (matched.length === 0) {
      const some = units.slice(0, 8)
      throw new InvalidInputError(`access: the model has no unit ${prefix === undefined ? `"${key}"` : `starting "${prefix}"`}; its units: ${some.join(', ')}${units.length > some.length ? `, … (${units.length}; blockfed versions NAME --units lists them)` : ''}`)
    }
    for (const unit of matched) if (!named.has(unit)) named.set(unit, level)
  }
  return named
}
