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
 * The level of every unit of `tensors`: `given` (unit → level) over `previous`'s, else the
 * default. A unit `given` names that the model lacks, or a malformed level, is refused.
 */
export function unitLevels (tensors: readonly TensorInfo[], given: Readonly<Record<string, string>> | undefined, previous: Manifest | undefined): Map<string, string> {
  const units = unitsOfTensors(tensors)
  const known = new Set(units)
  const kept = previous === undefined ? new Map<string, string>() : levelsIn(previous)
  const levels = new Map(units.map(u => [u, kept.get(u) ?? DEFAULT_ACCESS_LEVEL]))
  const entries = Object.entries(given ?? {})
  if (entries.length > MAX_ACCESS_UNITS) throw new InvalidInputError(`access: ${entries.length} units named, at most ${MAX_ACCESS_UNITS}`)
  for (const [unit, level] of entries) {
    if (!known.has(unit)) {
      const some = [...known].slice(0, 8)
      throw new InvalidInputError(`access: the model has no unit "${unit}"; its units: ${some.join(', ')}${known.size > some.length ? `, … (${known.size}; blockfed versions NAME lists them)` : ''}`)
    }
    const checked = accessLevelSchema.safeParse(level)
    if (!checked.success) throw new InvalidInputError(`access: unit ${unit}: "${level}" is not ${checked.error.issues[0]?.message ?? 'an access level'}`)
    levels.set(unit, level)
  }
  return levels
}
