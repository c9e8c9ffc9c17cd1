/**
 * Which block access levels a role's data keys cover (coordinator/http/auth.ts `mayRead`, the
 * keys route's only filter). Ingest seals every block at the default level today, so no route
 * test can show a refusal (http.test's `denied` is always empty): this pins the rule itself.
 */
import { describe, expect, it } from 'vitest'
import { mayRead } from '../../coordinator/http/auth.ts'
import { DEFAULT_ACCESS_LEVEL, ROLES } from '../../coordinator/constants.ts'

const caller = (role: string): Parameters<typeof mayRead>[0] => ({ role, grants: ROLES[role] as (typeof ROLES)[string], models: null })

describe('mayRead', () => {
  it('gives an edge token the default level only, and admin and publisher tokens every level', () => {
    expect(mayRead(caller('edge'), DEFAULT_ACCESS_LEVEL)).toBe(true)
    for (const level of ['premium', '*', 'Default', '']) expect(mayRead(caller('edge'), level)).toBe(false)
    for (const role of ['admin', 'publisher']) {
      for (const level of [DEFAULT_ACCESS_LEVEL, 'premium']) expect(mayRead(caller(role), level)).toBe(true)
    }
  })
})
