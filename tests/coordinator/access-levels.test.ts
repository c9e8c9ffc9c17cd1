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
