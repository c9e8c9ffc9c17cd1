/**
 * `wipe()` (review 47a) zeroes the secrets a masking client holds between its steps: its
 * self-mask seed b and, per neighbour, the share key and pair mask seed it derived. The arrays
 * are caught where they are made (the key derivations and the random source), so a wipe that
 * left one of them set fails here; the client's own fields are never read.
 */
import { describe, it, expect, vi } from 'vitest'
import { KEY_BYTES } from '../../../aggregation/secagg/constants.ts'
import { client, newRound, setUp } from './harness.ts'

const made = vi.hoisted(() => ({ derived: [] as Uint8Array[] }))

vi.mock('../../../aggregation/secagg/kdf.ts', async importOriginal => {
  const real = await importOriginal<typeof import('../../../aggregation/secagg/kdf.ts')>()
  const kept = (bytes: Uint8Array): Uint8Array => { made.derived.push(bytes); return bytes }
  return {
    ...real,
    shareKey: (...args: Parameters<typeof real.shareKey>) => kept(real.shareKey(...args)),
    pairMaskSeed: (...args: Parameters<typeof real.pairMaskSeed>) => kept(real.pairMaskSeed(...args))
  }
})

const zero = (bytes: Uint8Array): boolean => bytes.every(x => x === 0)

describe('a masking client wiped between ShareKeys and MaskedInput', () => {
  it('leaves no byte of b, its share keys or its pair mask seeds', async () => {
    const round = newRound(8, { kind: 'harary', degree: 4, threshold: 3 })
    made.derived.length = 0
    // The 32-byte draws of the masking code (an Ed25519 key the harness makes is not its).
    const drawn: Uint8Array[] = []
    const real = globalThis.crypto.getRandomValues.bind(globalThis.crypto)
    const random = vi.spyOn(globalThis.crypto, 'getRandomValues').mockImplementation(<T extends ArrayBufferView | null>(array: T): T => {
      const out = real(array as Uint8Array) as unknown as T
      if (array instanceof Uint8Array && array.length === KEY_BYTES && (new Error().stack ?? '').includes('/aggregation/secagg/')) drawn.push(array)
      return out
    })
    try {
      await setUp(round)
    } finally {
      random.mockRestore()
    }
    // Per client two X25519 secret keys and b, and the throwaway keys that probe neighbours'
    // public keys (zeroed at once); nonces are 24 bytes.
    expect(drawn.length).toBeGreaterThanOrEqual(8 * 3)
    expect(made.derived).toHaveLength(8 * 4 * 2)
    // The key pairs and probes are zeroed by ShareKeys itself; b and every derived key are live.
    expect(drawn.filter(v => !zero(v))).toHaveLength(8)
    expect(made.derived.filter(zero)).toHaveLength(0)
    for (const id of round.ids) client(round, id).wipe()
    expect(drawn.filter(v => !zero(v))).toHaveLength(0)
    expect(made.derived.filter(v => !zero(v))).toHaveLength(0)
    expect(client(round, round.ids[0] as string).stage).toBe('done')
  })
})
