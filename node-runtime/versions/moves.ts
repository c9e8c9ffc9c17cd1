/**
 * How a model folder's version state (`versions.json`: the version in use, the rollback target,
 * the versions refused) moves, as pure functions: the runtime's handles decide with them and
 * record through `LocalVersions.updateState`. Several handles may serve one folder, each on its
 * own version, so "back" is the folder's, and a handle left behind by another is told so.
 */
import { InvalidInputError } from '../../shared/errors/errors.ts'
import type { VersionState } from './local-store.ts'

/** The folder as messages name it. */
export interface FolderNames { modelName: string, modelDir: string }

/** A move back refused because another handle of the folder moved it (see `leftBehind`). */
export class LeftBehindError extends InvalidInputError {}

/**
 * Why "back" is not defined for a handle serving `serving` when another handle of its folder
 * moved the folder elsewhere: the folder's previous is the one before its current (review 48d:
 * a handle left behind "rolled back" 12 → 12 and lost the target). Undefined when it is not so.
 */
export function leftBehind (names: FolderNames, state: VersionState, serving: number): string | undefined {
  if (state.current === null || state.current === serving) return undefined
  const what = `${names.modelName}: this handle serves version ${serving}, and another handle of ${names.modelDir}`
  if (state.current > serving) return `${what} moved it to ${state.current}; name the version to roll back to, or update() first`
  // Moved back: update() would not come down to it (channels never move back). A load starts
  // from the folder's current unless the channel names a version not refused (review 49a).
  return state.rejected.includes(serving)
    ? `${what} rolled it back to ${state.current}, refusing ${serving}; release this handle and load the model again to serve ${state.current}`
    : `${what} moved it back to ${state.current}; name the version to roll back to`
}

/**
 * The state after a move from `from` to `to`. `rejectFrom`: never come back to `from` (a
 * rollback). `fromCurrent`: a move back decided from the folder's state, refused
 * (`LeftBehindError`) if another handle moved the folder since: each handle has its own lock,
 * so the decision and the record are apart (review 49a).
 */
export function afterMove (names: FolderNames, state: VersionState, from: number | null, to: number, { rejectFrom = false, fromCurrent = false } = {}): VersionState {
  const moved = fromCurrent && from !== null ? leftBehind(names, state, from) : undefined
  if (moved !== undefined) throw new LeftBehindError(moved)
  const rejected = new Set(state.rejected)
  if (rejectFrom && from !== null) rejected.add(from)
  rejected.delete(to)
  // The rollback target is never a refused version (a rollback's own `from`, or one refused
  // while another handle served it): check() would otherwise move back into it.
  const previous = [from === to ? null : from, state.previous].find(v => v !== null && v !== to && !rejected.has(v)) ?? null
  return { current: to, previous, rejected: [...rejected].sort((a, b) => a - b) }
}

/** The state with `version` refused as well (never taken again). */
export function withRejected (state: VersionState, version: number): VersionState {
  return { ...state, rejected: [...new Set([...state.rejected, version])].sort((a, b) => a - b) }
}

/**
 * The version a rollback goes to: `version` if named, else the folder's previous. `serving`: the
 * version the asking handle serves, when a handle asks (another handle of its folder may have
 * moved the folder: then "back" is not defined, and no version named is refused).
 */
export function rollbackTarget (names: FolderNames, state: VersionState, version: number | undefined, serving?: number): number {
  const moved = version === undefined && serving !== undefined ? leftBehind(names, state, serving) : undefined
  if (moved !== undefined) throw new LeftBehindError(moved)
  const to = version ?? state.previous
  if (to === null) throw new InvalidInputError(`${names.modelName}: no previous version to roll back to`)
  if (state.current !== null && to >= state.current) throw new InvalidInputError(`${names.modelName}: cannot roll back to ${to}, which is not earlier than the current version ${state.current}`)
  return to
}
