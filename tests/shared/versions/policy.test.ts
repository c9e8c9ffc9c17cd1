import { describe, it, expect } from 'vitest'
import { sha256 } from '@noble/hashes/sha2.js'
import { rolloutBucket, targetVersion } from '../../../shared/versions/policy.ts'
import type { Channels } from '../../../shared/ledger/api.ts'

const clients = Array.from({ length: 4000 }, (_, i) => `client-${i}`)
const channels = (canary: Channels['canary']): Channels => ({ model: 'digits', stable: { version: 3 }, canary })

describe('version policy', () => {
  it('rolloutBucket is SHA-256(model \\n version \\n client) read as a fraction of 2^32', () => {
    const digest = sha256(new TextEncoder().encode('digits\n4\nclient-7'))
    const expected = (((digest[0] as number) << 24 >>> 0) + ((digest[1] as number) << 16) + ((digest[2] as number) << 8) + (digest[3] as number)) / 2 ** 32
    expect(rolloutBucket('client-7', 'digits', 4)).toBe(expected)
    expect(rolloutBucket('client-7', 'digits', 5)).not.toBe(expected)
  })

  it('a canary reaches about its rollout fraction, the same clients every time, and a larger rollout keeps everyone already in', () => {
    const inAt = (rollout: number): Set<string> => new Set(clients.filter(c => targetVersion({ channel: 'canary' }, channels({ version: 4, rollout }), c)?.version === 4))
    const tenth = inAt(0.1)
    const half = inAt(0.5)
    // Binomial(4000, p): 5 standard deviations.
    expect(Math.abs(tenth.size - 400)).toBeLessThan(5 * Math.sqrt(4000 * 0.1 * 0.9))
    expect(Math.abs(half.size - 2000)).toBeLessThan(5 * Math.sqrt(4000 * 0.25))
    expect([...tenth].every(c => half.has(c))).toBe(true)
    expect(inAt(0.1)).toEqual(tenth)
    expect(inAt(1).size).toBe(clients.length)
  })

  it('stable clients ignore the canary; a pin wins; versions rolled back from are never chosen', () => {
    const ch = channels({ version: 4, rollout: 1 })
    expect(targetVersion({ channel: 'stable' }, ch, 'a')).toEqual({ version: 3, reason: 'stable' })
    expect(targetVersion({}, ch, 'a')).toEqual({ version: 3, reason: 'stable' })
    expect(targetVersion({ channel: 'canary' }, ch, 'a')).toEqual({ version: 4, reason: 'canary' })
    expect(targetVersion({ pin: 2, channel: 'canary' }, ch, 'a')).toEqual({ version: 2, reason: 'pin' })
    // A pinned version rolled back from is not taken again (review 42a L2).
    expect(targetVersion({ pin: 2 }, ch, 'a', new Set([2]))).toBeUndefined()
    expect(targetVersion({ channel: 'canary' }, ch, 'a', new Set([4]))).toEqual({ version: 3, reason: 'stable' })
    expect(targetVersion({ channel: 'canary' }, ch, 'a', new Set([3, 4]))).toBeUndefined()
    expect(targetVersion({ channel: 'canary' }, channels(null), 'a')).toEqual({ version: 3, reason: 'stable' })
  })
})
