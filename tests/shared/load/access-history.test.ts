import { describe, it, expect } from 'vitest'
import { accessHistory, accessHistorySchema } from '../../../shared/load/access-history.ts'

/** Replays a sequence of loads (one runtime's life) into `h`. */
function replay (h: ReturnType<typeof accessHistory>, loads: string[]): void {
  let previous: string | undefined
  for (const model of loads) {
    h.record(previous, model, `/configs/${model}.json`)
    previous = model
  }
}

describe('access history', () => {
  it('predicts a successor only once it followed more than once', () => {
    const h = accessHistory()
    replay(h, ['detect', 'embed'])
    expect(h.likelyNext('detect')).toEqual([])
    replay(h, ['detect', 'embed'])
    expect(h.likelyNext('detect')).toEqual([{ model: 'embed', config: '/configs/embed.json', share: 1 }])
    // Never the other way round, and never a model after itself.
    expect(h.likelyNext('embed')).toEqual([])
  })

  it('weights decay, so a changed habit takes over; a successor under the share bound is not predicted', () => {
    const h = accessHistory(undefined, { decay: 0.5, minWeight: 1.5, minShare: 0.5 })
    for (let i = 0; i < 4; i++) replay(h, ['a', 'b'])
    expect(h.likelyNext('a').map(n => n.model)).toEqual(['b'])
    // b: 1 + 0.5 + 0.25 + 0.125 = 1.875. Two loads of c after a: b 0.47, c 1.5.
    replay(h, ['a', 'c'])
    replay(h, ['a', 'c'])
    const next = h.likelyNext('a')
    expect(next.map(n => n.model)).toEqual(['c'])
    expect(next[0]?.share).toBeCloseTo(1.5 / (1.5 + 1.875 / 4), 10)
  })

  it('of several successors, each must pass the share bound; most likely first', () => {
    const h = accessHistory(undefined, { decay: 1 })
    replay(h, ['a', 'b', 'a', 'c', 'a', 'b', 'a', 'c', 'a', 'b'])
    expect(h.likelyNext('a').map(n => [n.model, n.share])).toEqual([['b', 0.6]])
    const even = accessHistory(undefined, { decay: 1, minShare: 0.4 })
    replay(even, ['a', 'b', 'a', 'c', 'a', 'b', 'a', 'c', 'a', 'b'])
    expect(even.likelyNext('a').map(n => n.model)).toEqual(['b', 'c'])
  })

  it('is bounded: successors per model and models kept, the least used dropped first', () => {
    const h = accessHistory(undefined, { maxSuccessors: 2, maxModels: 3, decay: 1 })
    replay(h, ['a', 'b', 'a', 'b', 'a', 'c', 'a', 'd'])
    const state = h.toJSON()
    expect(Object.keys(state.models['a']?.next ?? {}).sort()).toEqual(['b', 'd'])
    expect(Object.keys(state.models).length).toBeLessThanOrEqual(3)
    expect(state.models['a']).toBeDefined() // the most used model stays
    for (const entry of Object.values(state.models)) for (const k of Object.keys(entry.next)) expect(state.models[k]).toBeDefined()
  })

  it('at its model cap keeps the model a transition was just recorded from, not only the one it went to', () => {
    // a and x are used more than b ever is: trimming for c must not drop b, or b → c is lost.
    const h = accessHistory(undefined, { maxModels: 3 })
    for (let i = 0; i < 5; i++) { h.record(undefined, 'a'); h.record(undefined, 'x') }
    for (let i = 0; i < 5; i++) { h.record(undefined, 'b'); h.record('b', 'c') }
    expect(h.likelyNext('b').map(n => n.model)).toEqual(['c'])
    const kept = Object.keys(h.toJSON().models)
    expect(kept).toHaveLength(3)
    expect(kept).toEqual(expect.arrayContaining(['b', 'c']))
  })

  it('round-trips through its persisted form, which the schema checks', () => {
    const h = accessHistory()
    replay(h, ['a', 'b', 'a', 'b'])
    const state = accessHistorySchema.parse(JSON.parse(JSON.stringify(h.toJSON())))
    expect(accessHistory(state).likelyNext('a')).toEqual(h.likelyNext('a'))
    expect(accessHistorySchema.safeParse({ version: 1, models: { a: { uses: -1, next: {} } } }).success).toBe(false)
    expect(accessHistorySchema.safeParse({ version: 2, models: {} }).success).toBe(false)
    expect(accessHistorySchema.safeParse({ version: 1, models: { a: { uses: 1, next: { b: 'x' } } } }).success).toBe(false)
  })
})

describe('access history options', () => {
  it('are checked where they are given: a zero cap, a decay of 0 or a share above 1 is refused by name', () => {
    expect(() => accessHistory(undefined, { maxSuccessors: 0 })).toThrow(/maxSuccessors/)
    expect(() => accessHistory(undefined, { maxModels: 0 })).toThrow(/maxModels/)
    expect(() => accessHistory(undefined, { decay: 0 })).toThrow(/decay/)
    expect(() => accessHistory(undefined, { minShare: 1.5 })).toThrow(/minShare/)
    expect(() => accessHistory(undefined, { maxModels: 2.5 })).toThrow(/maxModels/)
  })

  it('with caps of one, keep the newest successor and model instead of looping', () => {
    const h = accessHistory(undefined, { maxSuccessors: 1, maxModels: 1, minWeight: 0 })
    replay(h, ['a', 'b', 'a', 'c'])
    expect(Object.keys(h.toJSON().models)).toEqual(['c'])
  })
})
