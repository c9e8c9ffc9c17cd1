/**
 * A model folder's version state as it moves (node-runtime/versions/moves.ts): upgrades keep the
 * way back, rollbacks refuse what they leave and never target a refused version, and a handle
 * that another handle of its folder left behind gets no "back" of its own.
 */
import { describe, expect, it } from 'vitest'
import { afterMove, leftBehind, LeftBehindError, rollbackTarget, withRejected } from '../../../node-runtime/versions/moves.ts'
import type { VersionState } from '../../../node-runtime/versions/local-store.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'

const names = { modelName: 'm', modelDir: 'dir' }
const state = (current: number | null, previous: number | null, rejected: number[] = []): VersionState => ({ current, previous, rejected })

describe('afterMove', () => {
  it.each([
    // [before, from, to, options, after]
    ['first load', state(null, null), null, 1, {}, state(1, null)],
    ['upgrade: the version left is the way back', state(2, 1), 2, 3, {}, state(3, 2)],
    ['rollback: the version left is refused, the target is the one before', state(3, 2), 3, 2, { rejectFrom: true }, state(2, null, [3])],
    ['rollback past the previous keeps it as the way back', state(3, 2), 3, 1, { rejectFrom: true }, state(1, 2, [3])],
    ['a refused version taken again on purpose is no longer refused', state(2, 1, [3]), 2, 3, {}, state(3, 2)],
    ['a refused previous is never the target', state(3, 2, [2]), 3, 4, {}, state(4, 3, [2])],
    // The folder's 3 is newer than the target: not a way back, and not refused (update() may take it).
    ['a rollback named from a handle left on 2 while the folder is on 3', state(3, 2), 2, 1, { rejectFrom: true }, state(1, null, [2])]
  ])('%s', (_, before, from, to, options, after) => {
    expect(afterMove(names, before, from, to, options)).toEqual(after)
  })

  it('refuses a move back decided from a state another handle has since changed, saying so', () => {
    expect(() => afterMove(names, state(3, 2), 2, 1, { rejectFrom: true, fromCurrent: true }))
      .toThrow(new LeftBehindError('m: this handle serves version 2, and another handle of dir moved it to 3; name the version to roll back to, or update() first'))
    expect(afterMove(names, state(3, 2), 3, 2, { rejectFrom: true, fromCurrent: true })).toEqual(state(2, null, [3]))
  })
})

describe('leftBehind', () => {
  it('says nothing for a handle on the folder\'s current, or a folder with none', () => {
    expect(leftBehind(names, state(3, 2), 3)).toBeUndefined()
    expect(leftBehind(names, state(null, null), 3)).toBeUndefined()
  })

  it('advises by where the folder went, and whether it refused what the handle serves', () => {
    expect(leftBehind(names, state(3, 2), 2)).toBe('m: this handle serves version 2, and another handle of dir moved it to 3; name the version to roll back to, or update() first')
    expect(leftBehind(names, state(1, null, [3]), 3)).toBe('m: this handle serves version 3, and another handle of dir rolled it back to 1, refusing 3; release this handle and load the model again to serve 1')
    expect(leftBehind(names, state(1, 3, [2]), 3)).toBe('m: this handle serves version 3, and another handle of dir moved it back to 1; name the version to roll back to')
  })
})

describe('rollbackTarget', () => {
  it('is the version named, or the previous, and only ever earlier than the current', () => {
    expect(rollbackTarget(names, state(3, 2), undefined, 3)).toBe(2)
    expect(rollbackTarget(names, state(3, 2), 1, 3)).toBe(1)
    expect(() => rollbackTarget(names, state(3, null), undefined, 3)).toThrow(new InvalidInputError('m: no previous version to roll back to'))
    expect(() => rollbackTarget(names, state(3, 2), 3, 3)).toThrow(new InvalidInputError('m: cannot roll back to 3, which is not earlier than the current version 3'))
  })

  it('from a handle left behind: a version must be named', () => {
    expect(() => rollbackTarget(names, state(3, 2), undefined, 2)).toThrow(LeftBehindError)
    expect(rollbackTarget(names, state(3, 2), 1, 2)).toBe(1)
    // The CLI's rollback asks with no handle: the folder's previous.
    expect(rollbackTarget(names, state(3, 2), undefined)).toBe(2)
  })
})

describe('withRejected', () => {
  it('adds a version once, in order', () => {
    expect(withRejected(state(3, 2, [5]), 4)).toEqual(state(3, 2, [4, 5]))
    expect(withRejected(state(3, 2, [4]), 4)).toEqual(state(3, 2, [4]))
  })
})
