/**
 * Paillier randomness made ahead of a round (node-runtime/fl/secure-client.ts) is sized by the
 * offer's vectorLength, the coordinator's word. Found by review 37b: an offer of 2,000,000 values
 * started a precompute nothing stopped; after the round failed and the participant stopped, it
 * kept a core busy (4.6 s of CPU in 5 s idle) and its pool was kept for good. Now a round that
 * ends before using its pool stops it, and the factory's stop() stops what is made ahead.
 * Real 1024-bit keys; the precompute's CPU is read from this process's own usage.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { secureClients } from '../../../node-runtime/fl/secure-client.ts'
import { generateKeyPair } from '../../../aggregation/paillier/keys.ts'
import { packingLayout } from '../../../aggregation/paillier/layout.ts'
import { describeKey } from '../../../aggregation/paillier/key-info.ts'
import type { PaillierKeyInfo } from '../../../aggregation/paillier/schemas.ts'
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { roundOffer } from '../../helpers/round-offer.ts'
import { generateSigningKey } from '../../../shared/crypto/sign.ts'

let info: PaillierKeyInfo
beforeAll(async () => {
  const sk = await generateKeyPair(1024)
  info = await describeKey(sk.publicKey, packingLayout(sk.publicKey, 4), 1)
}, 60_000)

const offer = (vectorLength: number): RoundConfig => roundOffer({ vectorLength, secure: { mode: 'paillier', graph: 'sparse' }, clients: ['a'.repeat(64), 'b'.repeat(64)], paillier: info }, 2)

const deps = (config: RoundConfig): Parameters<ReturnType<typeof secureClients>>[0] =>
  ({ config, clientId: 'c', identity: generateSigningKey(), send: () => {} })

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * Whether this process uses `ms` milliseconds of CPU within `withinMs` of waiting: the precompute
 * running. Not a fixed window: with the machine loaded (a CI run beside other work) a busy
 * thread got 56 ms of CPU in 300 ms.
 */
async function busyFor (ms: number, withinMs = 10_000): Promise<boolean> {
  const before = process.cpuUsage()
  for (const until = Date.now() + withinMs; Date.now() < until;) {
    await sleep(50)
    const used = process.cpuUsage(before)
    if ((used.user + used.system) / 1000 >= ms) return true
  }
  return false
}

/** Milliseconds of this process's CPU over `ms` of waiting. */
async function cpuWhileIdle (ms: number): Promise<number> {
  const before = process.cpuUsage()
  await sleep(ms)
  const used = process.cpuUsage(before)
  return (used.user + used.system) / 1000
}

describe('Paillier randomness made ahead', () => {
  it('a round that ends before using the pool its offer started stops the precompute', async () => {
    const factory = secureClients({ paillierKeyId: info.keyId })
    const client = factory(deps(offer(2_000_000)))
    await client.begin()
    // The precompute runs on this thread: busy while it runs.
    expect(await busyFor(200)).toBe(true)
    client.dispose()
    await sleep(50)
    // Before: ≈ all of the 600 ms, for as long as the 2,000,000 values took.
    expect(await cpuWhileIdle(600)).toBeLessThan(150)
    factory.stop?.()
  })

  it('a round disposed, and the factory stopped, while begin still reads the key starts no precompute', async () => {
    // As the participant does on an abort: its race rejects at once and disposes, while begin
    // is still awaiting the key's hash. Before (review 37e), begin then started the precompute.
    const factory = secureClients({ paillierKeyId: info.keyId })
    const client = factory(deps(offer(2_000_000)))
    const begun = client.begin()
    client.dispose()
    factory.stop?.()
    await begun
    await sleep(50)
    expect(await cpuWhileIdle(600)).toBeLessThan(150)
  })

  it('stop() stops the precompute made ahead for rounds to come', async () => {
    const factory = secureClients({ paillierKeyId: info.keyId })
    await factory(deps(offer(2_000_000))).begin()
    expect(await busyFor(200)).toBe(true)
    factory.stop?.()
    await sleep(50)
    expect(await cpuWhileIdle(600)).toBeLessThan(150)
  })

  it('rounds that use their pools still encrypt, one after another', async () => {
    const factory = secureClients({ paillierKeyId: info.keyId })
    for (const fill of [3, 5]) {
      const client = factory(deps(offer(8)))
      await client.begin()
      const bytes = await client.protect(new Uint32Array(8).fill(fill), AbortSignal.timeout(30_000))
      expect(bytes.length).toBeGreaterThan(0)
      client.dispose()
    }
    factory.stop?.()
  })

  it('declines a Paillier offer with no decryptor key pinned, or under another key (review 47c: the coordinator could offer its own)', async () => {
    const unpinned = secureClients()(deps(offer(8)))
    expect(unpinned.refusal).toBe('the offer asks for Paillier encryption, and this runtime has pinned no decryptor key (secureClients paillierKeyId): the offered key could be the coordinator\'s own')
    // Also for a caller that does not look at the refusal first: nothing is encrypted.
    await expect(unpinned.protect(new Uint32Array(8).fill(1), AbortSignal.timeout(30_000))).rejects.toThrow(/pinned no decryptor key/)
    const other = 'ab'.repeat(32)
    expect(secureClients({ paillierKeyId: other })(deps(offer(8))).refusal).toBe(`the offer's Paillier key ${info.keyId} is not the pinned decryptor key ${other} (secureClients paillierKeyId)`)
    // The pin is a key id as the decryptor prints it, either case.
    expect(secureClients({ paillierKeyId: info.keyId.toUpperCase() })(deps(offer(8))).refusal).toBeUndefined()
    expect(() => secureClients({ paillierKeyId: 'not-a-key' })).toThrow('secureClients paillierKeyId: expected the decryptor\'s key id, 64 hex digits, got "not-a-key"')
  })
})
