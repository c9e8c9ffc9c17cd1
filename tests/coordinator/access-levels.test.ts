/**
 * Which block access levels a token's data keys cover (coordinator/http/auth.ts `mayRead`, the
 * keys route's only filter): its role's, and the levels it was given; and how an ingest decides
 * each unit's level (coordinator/ingest/access-levels.ts) and a round keeps it (`plansOf`).
 * tests/e2e/access-levels.test.ts runs them through a real coordinator and runtimes.
 */
import { describe, expect, it } from 'vitest'
import { mayRead } from '../../coordinator/http/auth.ts'
import { DEFAULT_ACCESS_LEVEL, ROLES } from '../../coordinator/constants.ts'
import { unitLevels } from '../../coordinator/ingest/access-levels.ts'
import { plansOf } from '../../coordinator/rounds/base-model.ts'
import { accessPairs, accessQuery } from '../../shared/client/access-pairs.ts'
import type { Manifest } from '../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../shared/model/types.ts'

const caller = (role: string, levels: string[] = []): Parameters<typeof mayRead>[0] => ({ role, grants: ROLES[role] as (typeof ROLES)[string], models: null, levels })

describe('mayRead', () => {
  it('gives an edge token the default level only, and admin and publisher tokens every level', () => {
    expect(mayRead(caller('edge'), DEFAULT_ACCESS_LEVEL)).toBe(true)
    for (const level of ['premium', '*', 'Default', '']) expect(mayRead(caller('edge'), level)).toBe(false)
    for (const role of ['admin', 'publisher']) {
      for (const level of [DEFAULT_ACCESS_LEVEL, 'premium']) expect(mayRead(caller(role), level)).toBe(true)
    }
  })

  it('gives an edge token the levels it was given too, and no other', () => {
    const given = caller('edge', ['premium'])
    expect([DEFAULT_ACCESS_LEVEL, 'premium', 'staff'].map(level => mayRead(given, level))).toEqual([true, true, false])
  })
})

describe('unit levels', () => {
  const tensors: TensorInfo[] = ['hidden', 'head'].map(layer => ({ name: `${layer}/kernel`, dtype: 'float32', shape: [4], byteLength: 16, layer }))
  const manifestWith = (levels: string[]): Manifest => ({
    tensors,
    blocks: levels.map((access, i) => ({ unit: tensors[i]?.layer, access, parts: [{ tensor: i, offset: 0, length: 16 }], plaintextLength: 16 }))
  }) as unknown as Manifest

  it('takes the levels given over the previous version\'s, and the default for the rest', () => {
    expect(Object.fromEntries(unitLevels(tensors, undefined, undefined))).toEqual({ hidden: 'default', head: 'default' })
    expect(Object.fromEntries(unitLevels(tensors, undefined, manifestWith(['staff', 'premium'])))).toEqual({ hidden: 'staff', head: 'premium' })
    expect(Object.fromEntries(unitLevels(tensors, { head: 'default' }, manifestWith(['staff', 'premium'])))).toEqual({ hidden: 'staff', head: 'default' })
  })

  it('is kept by the plans a round publishes with', () => {
    expect(plansOf(manifestWith(['staff', 'premium'])).map(p => p.access)).toEqual(['staff', 'premium'])
  })
})

describe('UNIT=LEVEL pairs', () => {
  it('split at the last =, so a unit name may hold one; a prefix ends in *', () => {
    expect(accessPairs(['a=b=premium', 'block_*=staff'])).toEqual({ 'a=b': 'premium', 'block_*': 'staff' })
  })

  it('refuse a query too long to send, naming the way out', () => {
    const many = Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`encoder.layers.${i}.attention`, 'premium']))
    expect(() => accessQuery(many)).toThrow(/^access: 600 units make a request of \d+ characters, at most 12288: name them by prefix \(block_\*=premium\)$/)
  })
})

describe('unit levels by prefix, and new units under raised levels (review 51b)', () => {
  const layers = (names: string[]): TensorInfo[] => names.map(layer => ({ name: `${layer}/kernel`, dtype: 'float32', shape: [4], byteLength: 16, layer }))
  const previous = (levels: Array<[string, string]>): Manifest => ({
    version: 4,
    tensors: layers(levels.map(([unit]) => unit)),
    blocks: levels.map(([unit, access], i) => ({ unit, access, parts: [{ tensor: i, offset: 0, length: 16 }], plaintextLength: 16 }))
  }) as unknown as Manifest

  it('names units by prefix, the longest prefix and then an exact name winning', () => {
    const tensors = layers(['enc_1', 'enc_2', 'enc_head', 'dec'])
    expect(Object.fromEntries(unitLevels(tensors, { 'enc*': 'staff', 'enc_h*': 'premium', enc_2: 'default' }, undefined))).toEqual({ enc_1: 'staff', enc_2: 'default', enc_head: 'premium', dec: 'default' })
    expect(() => unitLevels(tensors, { 'x*': 'staff' }, undefined)).toThrow('access: the model has no unit starting "x"; its units: enc_1, enc_2, enc_head, dec')
  })

  it('refuses new units left unnamed while the latest version seals some above the default', () => {
    // A rebuilt tfjs model numbers its layers anew: dense_2 (premium) comes back as dense_4.
    const rebuilt = layers(['dense_3', 'dense_4'])
    expect(() => unitLevels(rebuilt, undefined, previous([['dense_1', 'default'], ['dense_2', 'premium']]))).toThrow('access: version 4 seals dense_2 at premium, and this model\'s units are not that version\'s (dense_3, dense_4 against dense_1, dense_2): name every unit\'s level (--access \'*=default\', then the raised ones)')
    expect(Object.fromEntries(unitLevels(rebuilt, { '*': 'default', dense_4: 'premium' }, previous([['dense_1', 'default'], ['dense_2', 'premium']])))).toEqual({ dense_3: 'default', dense_4: 'premium' })
    // Nor do old names pass: one layer fewer, and the head is dense_2, which was at the default (review 51c).
    expect(() => unitLevels(layers(['dense_1', 'dense_2']), undefined, previous([['dense_1', 'default'], ['dense_2', 'default'], ['dense_3', 'premium']]))).toThrow(/^access: version 4 seals dense_3 at premium, and this model's units are not that version's/)
    // The same units keep their levels unsaid.
    expect(Object.fromEntries(unitLevels(layers(['dense_1', 'dense_2']), undefined, previous([['dense_1', 'default'], ['dense_2', 'premium']])))).toEqual({ dense_1: 'default', dense_2: 'premium' })
    // Under default levels only, new units simply get the default.
    expect(Object.fromEntries(unitLevels(rebuilt, undefined, previous([['dense_1', 'default']])))).toEqual({ dense_3: 'default', dense_4: 'default' })
  })
})
