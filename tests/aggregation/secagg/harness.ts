/**
 * Drives whole masking rounds in-process for the protocol tests: n real clients and one server,
 * every message passed through JSON as the transport would carry it, inputs from a seeded
 * generator, and the plaintext ring sum computed beside it as the reference.
 */
import { ringSum } from '../../../aggregation/ring.ts'
import { createMaskingClient, type MaskingClient } from '../../../aggregation/secagg/client.ts'
import type { GraphConfig } from '../../../aggregation/secagg/params.ts'
import { createMaskingServer, restoreMaskingServer, type MaskingServer } from '../../../aggregation/secagg/server.ts'
import { generateSigningKey, sign, type SigningKeyPair } from '../../../shared/crypto/sign.ts'
import { fromBase64, toBase64 } from '../../../shared/crypto/bytes.ts'
import { consistencyTranscript, survivorsDigest } from '../../../aggregation/secagg/kdf.ts'
import { mulberry32 } from '../../../shared/random/seeded.ts'

export const ROUND = 'r_00000000000000aa'

export interface Round {
  ids: string[]
  identities: Map<string, SigningKeyPair>
  clients: Map<string, MaskingClient>
  server: MaskingServer
  inputs: Map<string, Uint32Array>
  vectorLength: number
  graph: GraphConfig
  seed: Uint8Array
}

/** As the wire carries it: JSON text and back. */
export const wire = <T>(message: T): unknown => JSON.parse(JSON.stringify(message))

/** A seeded shuffle (Fisher–Yates), for picking who drops. */
export function shuffled<T> (xs: readonly T[], seed: number): T[] {
  const next = mulberry32(seed)
  const out = [...xs]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[out[i], out[j]] = [out[j] as T, out[i] as T]
  }
  return out
}

export function newRound (n: number, graph: GraphConfig, options: { vectorLength?: number, seed?: number } = {}): Round {
  const vectorLength = options.vectorLength ?? 64
  const next = mulberry32(options.seed ?? n)
  const ids = Array.from({ length: n }, (_, i) => `client-${String(i).padStart(3, '0')}`)
  const identities = new Map(ids.map(id => [id, generateSigningKey()]))
  const seed = Uint8Array.from({ length: 32 }, () => Math.floor(next() * 256))
  const inputs = new Map(ids.map(id => [id, Uint32Array.from({ length: vectorLength }, () => Math.floor(next() * 2 ** 32))]))
  return rerun({ ids, identities, inputs, vectorLength, graph, seed })
}

/**
 * A run of a round with fresh server and client state: the same round id, clients, identities,
 * seed and inputs as `round`, as when a coordinator offers a round id again.
 */
export function rerun (round: Omit<Round, 'server' | 'clients'>): Round {
  const { ids, identities, vectorLength, graph, seed } = round
  const server = createMaskingServer({
    roundId: ROUND, participants: ids.map(id => ({ id, identityKey: (identities.get(id) as SigningKeyPair).publicKey })), vectorLength, graph, seed
  })
  const clients = new Map(ids.map(id => [id, createMaskingClient({
    roundId: ROUND, id, identity: identities.get(id) as SigningKeyPair, identityKeyOf: v => identities.get(v)?.publicKey, vectorLength, graph, seed
  })]))
  return { ...round, server, clients }
}

/** The X25519 public keys `id` advertised in this run of the round (as the server holds them). */
export function advertisedKeys (round: Round, id: string): { cPublicKey: Uint8Array, sPublicKey: Uint8Array } {
  const m = round.server.snapshot().state.advertised.find(a => a.from === id)
  if (m === undefined) throw new Error(`${id} did not advertise`)
  return { cPublicKey: fromBase64(m.cPublicKey), sPublicKey: fromBase64(m.sPublicKey) }
}

/** A ConsistencyCheck signature by `id` over `survivors`, as client.ts makes it (for tests that forge or replay). */
export function consistencySignature (round: Round, id: string, survivors: readonly string[], options: { roundId?: string, keys?: { cPublicKey: Uint8Array, sPublicKey: Uint8Array }, by?: SigningKeyPair } = {}): string {
  const keys = options.keys ?? advertisedKeys(round, id)
  const transcript = consistencyTranscript(options.roundId ?? ROUND, survivorsDigest(survivors), id, keys.cPublicKey, keys.sPublicKey)
  return toBase64(sign(transcript, (options.by ?? round.identities.get(id) as SigningKeyPair).secretKey))
}

export const client = (round: Round, id: string): MaskingClient => round.clients.get(id) as MaskingClient
export const input = (round: Round, id: string): Uint32Array => round.inputs.get(id) as Uint32Array

/** Round 0 and 1 for everyone (or the given ids). */
export async function setUp (round: Round, sharing: readonly string[] = round.ids): Promise<void> {
  for (const id of round.ids) await round.server.receiveAdvertise(id, wire(await client(round, id).advertise()))
  round.server.closeAdvertise()
  for (const id of sharing) round.server.receiveShares(id, wire(await client(round, id).shareKeys(wire(round.server.rosterFor(id)))))
  round.server.closeShares()
}

/** Round 2 for the given ids. */
export async function mask (round: Round, ids: readonly string[]): Promise<void> {
  for (const id of ids) round.server.receiveMasked(id, await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id))))
}

/** Round 3 (after closeMasked): the given ids sign the survivor list, then the server closes ConsistencyCheck. */
export async function check (round: Round, ids: readonly string[]): Promise<void> {
  for (const id of ids) await round.server.receiveSignature(id, wire(client(round, id).consistencyCheck(wire(round.server.consistencyRequestFor(id)))))
  round.server.closeConsistency()
}

/** Round 4 for the given ids (after closeConsistency). */
export async function unmask (round: Round, ids: readonly string[]): Promise<void> {
  for (const id of ids) round.server.receiveUnmask(id, wire(await client(round, id).unmask(wire(round.server.unmaskRequestFor(id)))))
}

/** Rounds 0–3 for everyone, the given survivors masking: the round is then at its unmask stage. */
export async function toUnmask (round: Round, survivors: readonly string[] = round.ids): Promise<void> {
  await setUp(round)
  await mask(round, survivors)
  round.server.closeMasked()
  await check(round, survivors)
}

/** A whole round in which `dropped` never send masked input; returns the server's sum and the plaintext one. */
export async function runRound (round: Round, dropped: ReadonlySet<string>): Promise<{ sum: Uint32Array, expected: Uint32Array }> {
  await setUp(round)
  const survivors = round.ids.filter(id => !dropped.has(id))
  await mask(round, survivors)
  round.server.closeMasked()
  await check(round, survivors)
  await unmask(round, survivors)
  const sum = await round.server.finish()
  return { sum, expected: ringSum(survivors.map(id => input(round, id)), round.vectorLength) }
}

/**
 * `round` with its server as one restored from a snapshot made before share digests (version 3)
 * holds it: the same state, no digest to check a revealed share against.
 */
export async function withLegacyServer (round: Round): Promise<Round> {
  const { state, maskedSum } = round.server.snapshot()
  const shares = state.shares.map(m => ({ ...m, shares: m.shares.map(({ selfMaskDigest: _s, keyDigest: _k, ...e }) => e) }))
  return { ...round, server: await restoreMaskingServer({ state: { ...state, version: 3 as never, shares }, maskedSum }) }
}
