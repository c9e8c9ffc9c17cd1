import { describe, it, expect } from 'vitest'
import { ROUND, advertisedKeys, check, client, consistencySignature, input, mask, newRound, setUp, toUnmask, unmask, wire, withLegacyServer, type Round } from './harness.ts'
import { ringSum } from '../../../aggregation/ring.ts'
import { createMaskingClient } from '../../../aggregation/secagg/client.ts'
import { restoreMaskingServer, type MaskingServerSnapshot } from '../../../aggregation/secagg/server.ts'
import type { AdvertiseMessage, ConsistencyMessage, InboxMessage, RosterMessage, SharesMessage, SkippedMessage, UnmaskMessage, UnmaskRequestMessage } from '../../../aggregation/secagg/messages.ts'
import { advertiseTranscript, graphKey } from '../../../aggregation/secagg/kdf.ts'
import { seededPermutation } from '../../../aggregation/secagg/graph.ts'
import { fromBase64, toBase64 } from '../../../shared/crypto/bytes.ts'
import { bigIntToBytes, bytesToBigInt, inverse, lagrangeBasis, mod, SHARE_BYTES } from '../../../aggregation/secagg/shamir.ts'
import { generateSigningKey, sign, type SigningKeyPair } from '../../../shared/crypto/sign.ts'

const SPARSE = { kind: 'harary' as const, degree: 4, threshold: 3 }
const named = (name: string): ReturnType<typeof expect.objectContaining> => expect.objectContaining({ name })

/** A round at the ConsistencyCheck stage in which `droppedIndex` sent no masked input. */
async function atCheck (droppedIndex = 5): Promise<{ round: Round, survivors: string[] }> {
  const round = newRound(12, SPARSE)
  await setUp(round)
  const survivors = round.ids.filter((_, i) => i !== droppedIndex)
  await mask(round, survivors)
  round.server.closeMasked()
  return { round, survivors }
}

const finishExact = async (round: Round, survivors: string[]): Promise<void> => {
  expect(await round.server.finish()).toEqual(ringSum(survivors.map(id => input(round, id)), round.vectorLength))
}

/**
 * A round of 12 on H(12, 6), t = 4, at its unmask stage, where `u` holds the shares of 5 of its 6
 * neighbours (those of `skipped` do not open) and 2 of those 5 (`dropped`) mask but do not sign:
 * only 3 of the neighbours u holds signed, fewer than t. With dropouts alone, no layout of H(12, 6)
 * leaves a signer that short and still lets the round complete (u's other neighbours lose too
 * many able holders); the skipped edge makes it possible.
 */
async function shortOfSigners (): Promise<{ round: Round, u: string, skipped: string, dropped: string[] }> {
  const round = newRound(12, { kind: 'harary', degree: 6, threshold: 4 })
  const ring = seededPermutation(round.ids, graphKey(round.seed, ROUND))
  const at = (p: number): string => ring[(p + 12) % 12] as string
  const [u, skipped, dropped] = [at(0), at(1), [at(3), at(-3)].sort()]
  for (const id of round.ids) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
  round.server.closeAdvertise()
  expect(round.server.rosterFor(u).neighbours.map(m => m.from)).toEqual([1, -1, 2, -2, 3, -3].map(at).sort())
  for (const id of round.ids) {
    const message = wire(await client(round, id).shareKeys(wire(round.server.rosterFor(id)))) as SharesMessage
    if (id === skipped) {
      const entry = message.shares.find(e => e.to === u) as SharesMessage['shares'][0]
      entry.ciphertext = toBase64(globalThis.crypto.getRandomValues(new Uint8Array(fromBase64(entry.ciphertext).length)))
    }
    round.server.receiveShares(id, message)
  }
  round.server.closeShares()
  for (const id of round.ids) {
    const y = await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id)))
    const report = client(round, id).skipped()
    if (report !== undefined) round.server.receiveSkipped(id, wire(report))
    round.server.receiveMasked(id, y)
  }
  round.server.closeMasked()
  await check(round, round.ids.filter(id => !dropped.includes(id)))
  return { round, u, skipped, dropped }
}

describe('a client refuses requests that would reveal an input', () => {
  it('consistency check: a list without itself, with strangers, unsorted, too few of its neighbours, misaddressed; then signs one list once', async () => {
    const { round, survivors } = await atCheck()
    const u = survivors[0] as string
    const c = client(round, u)
    const honest = round.server.consistencyRequestFor(u)
    const ask = (change: Partial<ConsistencyMessage>): unknown => wire({ ...honest, ...change })
    const t = round.server.parameters?.threshold as number

    expect(() => c.consistencyCheck(ask({ survivors: survivors.filter(id => id !== u) }))).toThrow(/refused, the survivor list leaves out this client/)
    expect(() => c.consistencyCheck(ask({ survivors: [...survivors, 'zz-mallory'] }))).toThrow(/survivor zz-mallory is not in the roster/)
    expect(() => c.consistencyCheck(ask({ survivors: [...survivors].reverse() }))).toThrow(/not sorted and unique/)
    // A list naming u and only t − 1 of the neighbours it masked with.
    const held = round.server.inboxFor(u).shares.map(s => s.from)
    const few = [u, ...held.slice(0, t - 1)].sort()
    expect(() => c.consistencyCheck(ask({ survivors: few }))).toThrow(/refused, only 2 of the neighbours this client masked with survive, fewer than the threshold 3/)
    expect(() => c.consistencyCheck(ask({ to: survivors[1] as string }))).toThrow(/addressed to/)
    expect(() => c.consistencyCheck(ask({ roundId: 'r_ffffffffffffffff' }))).toThrow(/for round r_ffffffffffffffff/)
    expect(() => c.consistencyCheck({ ...honest, survivors: 'all' })).toThrow(named('InvalidInputError'))
    await expect(c.unmask(wire({ type: 'secagg/unmask-request', roundId: ROUND, to: u, signatures: [] }))).rejects.toThrow(/at stage check, not unmask/)
    expect(c.stage).toBe('check')

    await round.server.receiveSignature(u, wire(c.consistencyCheck(wire(honest))))
    // Signed once: a second list, even the same one, is refused.
    expect(() => c.consistencyCheck(wire(honest))).toThrow(/stage unmask, not check/)
    await check(round, survivors.slice(1))
    await unmask(round, survivors)
    await finishExact(round, survivors)
  })

  it('unmask request: too few, forged, foreign, off-list and duplicate signatures are refused; the honest request is answered once', async () => {
    // client-004, a neighbour of u, drops: u holds the shares of a client off the survivor list.
    const { round, survivors } = await atCheck(4)
    await check(round, survivors)
    const u = survivors[0] as string
    const c = client(round, u)
    const honest = round.server.unmaskRequestFor(u)
    const t = round.server.parameters?.threshold as number
    const ask = (change: Partial<UnmaskRequestMessage>): unknown => wire({ ...honest, ...change })
    const first = honest.signatures[0] as UnmaskRequestMessage['signatures'][0]

    await expect(c.unmask(ask({ signatures: honest.signatures.slice(0, t - 1) }))).rejects.toThrow(/refused, only 2 neighbours signed the survivor list, fewer than the threshold 3/)
    // A neighbour's signature over another list: the server told it another story.
    const otherList = consistencySignature(round, first.from, survivors.slice(1))
    await expect(c.unmask(ask({ signatures: [{ ...first, signature: otherList }, ...honest.signatures.slice(1)] }))).rejects.toThrow(/refused, the signatures of \[client-\d+\] are not over the survivor list this client signed/)
    // Another round's signature over the same list; and one from an earlier run of this round id (other keys).
    const otherRound = consistencySignature(round, first.from, survivors, { roundId: 'r_ffffffffffffffff' })
    await expect(c.unmask(ask({ signatures: [{ ...first, signature: otherRound }, ...honest.signatures.slice(1)] }))).rejects.toThrow(named('IntegrityError'))
    const earlierRun = consistencySignature(round, first.from, survivors, { keys: advertisedKeys(round, survivors[2] as string) })
    await expect(c.unmask(ask({ signatures: [{ ...first, signature: earlierRun }, ...honest.signatures.slice(1)] }))).rejects.toThrow(/are not over the survivor list this client signed/)
    const stranger = round.ids.find(id => id !== u && !honest.signatures.some(s => s.from === id) && !round.server.rosterFor(u).neighbours.some(n => n.from === id)) as string
    await expect(c.unmask(ask({ signatures: [...honest.signatures, { from: stranger, signature: first.signature }] }))).rejects.toThrow(/who is not a neighbour/)
    // A neighbour that dropped before its masked input, colluding: its real signature over the list
    // cannot stand in for a survivor's (review 50a).
    const dropped = round.ids[4] as string
    expect(round.server.inboxFor(u).shares.map(s => s.from)).toContain(dropped)
    const offList = { from: dropped, signature: consistencySignature(round, dropped, survivors) }
    await expect(c.unmask(ask({ signatures: [offList, ...honest.signatures.slice(1)] }))).rejects.toThrow(`unmask request: refused, ${dropped} signed but is not on the survivor list this client signed`)
    await expect(c.unmask(ask({ signatures: [...honest.signatures, first] }))).rejects.toThrow(/two signatures of/)
    await expect(c.unmask(ask({ to: survivors[1] as string }))).rejects.toThrow(/addressed to/)
    await expect(c.unmask({ ...honest, signatures: 'all' })).rejects.toThrow(named('InvalidInputError'))
    expect(c.stage).toBe('unmask')

    const answer = await c.unmask(wire(honest))
    const held = round.server.inboxFor(u).shares.map(s => s.from).sort()
    expect(answer.selfMaskShares.map(s => s.owner)).toEqual(held.filter(id => survivors.includes(id)))
    expect(answer.keyShares.map(s => s.owner)).toEqual(held.filter(id => !survivors.includes(id)))
    await expect(c.unmask(wire(honest))).rejects.toThrow(/stage done, not unmask/)

    round.server.receiveUnmask(u, wire(answer))
    await unmask(round, survivors.slice(1))
    await finishExact(round, survivors)
  })

  it('unmask request: the signature of a neighbour whose shares did not open is refused, so it cannot make up the t (review 50a)', async () => {
    const { round, u, skipped, dropped } = await shortOfSigners()
    const c = client(round, u)
    const held = round.server.rosterFor(u).neighbours.map(m => m.from).filter(v => v !== skipped && !dropped.includes(v))
    const ask = (from: string[]): unknown => wire({ type: 'secagg/unmask-request', roundId: ROUND, to: u, signatures: from.map(v => ({ from: v, signature: consistencySignature(round, v, round.ids) })) })
    await expect(c.unmask(ask(held))).rejects.toThrow('unmask request: refused, only 3 neighbours signed the survivor list, fewer than the threshold 4')
    // skipped signed the same list, honestly; but u never confirmed its roster keys (no share of
    // it opened), so a server could have swapped them for an earlier run's.
    await expect(c.unmask(ask([...held, skipped]))).rejects.toThrow(`unmask request: refused, a signature of ${skipped}, whose shares this client does not hold`)
    expect(c.stage).toBe('unmask')
  })
})

describe('the server asks to unmask only clients t of whose neighbours signed (review 50a)', () => {
  it('a client that only t − 1 of the neighbours it holds signed for is not asked, and the round is exact without it', async () => {
    const { round, u, dropped } = await shortOfSigners()
    const signers = round.ids.filter(id => !dropped.includes(id))
    // Asked, u would refuse (test above) and the round would wait on its answer.
    expect(round.server.answerers()).toEqual(signers.filter(id => id !== u))
    expect(() => round.server.unmaskRequestFor(u)).toThrow(`unmask request for ${u}: ${u} is not an answerer (it sent no signature, or fewer than t of its neighbours did)`)
    await unmask(round, round.server.answerers())
    await finishExact(round, round.ids)
  })
})

describe('the server rejects bad messages without harm to the round', () => {
  it('advertise: replay, impostor, stranger, forged signature, other round, small-order key, malformed', async () => {
    const round = newRound(12, SPARSE)
    const [a, b] = round.ids as [string, string]
    const advertise = await client(round, a).advertise()
    await round.server.receiveAdvertise(a, wire(advertise))
    await expect(round.server.receiveAdvertise(a, wire(advertise))).rejects.toThrow(/advertise from client-000: already received/)
    await expect(round.server.receiveAdvertise(b, wire(advertise))).rejects.toThrow(/sent by client-001 but claims to be from client-000/)

    const mallory = generateSigningKey()
    const forge = (from: string, key: SigningKeyPair, roundId = ROUND, sKey = fromBase64(advertise.sPublicKey)): AdvertiseMessage => {
      const c = fromBase64(advertise.cPublicKey)
      return { type: 'secagg/advertise', roundId, from, cPublicKey: toBase64(c), sPublicKey: toBase64(sKey), signature: toBase64(sign(advertiseTranscript(roundId, from, c, sKey), key.secretKey)) }
    }
    await expect(round.server.receiveAdvertise('mallory', wire(forge('mallory', mallory)))).rejects.toThrow(/mallory is not a client of round/)
    await expect(round.server.receiveAdvertise(b, wire(forge(b, mallory)))).rejects.toThrow(named('IntegrityError'))
    const bKey = round.identities.get(b) as SigningKeyPair
    await expect(round.server.receiveAdvertise(b, wire(forge(b, bKey, 'r_ffffffffffffffff')))).rejects.toThrow(/for round r_ffffffffffffffff, this is round/)
    const smallOrder = new Uint8Array(32)
    smallOrder[0] = 1
    await expect(round.server.receiveAdvertise(b, wire(forge(b, bKey, ROUND, smallOrder)))).rejects.toThrow(/sPublicKey: X25519 agreement failed/)
    await expect(round.server.receiveAdvertise(b, { ...advertise, from: b, signature: 'short' })).rejects.toThrow(/signature: base64 of 64 bytes/)
    expect(() => round.server.receiveShares(a, {})).toThrow(/round r_00000000000000aa is at stage advertise, not share/)

    for (const id of round.ids.slice(1)) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    expect(round.server.roster()).toEqual(round.ids)
    await expect(round.server.receiveAdvertise(b, wire(advertise))).rejects.toThrow(/at stage share, not advertise/)
  })

  it('shares, masked inputs and unmask messages: wrong stage, duplicate, wrong neighbours, wrong length, wrong owners', async () => {
    const round = newRound(12, SPARSE)
    for (const id of round.ids) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    const shares = new Map<string, SharesMessage>()
    for (const id of round.ids) shares.set(id, await client(round, id).shareKeys(wire(round.server.rosterFor(id))))
    const [a, b] = round.ids as [string, string]
    const sa = shares.get(a) as SharesMessage
    const change = (m: SharesMessage, c: Partial<SharesMessage>): unknown => wire({ ...m, ...c })

    expect(() => round.server.receiveShares(a, change(sa, { shares: sa.shares.slice(1) }))).toThrow(/3 share pairs, client-000 has 4 neighbours/)
    const stranger = round.ids.find(id => id !== a && !sa.shares.some(s => s.to === id)) as string
    expect(() => round.server.receiveShares(a, change(sa, { shares: [...sa.shares.slice(1), { ...(sa.shares[0] as SharesMessage['shares'][0]), to: stranger }] }))).toThrow(/is not a neighbour of client-000/)
    // A live client's shares carry both digests, of the right length.
    expect(() => round.server.receiveShares(a, change(sa, { shares: sa.shares.map(({ keyDigest: _, ...e }) => e) as SharesMessage['shares'] }))).toThrow(/shares\.0\.keyDigest/)
    expect(() => round.server.receiveShares(a, change(sa, { shares: sa.shares.map(e => ({ ...e, selfMaskDigest: 'AAAA' })) }))).toThrow(/selfMaskDigest.*base64 of 32 bytes/)
    expect(() => round.server.receiveShares(a, change(sa, { shares: [...sa.shares.slice(1), sa.shares[1] as SharesMessage['shares'][0]] }))).toThrow(/two share pairs for/)
    expect(() => round.server.receiveShares(a, change(sa, { roundId: 'r_ffffffffffffffff' }))).toThrow(/for round r_ffffffffffffffff/)
    expect(() => round.server.receiveShares(b, wire(sa))).toThrow(/claims to be from client-000/)
    expect(() => round.server.receiveMasked(a, new Uint32Array(round.vectorLength))).toThrow(/at stage share, not mask/)
    for (const [id, m] of shares) round.server.receiveShares(id, wire(m))
    expect(() => round.server.receiveShares(a, wire(sa))).toThrow(/already received/)
    round.server.closeShares()

    const ya = await client(round, a).maskedInput(input(round, a), wire(round.server.inboxFor(a)))
    expect(() => round.server.receiveMasked(a, ya.subarray(1))).toThrow(/expected a Uint32Array of 64 words, got 63 words/)
    expect(() => round.server.receiveMasked(a, new Float32Array(64) as unknown as Uint32Array)).toThrow(/expected a Uint32Array/)
    expect(() => round.server.receiveMasked('mallory', ya)).toThrow(/mallory did not share keys/)
    round.server.receiveMasked(a, ya)
    expect(() => round.server.receiveMasked(a, ya)).toThrow(/masked input from client-000: already received/)
    const survivors = round.ids.filter(id => id !== round.ids[7])
    await mask(round, survivors.slice(1))
    round.server.closeMasked()
    expect(() => round.server.receiveMasked(round.ids[7] as string, new Uint32Array(64))).toThrow(/at stage check, not mask/)
    expect(() => round.server.consistencyRequestFor(round.ids[7] as string)).toThrow(/sent no masked input/)
    expect(() => round.server.unmaskRequestFor(a)).toThrow(/at stage check, not unmask/)

    // Signatures: malformed, forged, over another list, impostor, non-survivor, duplicate.
    const signed = client(round, a).consistencyCheck(wire(round.server.consistencyRequestFor(a)))
    await expect(round.server.receiveSignature(a, { ...signed, signature: 'short' })).rejects.toThrow(/signature: base64 of 64 bytes/)
    const forged = consistencySignature(round, a, survivors, { by: generateSigningKey() })
    await expect(round.server.receiveSignature(a, wire({ ...signed, signature: forged }))).rejects.toThrow(/does not verify over this round's survivor list/)
    const otherList = consistencySignature(round, a, round.ids)
    await expect(round.server.receiveSignature(a, wire({ ...signed, signature: otherList }))).rejects.toThrow(named('IntegrityError'))
    await expect(round.server.receiveSignature(b, wire(signed))).rejects.toThrow(/claims to be from client-000/)
    await expect(round.server.receiveSignature(round.ids[7] as string, wire({ ...signed, from: round.ids[7] }))).rejects.toThrow(/sent no masked input/)
    await round.server.receiveSignature(a, wire(signed))
    await expect(round.server.receiveSignature(a, wire(signed))).rejects.toThrow(/signature from client-000: already received/)
    await check(round, survivors.slice(1))
    await expect(round.server.receiveSignature(b, wire(signed))).rejects.toThrow(/at stage unmask, not check/)

    const ua = await client(round, a).unmask(wire(round.server.unmaskRequestFor(a)))
    const wrongOwners: UnmaskMessage = { ...ua, selfMaskShares: ua.selfMaskShares.slice(1) }
    expect(() => round.server.receiveUnmask(a, wire(wrongOwners))).toThrow(/selfMaskShares are for/)
    const outOfField: UnmaskMessage = { ...ua, selfMaskShares: ua.selfMaskShares.map((s, i) => i === 0 ? { ...s, share: toBase64(new Uint8Array(66).fill(0xff)) } : s) }
    expect(() => round.server.receiveUnmask(a, wire(outOfField))).toThrow(/not below the field prime/)
    expect(() => round.server.receiveUnmask(b, wire(ua))).toThrow(/claims to be from client-000/)
    round.server.receiveUnmask(a, wire(ua))
    expect(() => round.server.receiveUnmask(a, wire(ua))).toThrow(/unmask from client-000: already received/)
    await unmask(round, survivors.slice(1))
    await finishExact(round, survivors)
  })
})

describe('a client whose neighbour sends it shares that do not open (review 47a)', () => {
  /** A complete round of `n` in which client 0 seals garbage for `victims`: right length, wrong key. */
  async function withBadShares (n: number, victims: (round: Round) => string[]): Promise<{ round: Round, victims: string[] }> {
    const round = newRound(n, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 }, { seed: 5, vectorLength: 16 })
    for (const id of round.ids) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    const chosen = victims(round)
    for (const id of round.ids) {
      const message = wire(await client(round, id).shareKeys(wire(round.server.rosterFor(id)))) as SharesMessage
      if (id === round.ids[0]) {
        for (const entry of message.shares) {
          if (chosen.includes(entry.to)) entry.ciphertext = toBase64(globalThis.crypto.getRandomValues(new Uint8Array(fromBase64(entry.ciphertext).length)))
        }
      }
      round.server.receiveShares(id, message)
    }
    round.server.closeShares()
    return { round, victims: chosen }
  }

  /** Round 2 as the runtime runs it: the report of what did not open, then the masked input. */
  async function maskReporting (round: Round): Promise<void> {
    for (const id of round.ids) {
      const y = await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id)))
      const report = client(round, id).skipped()
      if (report !== undefined) round.server.receiveSkipped(id, wire(report))
      round.server.receiveMasked(id, y)
    }
  }

  it('skips that edge only: the victim stays in, and the sum over everyone is exact', async () => {
    // Before, the victim refused its whole inbox and the round published without it (11 of 12).
    const { round, victims } = await withBadShares(12, r => [r.ids[5] as string])
    await maskReporting(round)
    expect(client(round, victims[0] as string).skipped()).toMatchObject({ type: 'secagg/skipped', from: victims[0], peers: [{ peer: round.ids[0] }] })
    round.server.closeMasked()
    expect(round.server.survivors()).toEqual(round.ids)
    await check(round, round.ids)
    await unmask(round, round.server.answerers())
    await finishExact(round, round.ids)
  })

  it('skips them for every victim at once, also when the one that sent them drops out', async () => {
    const { round } = await withBadShares(12, r => r.ids.slice(1, 5))
    const survivors = round.ids.slice(1)
    for (const id of round.ids) {
      const y = await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id)))
      const report = client(round, id).skipped()
      if (report !== undefined) round.server.receiveSkipped(id, wire(report))
      if (id !== round.ids[0]) round.server.receiveMasked(id, y)
    }
    round.server.closeMasked()
    await check(round, survivors)
    await unmask(round, round.server.answerers())
    await finishExact(round, survivors)
  })

  it('keeps the reports in its snapshot: restored after a restart, with the stored uploads added back, the sum is exact (review 47e)', async () => {
    const { round } = await withBadShares(12, r => [r.ids[5] as string])
    // The uploads stored as they come; the snapshot the coordinator saves once a report came
    // (rounds.ts, on masking.ts's 'persist'), before the reporter's upload is stored.
    const uploads = new Map<string, Uint32Array>()
    let saved: MaskingServerSnapshot | undefined
    for (const id of round.ids) {
      const y = await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id)))
      const report = client(round, id).skipped()
      if (report !== undefined) {
        round.server.receiveSkipped(id, wire(report))
        saved = round.server.snapshot()
      }
      uploads.set(id, y)
    }
    if (saved === undefined) throw new Error('the victim sent no report')
    const restored = await restoreMaskingServer({ state: JSON.parse(JSON.stringify(saved.state)), maskedSum: saved.maskedSum })
    for (const [id, y] of uploads) restored.receiveMasked(id, y)
    restored.closeMasked()
    for (const id of restored.survivors()) await restored.receiveSignature(id, wire(client(round, id).consistencyCheck(wire(restored.consistencyRequestFor(id)))))
    restored.closeConsistency()
    for (const id of restored.answerers()) restored.receiveUnmask(id, wire(await client(round, id).unmask(wire(restored.unmaskRequestFor(id)))))
    expect(await restored.finish()).toEqual(ringSum(round.ids.map(id => input(round, id)), round.vectorLength))
  })

  it('refuses a report naming a stranger, twice, or another sender, and keeps none of it; takes the same report again as a no-op', async () => {
    const { round, victims } = await withBadShares(6, r => [r.ids[1] as string])
    const victim = victims[0] as string
    await client(round, victim).maskedInput(input(round, victim), wire(round.server.inboxFor(victim)))
    const report = client(round, victim).skipped() as SkippedMessage
    expect(() => round.server.receiveSkipped(round.ids[2] as string, wire(report))).toThrow(/claims to be from/)
    expect(() => round.server.receiveSkipped(victim, wire({ ...report, peers: [...report.peers, ...report.peers] }))).toThrow(/appears twice/)
    expect(() => round.server.receiveSkipped(victim, wire({ ...report, peers: [{ ...report.peers[0], peer: 'client-zz' }] }))).toThrow(/is not a neighbour/)
    expect(() => round.server.receiveSkipped(victim, wire({ ...report, peers: [{ ...report.peers[0], seed: 'short' }] }))).toThrow(/seed/)
    expect(round.server.receiveSkipped(victim, wire(report))).toBe(true)
    // The same report again, as a runtime sends it with an upload a stopped coordinator lost,
    // changes nothing and says so (the coordinator saves nothing for it: review 53c); another
    // one is refused.
    const kept = JSON.stringify(round.server.snapshot().state)
    expect(round.server.receiveSkipped(victim, wire(report))).toBe(false)
    expect(JSON.stringify(round.server.snapshot().state)).toBe(kept)
    const other = { ...report, peers: [{ ...report.peers[0], seed: toBase64(new Uint8Array(32).fill(7)) }] }
    expect(() => round.server.receiveSkipped(victim, wire(other))).toThrow(/already received/)
    // After its masked input: refused (a restart between the two would lose it, and the sum with it; review 47f).
    const late = await withBadShares(6, r => [r.ids[1] as string])
    const y = await client(late.round, victim).maskedInput(input(late.round, victim), wire(late.round.server.inboxFor(victim)))
    late.round.server.receiveMasked(victim, y)
    expect(() => late.round.server.receiveSkipped(victim, wire(client(late.round, victim).skipped()))).toThrow(/after its masked input; a report comes before it/)
  })
})

describe('a client wiped when its round ends early (review 47a)', () => {
  it('takes no further step: its secrets are gone', async () => {
    const round = newRound(12, SPARSE)
    await setUp(round)
    const u = round.ids[0] as string
    client(round, u).wipe()
    expect(client(round, u).stage).toBe('done')
    await expect(client(round, u).maskedInput(input(round, u), wire(round.server.inboxFor(u)))).rejects.toThrow(/at stage done, not mask/)
  })
})

describe('an answerer that sends wrong unmask shares (review 47a)', () => {
  /**
   * A complete round of 10 (t = 5) at the unmask stage; `tamper` edits answerer 0's share of
   * `victim`'s self-mask seed. The answerers' messages, tampered or not, are given to the server.
   */
  async function answered (tamper: (y: bigint, round: Round, victim: string) => bigint, answering?: (round: Round) => string[], legacy = false): Promise<{ round: Round }> {
    let round = newRound(10, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 }, { seed: 3, vectorLength: 16 })
    await toUnmask(round)
    if (legacy) round = await withLegacyServer(round)
    const victim = round.ids[5] as string
    const bad = round.ids[0] as string
    for (const id of answering?.(round) ?? round.ids) {
      const message = wire(await client(round, id).unmask(wire(round.server.unmaskRequestFor(id)))) as UnmaskMessage
      if (id === bad) {
        const share = message.selfMaskShares.find(e => e.owner === victim) as { share: string }
        share.share = toBase64(bigIntToBytes(mod(tamper(bytesToBigInt(fromBase64(share.share)), round, victim)), SHARE_BYTES))
      }
      round.server.receiveUnmask(id, message)
    }
    return { round }
  }
  /** +λ⁻¹, λ the Lagrange weight of x = 1 among the t lowest holders of the victim's shares: the rebuilt seed moves by exactly 1, a 32-byte value still. */
  const crafted = (y: bigint, round: Round, victim: string): bigint => {
    const t = round.server.parameters?.threshold as number
    const holders = round.ids.map((id, i) => ({ id, x: i + 1 })).filter(h => h.id !== victim).slice(0, t)
    return y + inverse(lagrangeBasis(holders.map(h => h.x)).atZero[0] as bigint)
  }
  const exact = (round: Round): Uint32Array => ringSum(round.ids.map(id => input(round, id)), round.vectorLength)

  it('a crafted share (it gave a wrong sum silently) or a garbage one is left out on arrival, naming who sent it and whose it was; the honest shares give the exact sum', async () => {
    for (const tamper of [crafted, () => 12345n]) {
      const { round } = await answered(tamper)
      expect(round.server.refusedShares()).toEqual([{ from: 'client-000', owner: 'client-005', secret: 'self-mask seed' }])
      expect(await round.server.finish()).toEqual(exact(round))
    }
  })

  it('with exactly t shares of each secret, one of them wrong: refused, so the round waits for another answerer and, without one, fails saying how many shares came; never a wrong sum', async () => {
    // Complete graph of 10, t = 5: six answerers give each of them, and the victim, exactly 5 shares.
    const t = 5
    const { round } = await answered(crafted, round => round.ids.slice(0, t + 1))
    expect(round.server.refusedShares()).toEqual([{ from: 'client-000', owner: 'client-005', secret: 'self-mask seed' }])
    expect(round.server.ready()).toBe(false)
    // One more honest answerer makes up the t.
    const late = round.ids[t + 1] as string
    round.server.receiveUnmask(late, wire(await client(round, late).unmask(wire(round.server.unmaskRequestFor(late)))))
    expect(round.server.ready()).toBe(true)
    expect(await round.server.finish()).toEqual(exact(round))

    const alone = await answered(crafted, round => round.ids.slice(0, t + 1))
    // client-000's other shares count: only client-005's seed is short, and the failure says why.
    await expect(alone.round.server.finish()).rejects.toThrow("failed: 4 shares of survivor client-005's self-mask seed arrived, the threshold is 5 (1 more left out, not the ones client-005 dealt by its digests: from client-000; a lying answerer, or an owner whose digests lie)")
  })

  it('two colluding answerers that fit their shares to a fake polynomial are both refused (review 47e: leaving one share out passed their secret)', async () => {
    // Everyone answers; the colluders put their shares of the victim's seed on g = f + Π(x − the
    // x's of t − 1 honest holders), which t + 1 shares (theirs and those t − 1) agree with.
    const round = newRound(10, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 }, { seed: 3, vectorLength: 16 })
    await toUnmask(round)
    const t = round.server.parameters?.threshold as number
    const victim = round.ids[5] as string
    const colluders = [round.ids[0], round.ids[1]] as string[]
    const honest = round.ids.filter(id => !colluders.includes(id))
    const messages = new Map<string, UnmaskMessage>()
    for (const id of [...colluders, ...honest]) messages.set(id, wire(await client(round, id).unmask(wire(round.server.unmaskRequestFor(id)))) as UnmaskMessage)
    // Shares on the victim's polynomial f at the honest x's; g agrees with f on all honest x's but the last one.
    const x = (id: string): bigint => BigInt(round.ids.indexOf(id) + 1)
    const kept = honest.filter(id => id !== victim).slice(0, t - 1).map(x)
    const offset = (at: bigint): bigint => kept.reduce((acc, k) => mod(acc * (at - k)), 1n)
    for (const id of colluders) {
      const share = (messages.get(id) as UnmaskMessage).selfMaskShares.find(e => e.owner === victim) as { share: string }
      share.share = toBase64(bigIntToBytes(mod(bytesToBigInt(fromBase64(share.share)) + offset(x(id))), SHARE_BYTES))
    }
    for (const id of [...colluders, ...honest]) round.server.receiveUnmask(id, messages.get(id))
    expect(round.server.refusedShares()).toEqual(colluders.map(from => ({ from, owner: victim, secret: 'self-mask seed' })))
    // The survivors' sum, from honest shares alone: the colluders' inputs are in it, their shares are not.
    expect(await round.server.finish()).toEqual(exact(round))
  })

  it('an owner whose digest lies about one holder costs only its own secret that share: the holder\'s other shares count, the sum is exact (review 52b)', async () => {
    const round = newRound(10, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 }, { seed: 3, vectorLength: 16 })
    const [liar, framed] = [round.ids[4], round.ids[7]] as [string, string]
    for (const id of round.ids) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    for (const id of round.ids) {
      const message = await client(round, id).shareKeys(wire(round.server.rosterFor(id))) as SharesMessage
      const shares = id !== liar ? message.shares : message.shares.map(e => e.to === framed ? { ...e, selfMaskDigest: toBase64(new Uint8Array(32).fill(7)) } : e)
      round.server.receiveShares(id, wire({ ...message, shares }))
    }
    round.server.closeShares()
    await mask(round, round.ids)
    round.server.closeMasked()
    await check(round, round.ids)
    await unmask(round, round.ids)
    expect(round.server.refusedShares()).toEqual([{ from: framed, owner: liar, secret: 'self-mask seed' }])
    expect(round.server.ready()).toBe(true)
    expect(await round.server.finish()).toEqual(exact(round))
  })

  it('a round restored from a snapshot made before share digests is saved at that version still, and restores again (review 52b)', async () => {
    const round = await withLegacyServer(await (async () => { const r = newRound(10, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 }, { seed: 3, vectorLength: 16 }); await toUnmask(r); return r })())
    const saved = round.server.snapshot()
    expect(saved.state.version).toBe(3)
    const again = await restoreMaskingServer(saved)
    expect(again.stage).toBe('unmask')
    // A live round's are version 4, and a version-4 snapshot without digests does not restore.
    const live = newRound(10, { kind: 'complete', adversarialRate: 0.05, dropoutRate: 0.3 }, { seed: 3, vectorLength: 16 })
    await toUnmask(live)
    const { state, maskedSum } = live.server.snapshot()
    expect(state.version).toBe(4)
    const stripped = { ...state, shares: state.shares.map(m => ({ ...m, shares: m.shares.map(({ selfMaskDigest: _s, keyDigest: _k, ...e }) => e) })) }
    await expect(restoreMaskingServer({ state: stripped as never, maskedSum })).rejects.toThrow(/server snapshot|shares from .*selfMaskDigest/)
  })

  it('in a round restored from a snapshot made before share digests, a wrong share still fails the round on the polynomial check, never a wrong sum', async () => {
    for (const tamper of [crafted, () => 12345n]) {
      const { round } = await answered(tamper, undefined, true)
      expect(round.server.refusedShares()).toEqual([])
      await expect(round.server.finish()).rejects.toThrow(`round ${ROUND} failed: the shares of survivor client-005's self-mask seed are inconsistent: some answerer sent a wrong share`)
    }
  })
})

describe('a client rejects bad server messages', () => {
  it('roster: other round, misaddressed, unsorted, missing self, wrong neighbours, forged or foreign keys; inbox: misaddressed, tampered, strangers, too few', async () => {
    const round = newRound(12, SPARSE)
    const [a, b] = round.ids as [string, string]
    const c = client(round, a)
    await expect(c.shareKeys({})).rejects.toThrow(/at stage advertise, not share/)
    for (const id of round.ids) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
    round.server.closeAdvertise()
    const roster = round.server.rosterFor(a)
    const edit = (change: Partial<RosterMessage>): unknown => wire({ ...roster, ...change })

    await expect(c.shareKeys(edit({ roundId: 'r_ffffffffffffffff' }))).rejects.toThrow(/roster: for round r_ffffffffffffffff/)
    await expect(c.shareKeys(edit({ to: b }))).rejects.toThrow(/roster: addressed to client-001/)
    await expect(c.shareKeys(edit({ clients: [...roster.clients].reverse() }))).rejects.toThrow(/not sorted and unique/)
    await expect(c.shareKeys(edit({ clients: roster.clients.filter(id => id !== a) }))).rejects.toThrow(/this client \(client-000\) is not in it/)
    // Another client's neighbours: the layout the roster implies does not match the keys sent.
    await expect(c.shareKeys(edit({ neighbours: round.server.rosterFor(b).neighbours }))).rejects.toThrow(/carries keys of/)
    const first = roster.neighbours[0] as AdvertiseMessage
    await expect(c.shareKeys(edit({ neighbours: [{ ...first, cPublicKey: first.sPublicKey }, ...roster.neighbours.slice(1)] }))).rejects.toThrow(/signature of client-\d+ does not verify/)
    // A genuine advertise by the same neighbour identity, but from another round's session.
    const other = createMaskingClient({ roundId: 'r_ffffffffffffffff', id: first.from, identity: round.identities.get(first.from) as SigningKeyPair, identityKeyOf: () => undefined, vectorLength: 64, graph: SPARSE, seed: round.seed })
    await expect(c.shareKeys(edit({ neighbours: [{ ...(await other.advertise()), roundId: ROUND }, ...roster.neighbours.slice(1)] }))).rejects.toThrow(/does not verify/)
    expect(c.stage).toBe('share')

    // A roster of the victim and two colluders (real keys, a consistent layout) would set k and t
    // to 2: a client that knows the round's minimum refuses it.
    const guarded = createMaskingClient({ roundId: ROUND, id: a, identity: round.identities.get(a) as SigningKeyPair, identityKeyOf: v => round.identities.get(v)?.publicKey, vectorLength: 64, graph: SPARSE, seed: round.seed, minRoster: 6 })
    await guarded.advertise()
    await expect(guarded.shareKeys(edit({ clients: [a, b, round.ids[2] as string] }))).rejects.toThrow(/roster: names 3 clients, fewer than the 6 this client shares keys with at least/)
    expect(() => createMaskingClient({ roundId: ROUND, id: a, identity: round.identities.get(a) as SigningKeyPair, identityKeyOf: () => undefined, vectorLength: 64, graph: SPARSE, seed: round.seed, minRoster: 1 })).toThrow(/minRoster/)

    for (const id of round.ids) round.server.receiveShares(id, wire(await client(round, id).shareKeys(wire(round.server.rosterFor(id)))))
    round.server.closeShares()
    const inbox = round.server.inboxFor(a)
    const change = (c: Partial<InboxMessage>): unknown => wire({ ...inbox, ...c })
    const x = input(round, a)
    await expect(c.maskedInput(x, change({ to: b }))).rejects.toThrow(/addressed to client-001/)
    // Entries that do not open are skipped (review 47a), but past k − t of them this client could
    // not mask with t: refused, naming them (one alone: tests below).
    const tampered = (entry: InboxMessage['shares'][0]): InboxMessage['shares'][0] => {
      const blob = fromBase64(entry.ciphertext)
      blob[40] = (blob[40] as number) ^ 1
      return { ...entry, ciphertext: toBase64(blob) }
    }
    const [e0, e1] = inbox.shares as [InboxMessage['shares'][0], InboxMessage['shares'][0]]
    await expect(c.maskedInput(x, change({ shares: [tampered(e0), tampered(e1), ...inbox.shares.slice(2)] }))).rejects.toThrow(`inbox: the shares of ${e0.from}, ${e1.from} do not authenticate, and the 2 that do are fewer than the threshold 3`)
    const stranger = round.ids.find(id => id !== a && !inbox.shares.some(s => s.from === id)) as string
    await expect(c.maskedInput(x, change({ shares: [...inbox.shares, { from: stranger, ciphertext: inbox.shares[0]?.ciphertext as string }] }))).rejects.toThrow(/who is not a neighbour/)
    await expect(c.maskedInput(x, change({ shares: [...inbox.shares, inbox.shares[0] as InboxMessage['shares'][0]] }))).rejects.toThrow(/appear twice/)
    await expect(c.maskedInput(x, change({ shares: inbox.shares.slice(0, 2) }))).rejects.toThrow(named('UnavailableError'))
    await expect(c.maskedInput(x.subarray(1), wire(inbox))).rejects.toThrow(/expected a Uint32Array of 64 words/)
    await expect(c.unmask({})).rejects.toThrow(/at stage mask, not unmask/)
    expect(() => c.consistencyCheck({})).toThrow(/at stage mask, not check/)

    // None of that changed anything: the round still completes exactly.
    await mask(round, round.ids)
    round.server.closeMasked()
    await check(round, round.ids)
    await unmask(round, round.ids)
    await finishExact(round, round.ids)
  })

  it('a client cannot be driven into two interleaved steps', async () => {
    const round = newRound(6, { kind: 'complete' })
    const c = client(round, round.ids[0] as string)
    const first = c.advertise()
    await expect(c.advertise()).rejects.toThrow(/still busy/)
    await first
    expect(c.stage).toBe('share')
  })
})
