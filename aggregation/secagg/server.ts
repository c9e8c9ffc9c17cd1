/**
 * The server side of pairwise-masking secure aggregation (Bonawitz et al. 2017, §4, with the
 * ConsistencyCheck round; SecAgg+ graph of Bell et al. 2020): a state machine that checks and
 * records what the clients send, routes what they exchange, and in the end removes the masks from
 * the sum of the masked inputs, so that it only ever holds Σ x_u over the survivors.
 *
 *   advertise ─closeAdvertise()→ share ─closeShares()→ mask ─closeMasked()→ check
 *     ─closeConsistency()→ unmask ─finish()→ done;      (any stage) ──→ failed
 *
 * In `check` every survivor is sent the survivor list U3 and signs it; a survivor is asked for
 * its unmask shares only if t of its neighbours signed too (the client checks those signatures
 * itself: client.ts says why that stops a server telling clients different stories).
 *
 * Masked inputs are added into one running sum as they arrive: memory is one vector, whatever the
 * number of clients. finish() rebuilds b_u for every survivor and s_v^SK for every dropped client
 * with a surviving neighbour, checks each (a rebuilt s_v^SK must match the advertised s_v^PK; a
 * rebuilt b_u must be a 32-byte value, and every share that came must lie on the polynomial t
 * of them make), and subtracts PRG(b_u) and the dropped clients' pairwise masks. When a needed
 * secret has fewer than t shares, or shares that disagree, the round fails with
 * UnavailableError saying whose. The rebuilding yields to the event loop as it goes.
 *
 * Each share is checked when it is revealed, against the SHA-256 digest its owner gave with its
 * sealed shares (kdf.ts `shareDigest`): a wrong one is left out alone (`refusedShares` names its
 * sender and owner) and counts for nothing, so a secret is rebuilt from shares its owner dealt
 * alone, also with exactly t of them (the paper commits to nothing about b_u; review 47a: a
 * crafted share among exactly t gave a wrong sum). The answerer's other shares still count: an
 * owner whose digest lies about one holder costs only its own secret that share (review 52b).
 * Rounds restored from snapshots made before the digests (versions 2 and 3) have none to check
 * against: only the polynomial check guards them, and they are saved at version 3 still.
 *
 * A survivor's report of neighbours whose shares did not open for it (receiveSkipped) drops
 * those edges: it holds none of their shares and did not mask with them, and where the neighbour
 * did mask with it, the seed it revealed removes that half of the pair from the sum.
 *
 * A message that fails a check (wrong round or stage, unknown or mismatched sender, duplicate,
 * malformed, bad signature, wrong length) is rejected with a typed error and changes nothing, so
 * one bad client cannot spoil the round for the others. The transport must pass the
 * authenticated sender as `from`; it is compared with the message's own `from`.
 *
 * `snapshot()` / `restoreMaskingServer()` persist the state (JSON plus the running sum as bytes)
 * so that a coordinator restarted mid-round finishes it.
 */
import { z } from 'zod'
import { decodeBase64, equalBytes } from '../../shared/crypto/bytes.ts'
import { IntegrityError, InvalidInputError, UnavailableError } from '../../shared/errors/errors.ts'
import { KEY_BYTES, MAX_CLIENTS, MAX_VECTOR_LENGTH, MIN_MASKING_CLIENTS, SIGNATURE_BYTES } from './constants.ts'
import type { NeighbourGraph } from './graph.ts'
import { consistencyTranscript, pairMaskSeed, selfMaskSeed, shareDigest, survivorsDigest } from './kdf.ts'
import {
  advertiseSchema, DIGEST_BYTES, encodeBytes, idSchema, legacySharesSchema, parseMessage, sharesSchema, signatureSchema, skippedSchema, unmaskSchema,
  type AdvertiseMessage, type ConsistencyMessage, type InboxMessage, type LegacySharesMessage, type RosterMessage, type SignatureMessage, type SkippedMessage, type UnmaskMessage, type UnmaskRequestMessage
} from './messages.ts'
import type { GraphConfig, GraphParameters } from './params.ts'
import { addMasksInto, type MaskTerm } from './prg.ts'
import { curves } from './_curves.ts'
import { agree, checkAdvertise, rosterGraph, type ClientKeys } from './_roster.ts'
import { combine, lagrangeBasis, SHARE_BYTES, shareValue, type LagrangeBasis, type Share } from './shamir.ts'
import { yielder } from '../../shared/async/yielder.ts'
import { shuffleInPlace } from '../../shared/random/shuffle.ts'
import { cryptoUniform } from '../fixed-point.ts'

export interface Participant {
  id: string
  /** Ed25519 public key that signs the participant's advertised keys. */
  identityKey: Uint8Array
}

export interface MaskingServerOptions {
  roundId: string
  /** The clients selected for the round. */
  participants: readonly Participant[]
  /** Words per input vector. */
  vectorLength: number
  /** Graph kind and threat model (or explicit degree and threshold), as every client has it. */
  graph: GraphConfig
  /** The round's public 32-byte seed that lays out the graph. */
  seed: Uint8Array
}

export type ServerStage = 'advertise' | 'share' | 'mask' | 'check' | 'unmask' | 'done' | 'failed'

/** A revealed share that did not match the digest its owner gave at ShareKeys. */
export interface RefusedShare {
  from: string
  owner: string
  secret: 'self-mask seed' | 'mask key'
}

export interface MaskingServer {
  readonly roundId: string
  readonly stage: ServerStage
  /** Why the round failed, once it has. */
  readonly failure: string | undefined
  /** Graph parameters once the roster is closed. */
  readonly parameters: GraphParameters | undefined
  /** Round 0: a client's advertise message (signature and keys checked). */
  receiveAdvertise: (from: string, payload: unknown) => Promise<void>
  /** Clients whose advertise message was accepted so far, sorted. */
  advertisedBy: () => string[]
  /** Ends round 0: the clients that advertised form the roster. Fails the round below 3 clients or for an infeasible graph. */
  closeAdvertise: () => void
  /** Clients in the roster, sorted (after closeAdvertise). */
  roster: () => string[]
  /** The roster message for client `id`: every roster id and its neighbours' signed keys. */
  rosterFor: (id: string) => RosterMessage
  /** Round 1: a client's sealed shares, one per graph neighbour. */
  receiveShares: (from: string, payload: unknown) => void
  /** Clients whose shares were accepted so far, sorted. */
  sharedBy: () => string[]
  /** Ends round 1: the clients that shared keys are the ones that may send masked input. */
  closeShares: () => void
  /** The sealed shares addressed to `id`, for a client that shared keys. */
  inboxFor: (id: string) => InboxMessage
  /** Round 2: a client's masked input, added into the running sum. */
  receiveMasked: (from: string, y: Uint32Array) => void
  /**
   * Round 2: the neighbours whose shares did not open for `from`, with their pair seeds (before
   * closeMasked): those edges are dropped, and a survivor's mask for a peer that skipped it is
   * removed with the seed (messages.ts `skippedSchema`). Returns false for the same report again
   * (a runtime re-sending an upload a stopped coordinator lost): nothing changed, nothing to save.
   */
  receiveSkipped: (from: string, payload: unknown) => boolean
  /** Ends round 2: who sent masked input survives, who shared keys but did not has dropped. */
  closeMasked: () => void
  /** Survivors whose inputs the sum holds (after closeMasked), sorted. */
  survivors: () => string[]
  /** The ConsistencyCheck request for surviving client `id`: the survivor list, the same for all. */
  consistencyRequestFor: (id: string) => ConsistencyMessage
  /** Round 3: a survivor's signature over the survivor list (checked against its identity key). */
  receiveSignature: (from: string, payload: unknown) => Promise<void>
  /** Survivors whose signature was accepted so far, sorted. */
  signedBy: () => string[]
  /**
   * Ends round 3: the signers with at least t signing neighbours are the ones asked to unmask.
   * Fails the round when some needed secret has fewer than t of them among its holders.
   */
  closeConsistency: () => void
  /** Survivors that will be asked to unmask (after closeConsistency), sorted. */
  answerers: () => string[]
  /** The unmask request for answering client `id`: its neighbours' signatures. */
  unmaskRequestFor: (id: string) => UnmaskRequestMessage
  /**
   * Round 4: an answerer's shares; ignored once the sum is under way or done (they are not needed).
   * A share that is not the one its owner dealt (by the owner's digests) is left out alone and
   * listed by `refusedShares`; the rest of the message counts.
   */
  receiveUnmask: (from: string, payload: unknown) => void
  /** Revealed shares left out so far: who sent each, whose secret it was a share of. */
  refusedShares: () => RefusedShare[]
  /** True once every secret finish() needs has at least t shares. */
  ready: () => boolean
  /** Σ x_u (mod 2^32) over the survivors; fails the round (UnavailableError) when it cannot be unmasked. */
  finish: () => Promise<Uint32Array>
  /** The state to persist: JSON-able `state` and the running sum's little-endian bytes. */
  snapshot: () => MaskingServerSnapshot
}

const STAGES = ['advertise', 'share', 'mask', 'check', 'unmask', 'done', 'failed'] as const

/**
 * The two secrets an unmask reveals shares of: the message's field, the kind its owner's digest
 * names (kdf.ts `shareDigest`) and the share entry's field holding it, and how a refusal names it.
 */
const REVEALED = [
  { field: 'selfMaskShares', kind: 'self', digest: 'selfMaskDigest', secret: 'self-mask seed' },
  { field: 'keyShares', kind: 'key', digest: 'keyDigest', secret: 'mask key' }
] as const
const SNAPSHOT_VERSION = 4

const snapshotStateSchema = z.object({
  // 2: from before clients reported shares that did not open (none are, then); 2 and 3: from
  // before share digests (their shares messages carry none, and are replayed without them).
  version: z.union([z.literal(2), z.literal(3), z.literal(SNAPSHOT_VERSION)]),
  roundId: idSchema,
  participants: z.array(z.object({ id: idSchema, identityKey: z.string().max(64) }).strict()).max(MAX_CLIENTS),
  vectorLength: z.number().int().positive().max(MAX_VECTOR_LENGTH),
  graph: z.object({
    kind: z.enum(['harary', 'complete']),
    adversarialRate: z.number().optional(),
    dropoutRate: z.number().optional(),
    degree: z.number().int().optional(),
    threshold: z.number().int().optional(),
    // Absent in snapshots from before colluders were counted over the offer: the roster then.
    population: z.number().int().optional()
  }).strict(),
  seed: z.string().max(64),
  stage: z.enum(STAGES),
  failure: z.string().max(4000).nullable(),
  advertised: z.array(advertiseSchema).max(MAX_CLIENTS),
  shares: z.array(legacySharesSchema).max(MAX_CLIENTS),
  masked: z.array(idSchema).max(MAX_CLIENTS),
  skipped: z.array(skippedSchema).max(MAX_CLIENTS).default([]),
  signatures: z.array(signatureSchema).max(MAX_CLIENTS),
  unmasks: z.array(unmaskSchema).max(MAX_CLIENTS)
}).strict()
export type MaskingServerState = z.infer<typeof snapshotStateSchema>

export interface MaskingServerSnapshot {
  state: MaskingServerState
  /** Little-endian bytes of the running sum of masked inputs (vectorLength × 4). */
  maskedSum: Uint8Array
}

function checkOptions (options: MaskingServerOptions): void {
  parseMessage(idSchema, options.roundId, 'masking server roundId')
  if (!Number.isSafeInteger(options.vectorLength) || options.vectorLength < 1 || options.vectorLength > MAX_VECTOR_LENGTH) {
    throw new InvalidInputError(`masking server vectorLength: expected an integer in [1, ${MAX_VECTOR_LENGTH}], got ${options.vectorLength}`)
  }
  if (!(options.seed instanceof Uint8Array) || options.seed.length !== KEY_BYTES) throw new InvalidInputError(`masking server seed: expected ${KEY_BYTES} bytes`)
  if (options.participants.length > MAX_CLIENTS) throw new InvalidInputError(`masking server participants: at most ${MAX_CLIENTS}, got ${options.participants.length}`)
  const seen = new Set<string>()
  for (const [i, p] of options.participants.entries()) {
    parseMessage(idSchema, p.id, `masking server participants[${i}].id`)
    if (seen.has(p.id)) throw new InvalidInputError(`masking server participants: ${p.id} appears twice`)
    if (!(p.identityKey instanceof Uint8Array) || p.identityKey.length !== KEY_BYTES) throw new InvalidInputError(`masking server participants[${i}].identityKey: expected ${KEY_BYTES} bytes`)
    seen.add(p.id)
  }
}

interface Internals {
  server: MaskingServer
  /** Restores the survivors and running sum of round 2 from a snapshot. */
  restoreMasked: (ids: readonly string[], sum: Uint32Array) => void
  restoreEnd: (stage: 'done' | 'failed', failure: string | null) => void
  /** receiveShares, also for a snapshot's message from before share digests (`legacy`). */
  receiveShares: (from: string, payload: unknown, legacy: boolean) => void
}

/**
 * A server for one round.
 *
 * @example
 * const s = createMaskingServer({ roundId, participants, vectorLength, graph: { kind: 'harary' }, seed })
 * await s.receiveAdvertise(id, msg) …; s.closeAdvertise(); send(id, s.rosterFor(id)) … s.receiveShares(id, msg) …; s.closeShares()
 * send(id, s.inboxFor(id)); s.receiveMasked(id, y) …; s.closeMasked(); send(id, s.unmaskRequestFor(id))
 * s.receiveUnmask(id, msg) …; const sum = await s.finish()
 */
export function createMaskingServer (options: MaskingServerOptions): MaskingServer {
  return serverCore(options).server
}

function serverCore (options: MaskingServerOptions): Internals {
  checkOptions(options)
  const { roundId, vectorLength } = options
  const identities = new Map(options.participants.map(p => [p.id, p.identityKey]))
  let stage: ServerStage = 'advertise'
  let failure: string | undefined
  let busy = false
  const advertised = new Map<string, { message: AdvertiseMessage, keys: ClientKeys }>()
  let rosterIds: string[] | undefined
  let graph: NeighbourGraph | undefined
  let params: GraphParameters | undefined
  const shares = new Map<string, LegacySharesMessage>()
  /** Revealed shares left out because they are not what their owner dealt (by its digests), by secret, owner and holder. */
  const refused = new Map<string, RefusedShare>()
  const refusedKey = (kind: 'self' | 'key', owner: string, holder: string): string => `${kind}\n${owner}\n${holder}`
  /** Set when a snapshot from before share digests was replayed: snapshots stay at that version (review 52b). */
  let legacy = false
  /** Per owner, its share entries by holder: what an unmask is checked against (built when first needed). */
  const entriesBy = new Map<string, Map<string, LegacySharesMessage['shares'][number]>>()
  const entryOf = (owner: string, holder: string): LegacySharesMessage['shares'][number] | undefined => {
    let entries = entriesBy.get(owner)
    if (entries === undefined) entriesBy.set(owner, entries = new Map((shares.get(owner)?.shares ?? []).map(e => [e.to, e])))
    return entries.get(holder)
  }
  const maskedSum = new Uint32Array(vectorLength)
  const masked = new Set<string>()
  /** Round 2's reports of shares that did not open, by reporter, with the peers named; `cut(u, v)`: u skipped v. */
  const skips = new Map<string, { message: SkippedMessage, peers: Set<string> }>()
  const cut = (u: string, v: string): boolean => skips.get(u)?.peers.has(v) === true
  /** Survivor pairs (u skipped v, v did not skip u) whose mask sits in v's input only, with u's seed (fixed at closeMasked). */
  let oneSided: Array<{ u: string, v: string, seed: string }> = []
  let survivorList: string[] = []
  let droppedSet = new Set<string>()
  /** Dropped clients whose pairwise masks sit in some survivor's input, with those survivors (fixed at closeMasked). */
  let droppedPairs: Array<[string, string[]]> = []
  /** Digest of the survivor list the survivors sign in round 3 (fixed at closeMasked). */
  let digest: Uint8Array | undefined
  const signatures = new Map<string, SignatureMessage>()
  let answererSet = new Set<string>()
  const unmasks = new Map<string, UnmaskMessage>()
  /** Shares received per secret, and how many needed secrets are still short of t: ready() is O(1). */
  const shareCounts = { self: new Map<string, number>(), key: new Map<string, number>() }
  let short = 0

  const fail = (reason: string, cause?: unknown): never => {
    stage = 'failed'
    failure = reason
    throw new UnavailableError(`round ${roundId} failed: ${reason}`, { cause })
  }
  const expect = (want: ServerStage, what: string): void => {
    if (stage === 'failed') throw new UnavailableError(`${what}: round ${roundId} has failed: ${failure ?? ''}`)
    if (busy) throw new InvalidInputError(`${what}: the server is finishing the round`)
    if (stage !== want) throw new InvalidInputError(`${what}: round ${roundId} is at stage ${stage}, not ${want}`)
  }
  const sameSender = (from: string, claimed: string, what: string): void => {
    if (claimed !== from) throw new InvalidInputError(`${what}: sent by ${from} but claims to be from ${claimed}`)
  }
  const sameRound = (claimed: string, what: string): void => {
    if (claimed !== roundId) throw new InvalidInputError(`${what}: for round ${claimed}, this is round ${roundId}`)
  }
  const g = (): NeighbourGraph => graph as NeighbourGraph
  const t = (): number => (params as GraphParameters).threshold
  /** Neighbours of `id` that shared keys. */
  const activeNeighbours = (id: string): string[] => g().neighbours(id).filter(v => shares.has(v))
  /** Neighbours whose shares `id` holds, and masked with: active ones it did not skip. */
  const heldBy = (id: string): string[] => activeNeighbours(id).filter(v => !cut(id, v))
  /** Neighbours that hold `id`'s shares: active ones that did not skip it. */
  const holdersOf = (id: string): string[] => activeNeighbours(id).filter(u => !cut(u, id))
  /** Neighbours of `id` whose consistency signature it counts: held ones that signed (client.ts). */
  const signingNeighbours = (id: string): string[] => heldBy(id).filter(v => signatures.has(v))

  async function receiveAdvertise (from: string, payload: unknown): Promise<void> {
    const what = `advertise from ${from}`
    const admissible = (): void => {
      expect('advertise', what)
      if (advertised.has(from)) throw new InvalidInputError(`${what}: already received`)
    }
    admissible()
    const message = parseMessage(advertiseSchema, payload, what)
    sameSender(from, message.from, what)
    const keys = await checkAdvertise(message, roundId, identities.get(from), what, true)
    // Checked again: the stage may have closed, or a copy been accepted, while the signature was checked.
    admissible()
    advertised.set(from, { message, keys })
  }

  function closeAdvertise (): void {
    expect('advertise', 'close advertise')
    const ids = [...advertised.keys()].sort()
    if (ids.length < MIN_MASKING_CLIENTS) fail(`only ${ids.length} clients advertised keys; masking needs at least ${MIN_MASKING_CLIENTS}`)
    try {
      ;({ graph, params } = rosterGraph(ids, options.graph, options.seed, roundId))
    } catch (err) {
      fail(`no masking graph for ${ids.length} clients: ${(err as Error).message}`, err)
    }
    rosterIds = ids
    stage = 'share'
  }

  function roster (): string[] {
    if (rosterIds === undefined) throw new InvalidInputError(`roster: round ${roundId} has not closed AdvertiseKeys yet`)
    return [...rosterIds]
  }

  function rosterFor (id: string): RosterMessage {
    const ids = roster()
    if (!advertised.has(id)) throw new InvalidInputError(`roster for ${id}: ${id} did not advertise keys`)
    const neighbours = g().neighbours(id).map(v => (advertised.get(v) as { message: AdvertiseMessage }).message)
    return { type: 'secagg/roster', roundId, to: id, clients: ids, neighbours }
  }

  /** `fromLegacy`: a snapshot's message from before share digests (restoreMaskingServer only). */
  function receiveShares (from: string, payload: unknown, fromLegacy = false): void {
    const what = `shares from ${from}`
    expect('share', what)
    const message: LegacySharesMessage = parseMessage(fromLegacy ? legacySharesSchema : sharesSchema, payload, what)
    sameSender(from, message.from, what)
    sameRound(message.roundId, what)
    if (!advertised.has(from)) throw new InvalidInputError(`${what}: ${from} is not in the roster`)
    if (shares.has(from)) throw new InvalidInputError(`${what}: already received`)
    const expected = new Set(g().neighbours(from))
    const seen = new Set<string>()
    for (const entry of message.shares) {
      if (!expected.has(entry.to)) throw new InvalidInputError(`${what}: ${entry.to} is not a neighbour of ${from}`)
      if (seen.has(entry.to)) throw new InvalidInputError(`${what}: two share pairs for ${entry.to}`)
      seen.add(entry.to)
    }
    if (seen.size !== expected.size) throw new InvalidInputError(`${what}: ${seen.size} share pairs, ${from} has ${expected.size} neighbours`)
    if (fromLegacy) legacy = true
    shares.set(from, message)
  }

  function closeShares (): void {
    expect('share', 'close shares')
    if (shares.size < 2) fail(`only ${shares.size} clients shared keys`)
    stage = 'mask'
  }

  function inboxFor (id: string): InboxMessage {
    if (stage === 'advertise' || stage === 'share') throw new InvalidInputError(`inbox for ${id}: round ${roundId} has not closed ShareKeys yet`)
    if (!shares.has(id)) throw new InvalidInputError(`inbox for ${id}: ${id} did not share keys`)
    const inbox = activeNeighbours(id).map(v => {
      const entry = (shares.get(v) as LegacySharesMessage).shares.find(s => s.to === id) as { ciphertext: string }
      return { from: v, ciphertext: entry.ciphertext }
    })
    return { type: 'secagg/inbox', roundId, to: id, shares: inbox }
  }

  function receiveMasked (from: string, y: Uint32Array): void {
    const what = `masked input from ${from}`
    expect('mask', what)
    if (!shares.has(from)) throw new InvalidInputError(`${what}: ${from} did not share keys`)
    if (masked.has(from)) throw new InvalidInputError(`${what}: already received`)
    if (!(y instanceof Uint32Array) || y.length !== vectorLength) {
      throw new InvalidInputError(`${what}: expected a Uint32Array of ${vectorLength} words, got ${y instanceof Uint32Array ? `${y.length} words` : typeof y}`)
    }
    for (let i = 0; i < vectorLength; i++) maskedSum[i] = (maskedSum[i] as number) + (y[i] as number)
    masked.add(from)
  }

  function receiveSkipped (from: string, payload: unknown): boolean {
    const what = `skipped shares from ${from}`
    expect('mask', what)
    const message = parseMessage(skippedSchema, payload, what)
    sameSender(from, message.from, what)
    sameRound(message.roundId, what)
    if (!shares.has(from)) throw new InvalidInputError(`${what}: ${from} did not share keys`)
    // Before the masked input, as the runtime sends it: one stored after it could be lost to a
    // restart between the two, and the sum with it (review 47f).
    if (masked.has(from)) throw new InvalidInputError(`${what}: after its masked input; a report comes before it`)
    const earlier = skips.get(from)
    if (earlier !== undefined) {
      // The same report again, as a runtime sends it with an upload a stopped coordinator lost
      // (the report had got in): changes nothing, and nothing is saved for it (review 53c: a
      // repeat made the coordinator write the round's whole snapshot). Another one is refused.
      if (JSON.stringify(earlier.message) === JSON.stringify(message)) return false
      throw new InvalidInputError(`${what}: already received`)
    }
    const active = new Set(activeNeighbours(from))
    const peers = new Set<string>()
    for (const { peer } of message.peers) {
      if (!active.has(peer)) throw new InvalidInputError(`${what}: ${peer} is not a neighbour of ${from} that shared keys`)
      if (peers.has(peer)) throw new InvalidInputError(`${what}: ${peer} appears twice`)
      peers.add(peer)
    }
    skips.set(from, { message, peers })
    return true
  }

  function closeMasked (): void {
    expect('mask', 'close masked input')
    survivorList = [...masked].sort()
    droppedSet = new Set([...shares.keys()].filter(id => !masked.has(id)))
    // A survivor that skipped d neither masked with it nor holds its shares.
    droppedPairs = [...droppedSet].sort().map(d => [d, holdersOf(d).filter(v => masked.has(v))] as [string, string[]]).filter(([, us]) => us.length > 0)
    oneSided = [...skips.values()].map(s => s.message).filter(m => masked.has(m.from)).flatMap(m => m.peers
      .filter(p => masked.has(p.peer) && !cut(p.peer, m.from))
      .map(p => ({ u: m.from, v: p.peer, seed: p.seed })))
    digest = survivorsDigest(survivorList)
    stage = 'check'
    if (survivorList.length === 0) fail('no client sent masked input')
    // What to change, for whoever reads the round's reason: the graph was sized for the round's dropout rate.
    const p = params as GraphParameters
    const tooMany = `: ${p.n - survivorList.length} of the ${p.n} clients of the masking graph sent no masked input, more than the graph (degree ${p.degree}, threshold ${t()}) could absorb; a higher secure.dropoutRate sizes it for more dropouts, where the number of clients allows`
    for (const u of survivorList) {
      const alive = holdersOf(u).filter(v => masked.has(v)).length
      if (alive < t()) fail(`survivor ${u} has ${alive} surviving neighbours, fewer than the threshold ${t()}: its self mask cannot be removed${tooMany}`)
    }
    for (const [d, alive] of droppedPairs) {
      if (alive.length < t()) fail(`dropped client ${d} has ${alive.length} surviving neighbours, fewer than the threshold ${t()}: its pairwise masks cannot be removed${tooMany}`)
    }
  }

  function survivors (): string[] {
    if (stage === 'advertise' || stage === 'share' || stage === 'mask') throw new InvalidInputError(`survivors: round ${roundId} has not closed MaskedInput yet`)
    return [...survivorList]
  }

  function consistencyRequestFor (id: string): ConsistencyMessage {
    expect('check', `consistency request for ${id}`)
    if (!masked.has(id)) throw new InvalidInputError(`consistency request for ${id}: ${id} sent no masked input`)
    return { type: 'secagg/consistency', roundId, to: id, survivors: [...survivorList] }
  }

  async function receiveSignature (from: string, payload: unknown): Promise<void> {
    const what = `signature from ${from}`
    const admissible = (): void => {
      expect('check', what)
      if (!masked.has(from)) throw new InvalidInputError(`${what}: ${from} sent no masked input`)
      if (signatures.has(from)) throw new InvalidInputError(`${what}: already received`)
    }
    admissible()
    const message = parseMessage(signatureSchema, payload, what)
    sameSender(from, message.from, what)
    sameRound(message.roundId, what)
    const signature = decodeBase64(message.signature, what, { bytes: SIGNATURE_BYTES })
    const keys = (advertised.get(from) as { keys: ClientKeys }).keys
    const transcript = consistencyTranscript(roundId, digest as Uint8Array, from, keys.cPublicKey, keys.sPublicKey)
    if (!await (await curves()).verify(signature, transcript, identities.get(from) as Uint8Array)) {
      throw new IntegrityError(`${what}: does not verify over this round's survivor list`)
    }
    // Checked again: the stage may have closed, or a copy been accepted, while the signature was checked.
    admissible()
    signatures.set(from, message)
  }

  function closeConsistency (): void {
    expect('check', 'close consistency check')
    answererSet = new Set([...signatures.keys()].filter(id => signingNeighbours(id).length >= t()))
    stage = 'unmask'
    const able = (id: string): number => holdersOf(id).filter(v => answererSet.has(v)).length
    for (const u of survivorList) {
      const n = able(u)
      if (n < t()) fail(`survivor ${u} has ${n} neighbours able to unmask (signed the survivor list, as did t of theirs), fewer than the threshold ${t()}: its self mask cannot be removed`)
    }
    for (const [d] of droppedPairs) {
      const n = able(d)
      if (n < t()) fail(`dropped client ${d} has ${n} neighbours able to unmask (signed the survivor list, as did t of theirs), fewer than the threshold ${t()}: its pairwise masks cannot be removed`)
    }
    short = survivorList.length + droppedPairs.length
  }

  function answerers (): string[] {
    if (stage !== 'unmask' && stage !== 'done') throw new InvalidInputError(`answerers: round ${roundId} has not closed ConsistencyCheck yet`)
    return [...answererSet].sort()
  }

  function unmaskRequestFor (id: string): UnmaskRequestMessage {
    expect('unmask', `unmask request for ${id}`)
    if (!answererSet.has(id)) throw new InvalidInputError(`unmask request for ${id}: ${id} is not an answerer (it sent no signature, or fewer than t of its neighbours did)`)
    const signed = signingNeighbours(id).map(v => ({ from: v, signature: (signatures.get(v) as SignatureMessage).signature }))
    return { type: 'secagg/unmask-request', roundId, to: id, signatures: signed }
  }

  function receiveUnmask (from: string, payload: unknown): void {
    const what = `unmask from ${from}`
    // An answerer slower than the t the sum needed: nothing wrong, nothing needed (review 47b: it
    // was told "the server is finishing the round", an error on a healthy round).
    if ((busy || stage === 'done') && answererSet.has(from)) return
    expect('unmask', what)
    const message = parseMessage(unmaskSchema, payload, what)
    sameSender(from, message.from, what)
    sameRound(message.roundId, what)
    if (!answererSet.has(from)) throw new InvalidInputError(`${what}: ${from} was not asked to unmask`)
    if (unmasks.has(from)) throw new InvalidInputError(`${what}: already received`)
    const held = heldBy(from)
    const want = { selfMaskShares: held.filter(v => masked.has(v)), keyShares: held.filter(v => droppedSet.has(v)) }
    // Each share is also checked against the digest its owner gave at ShareKeys: one that does not
    // match is left out alone, once the whole message has passed. Refusing the whole unmask let an
    // owner that gave a lying digest for one holder throw away that holder's honest shares of
    // every other owner (review 52b).
    const mismatched: Array<{ kind: 'self' | 'key', left: RefusedShare }> = []
    for (const { field, kind, digest, secret } of REVEALED) {
      const owners = message[field].map(s => s.owner)
      if (owners.length !== want[field].length || new Set(owners).size !== owners.length || !owners.every(o => want[field].includes(o))) {
        throw new InvalidInputError(`${what}: ${field} are for [${owners.join(', ')}], expected [${want[field].join(', ')}]`)
      }
      for (const s of message[field]) {
        const y = decodeBase64(s.share, `${what} ${field} of ${s.owner}`, { bytes: SHARE_BYTES })
        shareValue({ x: 1, y }, `${what} ${field} of ${s.owner}`)
        const committed = entryOf(s.owner, from)?.[digest]
        if (committed !== undefined && !equalBytes(shareDigest(roundId, s.owner, from, kind, y), decodeBase64(committed, 'share digest', { bytes: DIGEST_BYTES }))) {
          mismatched.push({ kind, left: { from, owner: s.owner, secret } })
        }
      }
    }
    for (const { kind, left } of mismatched) refused.set(refusedKey(kind, left.owner, from), left)
    unmasks.set(from, message)
    // Every owner asked for is a needed secret: a survivor, or a dropped client with a surviving
    // neighbour (`from` is one), so reaching t shares takes one off `short`.
    const count = (counts: Map<string, number>, owner: string): void => {
      const n = (counts.get(owner) ?? 0) + 1
      counts.set(owner, n)
      if (n === t()) short--
    }
    for (const { field, kind } of REVEALED) for (const s of message[field]) if (!refused.has(refusedKey(kind, s.owner, from))) count(shareCounts[kind], s.owner)
  }

  /** Shares per owner, of b (self) or s^SK (key), from the unmask messages received. */
  function collect (): { self: Map<string, Share[]>, key: Map<string, Share[]> } {
    const revealed = { self: new Map<string, Share[]>(), key: new Map<string, Share[]>() }
    for (const [holder, message] of unmasks) {
      const x = g().index(holder)
      for (const { field, kind } of REVEALED) {
        for (const s of message[field]) {
          if (refused.has(refusedKey(kind, s.owner, holder))) continue
          revealed[kind].set(s.owner, [...(revealed[kind].get(s.owner) ?? []), { x, y: decodeBase64(s.share, 'share', { bytes: SHARE_BYTES }) }])
        }
      }
    }
    return revealed
  }

  function ready (): boolean {
    if (stage !== 'unmask') return stage === 'done'
    return short === 0
  }

  async function finish (): Promise<Uint32Array> {
    // A finished round may be finished again (after a restore, say): the same sum comes out.
    expect(stage === 'done' ? 'done' : 'unmask', 'finish')
    busy = true
    const { self, key } = collect()
    const terms: MaskTerm[] = []
    const secrets: Uint8Array[] = []
    // Holders' x's repeat across owners (all of them, in a complete graph): one basis per set.
    const bases = new Map<string, LagrangeBasis>()
    const basis = (xs: readonly number[]): LagrangeBasis => {
      const id = xs.join(',')
      let b = bases.get(id)
      if (b === undefined) bases.set(id, b = lagrangeBasis(xs))
      return b
    }
    const pause = yielder()
    const rebuild = (have: readonly Share[], what: string, owner: string, which: RefusedShare['secret']): Uint8Array => {
      if (have.length < t()) {
        const left = [...refused.values()].filter(r => r.owner === owner && r.secret === which).map(r => r.from)
        fail(`${have.length} shares of ${what} arrived, the threshold is ${t()}${left.length === 0 ? '' : ` (${left.length} more left out, not the ones ${owner} dealt by its digests: from ${left.join(', ')}; a lying answerer, or an owner whose digests lie)`}`)
      }
      let secret: Uint8Array
      try {
        // From the t lowest x's (their basis is shared across owners), the other shares checked
        // against it: all of them on one polynomial, or the round fails. Leaving out the one
        // share whose removal made the rest agree let two colluding answerers fit their shares to
        // a fake polynomial and pass a wrong secret (review 47e). With every spare checked, the
        // secret is right whenever t of the shares are honest; no check is, with fewer.
        const sorted = [...have].sort((a, b) => a.x - b.x)
        const spares = sorted.length - t()
        // All spares where that is cheap (every sparse graph, small complete ones); past the
        // budget, as many as it allows, drawn at random so colluders cannot fit their shares to
        // the ones checked (review 47f: checking all was cubic on large complete graphs).
        const check = spares * t() <= SPARE_CHECK_BUDGET ? spares : Math.max(MIN_SPARE_CHECKS, Math.floor(SPARE_CHECK_BUDGET / t()))
        secret = combine(check >= spares ? sorted : [...sorted.slice(0, t()), ...shuffleInPlace(sorted.slice(t()), cryptoUniform())], t(), { basis, check })
      } catch (err) {
        return fail(`the shares of ${what} are inconsistent: some answerer sent a wrong share`, err)
      }
      secrets.push(secret)
      return secret
    }
    try {
      for (const u of survivorList) {
        terms.push({ seed: selfMaskSeed(rebuild(self.get(u) ?? [], `survivor ${u}'s self-mask seed`, u, 'self-mask seed'), roundId, u), sign: -1 })
        // Seconds of bigint work at a thousand clients: the coordinator's sockets and pings go on meanwhile.
        await pause()
      }
      for (const [d, us] of droppedPairs) {
        await pause()
        const sk = rebuild(key.get(d) ?? [], `dropped client ${d}'s mask key`, d, 'mask key')
        const sPublic = (advertised.get(d) as { keys: ClientKeys }).keys.sPublicKey
        if (!equalBytes(await (await curves()).publicKey(sk), sPublic)) {
          fail(`the rebuilt mask key of dropped client ${d} does not match its advertised public key`, new IntegrityError(`mask key of ${d}`))
        }
        const seeds = await Promise.all(us.map(async u => {
          const shared = await agree(sk, (advertised.get(u) as { keys: ClientKeys }).keys.sPublicKey, `mask seed of ${d} with ${u}`)
          const seed = pairMaskSeed(shared, roundId, u, d)
          shared.fill(0)
          return seed
        }))
        // y_u carries +PRG(s_ud) when d > u and −PRG(s_ud) when d < u; remove it with the opposite sign.
        us.forEach((u, i) => terms.push({ seed: seeds[i] as Uint8Array, sign: d > u ? -1 : 1 }))
      }
      // v's input carries +PRG(s_uv) when u > v, −PRG(s_uv) when u < v; u skipped v and revealed the seed.
      for (const { u, v, seed } of oneSided) terms.push({ seed: decodeBase64(seed, `seed of ${u} with ${v}`, { bytes: KEY_BYTES }), sign: u > v ? -1 : 1 })
      const result = await addMasksInto(maskedSum.slice(), terms)
      stage = 'done'
      return result
    } finally {
      busy = false
      for (const secret of [...secrets, ...terms.map(term => term.seed)]) secret.fill(0)
    }
  }

  function snapshot (): MaskingServerSnapshot {
    const state: MaskingServerState = {
      // A round replayed from a snapshot without digests is saved as that version still: saved as
      // 4, it would no longer restore (its shares carry none; review 52b).
      version: legacy ? 3 : SNAPSHOT_VERSION,
      roundId,
      participants: options.participants.map(p => ({ id: p.id, identityKey: encodeBytes(p.identityKey) })),
      vectorLength,
      graph: { ...options.graph },
      seed: encodeBytes(options.seed),
      stage,
      failure: failure ?? null,
      advertised: [...advertised.values()].map(a => a.message),
      shares: [...shares.values()],
      masked: [...masked],
      skipped: [...skips.values()].map(s => s.message),
      signatures: [...signatures.values()],
      unmasks: [...unmasks.values()]
    }
    return { state, maskedSum: new Uint8Array(maskedSum.buffer.slice(0)) }
  }

  const server: MaskingServer = {
    roundId,
    get stage () { return stage },
    get failure () { return failure },
    get parameters () { return params },
    receiveAdvertise,
    closeAdvertise,
    roster,
    rosterFor,
    // Never legacy from outside: a live client's shares carry their digests.
    receiveShares: (from, payload) => { receiveShares(from, payload) },
    closeShares,
    inboxFor,
    receiveSkipped,
    receiveMasked,
    advertisedBy: () => [...advertised.keys()].sort(),
    sharedBy: () => [...shares.keys()].sort(),
    closeMasked,
    survivors,
    consistencyRequestFor,
    receiveSignature,
    signedBy: () => [...signatures.keys()].sort(),
    closeConsistency,
    answerers,
    unmaskRequestFor,
    receiveUnmask,
    refusedShares: () => [...refused.values()],
    ready,
    finish,
    snapshot
  }
  return {
    server,
    receiveShares,
    restoreMasked (ids, sum) {
      for (const id of ids) {
        if (!shares.has(id)) throw new InvalidInputError(`server snapshot: masked input from ${id}, who did not share keys`)
        masked.add(id)
      }
      maskedSum.set(sum)
    },
    restoreEnd (end, reason) {
      stage = end
      failure = reason ?? undefined
    }
  }
}

/**
 * A server in the state a snapshot recorded: the recorded messages are replayed through the same
 * checks they passed the first time. Throws InvalidInputError for a snapshot that does not parse
 * or does not replay.
 *
 * @example const server = await restoreMaskingServer({ state: JSON.parse(row.state), maskedSum: row.maskedSum })
 */
export async function restoreMaskingServer (snapshot: MaskingServerSnapshot): Promise<MaskingServer> {
  const state = parseMessage(snapshotStateSchema, snapshot.state, 'server snapshot')
  const core = serverCore({
    roundId: state.roundId,
    participants: state.participants.map((p, i) => ({ id: p.id, identityKey: decodeBase64(p.identityKey, `server snapshot participants[${i}].identityKey`, { bytes: KEY_BYTES }) })),
    vectorLength: state.vectorLength,
    graph: state.graph,
    seed: decodeBase64(state.seed, 'server snapshot seed', { bytes: KEY_BYTES })
  })
  const s = core.server
  if (!(snapshot.maskedSum instanceof Uint8Array) || snapshot.maskedSum.length !== state.vectorLength * 4) {
    throw new InvalidInputError(`server snapshot maskedSum: expected ${state.vectorLength * 4} bytes`)
  }
  const reached = (stage: ServerStage): boolean => STAGES.indexOf(state.stage) >= STAGES.indexOf(stage) && state.stage !== 'failed'
  if (state.stage === 'failed') {
    core.restoreEnd('failed', state.failure)
    return s
  }
  try {
    for (const m of state.advertised) await s.receiveAdvertise(m.from, m)
    if (!reached('share')) return s
    s.closeAdvertise()
    for (const m of state.shares) core.receiveShares(m.from, m, state.version < 4)
    if (!reached('mask')) return s
    s.closeShares()
    for (const m of state.skipped) s.receiveSkipped(m.from, m)
    core.restoreMasked(state.masked, new Uint32Array(snapshot.maskedSum.slice().buffer))
    if (!reached('check')) return s
    s.closeMasked()
    for (const m of state.signatures) await s.receiveSignature(m.from, m)
    if (!reached('unmask')) return s
    s.closeConsistency()
    for (const m of state.unmasks) s.receiveUnmask(m.from, m)
    if (state.stage === 'done') core.restoreEnd('done', null)
    return s
  } catch (err) {
    if (err instanceof InvalidInputError) throw err
    throw new InvalidInputError(`server snapshot: does not replay (${(err as Error).message})`, { cause: err })
  }
}

/**
 * Spare shares × threshold a secret's check may cost (≈ 4 field multiplications each): every spare
 * of a SecAgg+ graph (t ≈ 52, 26 spares at 1,000 clients) and of a complete one up to ≈ 250 clients.
 */
const SPARE_CHECK_BUDGET = 8192
/** Spares checked at least, where the budget allows fewer. */
const MIN_SPARE_CHECKS = 8
