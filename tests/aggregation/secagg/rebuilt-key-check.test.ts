/**
 * The server's check on a dropped client's rebuilt mask key (aggregation/secagg/server.ts,
 * finish): the key rebuilt from the answerers' shares must be the one whose public half the
 * client advertised. Shares that interpolate consistently to another key (each moved by the same
 * constant, which every degree-(t−1) polynomial allows) would otherwise remove the wrong pairwise
 * masks, and finish() would hand out a wrong sum as if it were the survivors' (review 39b: the
 * check could be removed with every test green).
 */
import { describe, it, expect } from 'vitest'
import { check, mask, newRound, runRound, setUp, wire, withLegacyServer, client } from './harness.ts'
import { FIELD_PRIME, SHARE_BYTES, bigIntToBytes, bytesToBigInt } from '../../../aggregation/secagg/shamir.ts'
import type { UnmaskMessage } from '../../../aggregation/secagg/messages.ts'
import { fromBase64, toBase64 } from '../../../shared/crypto/bytes.ts'

const SPARSE = { kind: 'harary' as const, degree: 4, threshold: 3 }
/** Added to every share of the dropped client's key: the shares still agree, on key + 2^128. */
const SHIFT = 1n << 128n

const shifted = (share: string): string => toBase64(bigIntToBytes((bytesToBigInt(fromBase64(share)) + SHIFT) % FIELD_PRIME, SHARE_BYTES))

describe('a dropped client\'s mask key rebuilt from shares', () => {
  it('is refused unless it matches the advertised public key: consistent shares of another key fail the round, no wrong sum comes out', async () => {
    const round = newRound(12, SPARSE)
    await setUp(round)
    const dropped = round.ids[5] as string
    const survivors = round.ids.filter(id => id !== dropped)
    await mask(round, survivors)
    round.server.closeMasked()
    await check(round, survivors)
    // Each shifted share is refused on arrival by its digest; a server restored from a snapshot
    // made before the digests has only this check left (as has any server, for an owner that
    // dealt consistent shares of a key other than the one it advertised).
    const legacy = await withLegacyServer(round)
    let moved = 0
    for (const id of round.server.answerers()) {
      const honest = await client(round, id).unmask(wire(round.server.unmaskRequestFor(id))) as UnmaskMessage
      const keyShares = honest.keyShares.map(s => s.owner === dropped ? { ...s, share: shifted(s.share) } : s)
      const holds = keyShares.some(s => s.owner === dropped)
      if (holds) moved++
      const message = wire({ ...honest, keyShares })
      round.server.receiveUnmask(id, message)
      legacy.server.receiveUnmask(id, message)
    }
    expect(moved).toBeGreaterThanOrEqual(3) // at least t shares of the key, all moved alike
    expect(round.server.refusedShares()).toHaveLength(moved)
    expect(round.server.refusedShares().every(r => r.owner === dropped && r.secret === 'mask key')).toBe(true)
    await expect(round.server.finish()).rejects.toThrow(`dropped client ${dropped}'s mask key arrived, the threshold is 3 (${moved} more left out, not the ones ${dropped} dealt by its digests`)
    expect(legacy.server.ready()).toBe(true)
    await expect(legacy.server.finish()).rejects.toThrow(/the rebuilt mask key of dropped client client-005 does not match its advertised public key/)
    expect(legacy.server.stage).toBe('failed')
  })

  it('the same round with the honest shares gives the survivors\' exact sum (the shift is what the check catches)', async () => {
    const round = newRound(12, SPARSE)
    const { sum, expected } = await runRound(round, new Set([round.ids[5] as string]))
    expect(sum).toEqual(expected)
  })
})
