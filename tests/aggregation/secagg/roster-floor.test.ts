/**
 * What a masking client accepts as its roster, which the server alone chooses (Bell et al. 2020,
 * §3: a malicious server picks the graph): the size floor comes from the runtime when it says
 * so (the offer's minUploads is the same server's word), an offer with minUploads = 1 is still
 * served, and a roster the client must refuse costs it little whatever its size.
 */
import { describe, it, expect } from 'vitest'
import { x25519 } from '@noble/curves/ed25519.js'
import { createMaskingClient } from '../../../aggregation/secagg/client.ts'
import { MAX_CLIENTS } from '../../../aggregation/secagg/constants.ts'
import { advertiseTranscript } from '../../../aggregation/secagg/kdf.ts'
import { completeGraph, hararyGraph } from '../../../aggregation/secagg/graph.ts'
import type { GraphConfig } from '../../../aggregation/secagg/params.ts'
import { fixedPointParams } from '../../../aggregation/fixed-point.ts'
import { secureClients } from '../../../node-runtime/fl/secure-client.ts'
import { toBase64, toHex } from '../../../shared/crypto/bytes.ts'
import { generateSigningKey, sign, type SigningKeyPair } from '../../../shared/crypto/sign.ts'
import { checkRoundRequest, roundConfigSchema, type RoundConfig } from '../../../shared/rounds/config.ts'
import { ROUND } from './harness.ts'

function offer (n: number, extra: Record<string, unknown> = {}): { config: RoundConfig, keys: Map<string, SigningKeyPair> } {
  const keys = new Map(Array.from({ length: n }, () => generateSigningKey()).map(k => [toHex(k.publicKey), k]))
  const config = roundConfigSchema.parse({
    id: ROUND,
    model: 'm',
    baseVersion: 1,
    manifestCid: 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    trainable: ['head'],
    tensors: ['head/kernel'],
    vectorLength: 8,
    clients: [...keys.keys()].sort(),
    fixedPoint: { ...fixedPointParams({ clip: 1, clients: n }) },
    seed: toHex(new Uint8Array(32).fill(7)),
    secure: { mode: 'masking', graph: 'sparse' },
    ...extra
  })
  return { config, keys }
}

/** A neighbour's signed advertisement, as a colluder the server names would send it. */
function advertisement (id: string, identity: SigningKeyPair): { type: 'secagg/advertise', roundId: string, from: string, cPublicKey: string, sPublicKey: string, signature: string } {
  const c = x25519.keygen().publicKey
  const s = x25519.keygen().publicKey
  return { type: 'secagg/advertise', roundId: ROUND, from: id, cPublicKey: toBase64(c), sPublicKey: toBase64(s), signature: toBase64(sign(advertiseTranscript(ROUND, id, c, s), identity.secretKey)) }
}

describe('the roster floor', () => {
  it('a runtime floor refuses a roster of the client and two colluders, whatever minUploads the offer states', async () => {
    const { config, keys } = offer(20, { selection: { minUploads: 2 } })
    const [victim, a, b] = config.clients as [string, string, string]
    const roster = { type: 'secagg/roster' as const, roundId: ROUND, to: victim, clients: [victim, a, b].sort(), neighbours: [advertisement(a, keys.get(a) as SigningKeyPair), advertisement(b, keys.get(b) as SigningKeyPair)] }
    const run = async (options: Parameters<typeof secureClients>[0]): Promise<unknown[]> => {
      const sent: unknown[] = []
      const client = secureClients(options)({ config, clientId: victim, identity: keys.get(victim) as SigningKeyPair, send: m => sent.push(m) })
      await client.begin()
      await client.message(roster).catch(err => { sent.push(err) })
      return sent
    }
    // Without a floor of its own the runtime shares its secrets with the two (t = 2 of 3: they
    // alone can rebuild both its self-mask seed and its pairwise key, and unmask its update).
    const open = await run({})
    expect(open.map(m => (m as { type?: string }).type)).toEqual(['secagg/advertise', 'secagg/shares'])
    const floored = await run({ maskingMinRoster: 10 })
    expect(floored).toHaveLength(2)
    expect((floored[1] as Error).message).toMatch(/fewer than the 10 this client shares keys with at least \(the runtime's maskingMinRoster/)
  })

  it('a roster naming anyone the offer does not is refused: invented names cannot meet the floor or move the layout', async () => {
    const { config, keys } = offer(20)
    const [victim, a, b] = config.clients as [string, string, string]
    // The floor (10 here) met with made-up names around the client and two colluders.
    const invented = Array.from({ length: 8 }, (_, i) => toHex(new Uint8Array(32).fill(0xe0 + i)))
    const clients = [victim, a, b, ...invented].sort()
    const sent: unknown[] = []
    const client = secureClients({ maskingMinRoster: 10 })({ config, clientId: victim, identity: keys.get(victim) as SigningKeyPair, send: m => sent.push(m) })
    await client.begin()
    const roster = { type: 'secagg/roster' as const, roundId: ROUND, to: victim, clients, neighbours: [advertisement(a, keys.get(a) as SigningKeyPair), advertisement(b, keys.get(b) as SigningKeyPair)] }
    await expect(client.message(roster)).rejects.toThrow(new RegExp(`^roster: names ${clients.find(v => !config.clients.includes(v))}, not a client of round ${ROUND}$`))
    expect(sent.map(m => (m as { type?: string }).type)).toEqual(['secagg/advertise'])
  })

  it('an offer assuming fewer colluders than the runtime does is declined from the offer; the runtime may lower its floor', () => {
    for (const [rate, floor, refused] of [[0, undefined, true], [0.04, undefined, true], [0.05, undefined, false], [undefined, undefined, false], [0, 0, false], [0.1, 0.2, true]] as const) {
      const { config, keys } = offer(20, rate === undefined ? {} : { secure: { mode: 'masking', graph: 'sparse', adversarialRate: rate } })
      const id = config.clients[0] as string
      const client = secureClients(floor === undefined ? {} : { maskingMinAdversarialRate: floor })({ config, clientId: id, identity: keys.get(id) as SigningKeyPair, send: () => {} })
      if (refused) expect(client.refusal, `${rate} vs ${floor}`).toBe(`the offer sizes its masking threshold for a share of ${rate} colluding clients, and this runtime takes part only if at least ${floor ?? 0.05} is assumed (maskingMinAdversarialRate)`)
      else expect(client.refusal, `${rate} vs ${floor}`).toBeUndefined()
    }
    for (const bad of [-0.1, 1, Number.NaN, '0.1']) {
      expect(() => secureClients({ maskingMinAdversarialRate: bad as number })).toThrow(/maskingMinAdversarialRate: expected a number in \[0, 1\)/)
    }
  })

  it('an offer naming fewer clients than the runtime floor is refused from the offer itself, before the model is fetched', () => {
    for (const [n, refused] of [[5, true], [9, true], [10, false], [20, false]] as const) {
      const { config, keys } = offer(n)
      const id = config.clients[0] as string
      const client = secureClients({ maskingMinRoster: 10 })({ config, clientId: id, identity: keys.get(id) as SigningKeyPair, send: () => {} })
      if (refused) expect(client.refusal).toBe(`the offer names ${n} clients, and this runtime shares masking keys only within rosters of at least 10 (maskingMinRoster)`)
      else expect(client.refusal).toBeUndefined()
    }
  })

  it('an offer with minUploads = 1 (valid) gets a masking client with the least roster of 2', () => {
    const { config, keys } = offer(5, { selection: { minUploads: 1 } })
    expect(() => { checkRoundRequest(config) }).not.toThrow()
    const id = config.clients[0] as string
    // Before: createMaskingClient threw on minRoster 1 inside the participant's offer handler,
    // so no runtime answered and the round waited out its accept deadline.
    expect(() => secureClients()({ config, clientId: id, identity: keys.get(id) as SigningKeyPair, send: () => {} })).not.toThrow()
  })
})

describe('a roster the client refuses', () => {
  // Bounded by the test's deadline, not timed: before, the complete graph of 10,000 ids took
  // ≈ 3 GiB (all n lists and n sets) and the Harary degree search Θ(n³), ≈ 15 minutes.
  it.each<[string, GraphConfig]>([
    ['complete', { kind: 'complete' }],
    ['Harary, 30 % adversarial / 30 % dropout', { kind: 'harary', adversarialRate: 0.3, dropoutRate: 0.3 }]
  ])('of %s graph over MAX_CLIENTS ids and no neighbour keys is refused without building the graph', async (_name, graph) => {
    const identity = generateSigningKey()
    const c = createMaskingClient({ roundId: ROUND, id: 'victim', identity, identityKeyOf: () => identity.publicKey, vectorLength: 4, graph, seed: new Uint8Array(32) })
    await c.advertise()
    const clients = ['victim', ...Array.from({ length: MAX_CLIENTS - 1 }, (_, i) => `fake-${String(i).padStart(5, '0')}`)].sort()
    await expect(c.shareKeys({ type: 'secagg/roster', roundId: ROUND, to: 'victim', clients, neighbours: [] })).rejects.toThrow(/carries keys of/)
  }, 10_000)

  it('lazy neighbour lists agree with adjacency, both ways, for every pair', () => {
    const ids = Array.from({ length: 41 }, (_, i) => `c${String(i).padStart(2, '0')}`)
    for (const graph of [completeGraph(ids), hararyGraph(ids, 2, new Uint8Array(32)), hararyGraph(ids, 10, new Uint8Array(32).fill(3)), hararyGraph(ids, 38, new Uint8Array(32).fill(9))]) {
      for (const a of ids) {
        const ns = new Set(graph.neighbours(a))
        expect(ns.size).toBe(graph.degree)
        for (const b of ids) {
          expect(graph.adjacent(a, b)).toBe(ns.has(b))
          expect(graph.adjacent(b, a)).toBe(ns.has(b))
        }
      }
      expect(graph.adjacent('c00', 'stranger')).toBe(false)
    }
  })
})
