/**
 * The client side of pairwise-masking secure aggregation: Bonawitz et al. 2017, "Practical Secure
 * Aggregation for Privacy-Preserving Machine Learning", §4, rounds 0–4 of the actively secure
 * variant (with ConsistencyCheck), with masks, shares and the consistency quorum restricted to
 * the client's neighbours in the SecAgg+ graph (Bell et al. 2020). A pure state machine: each
 * method takes the server's last message and returns the client's next one; the caller carries them.
 *
 *   advertise()        round 0: fresh X25519 pairs c (share encryption) and s (mask agreement),
 *                      both public keys signed with the client's Ed25519 identity key.
 *   shareKeys(r)       round 1: derives the graph from the roster's ids and the round's seed, checks
 *                      the signatures on its neighbours' keys (only those: O(k)), draws the
 *                      self-mask seed b, Shamir-shares b and s^SK t-of-k among the neighbours and
 *                      seals each neighbour's pair under HKDF(X25519(c_u, c_v)) with
 *                      XChaCha20-Poly1305, associated data (round, from, to). Both agreements per
 *                      neighbour happen here (s_uv = HKDF(X25519(s_u, s_v))), and c^SK, s^SK are
 *                      wiped: from now on they exist only as shares.
 *   maskedInput(x,i)   round 2: y = x + PRG(b) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv) over the
 *                      neighbours whose shares arrived and opened; b and the seeds are wiped
 *                      after. A neighbour whose shares do not open is skipped, and reported
 *                      with its pair seed (skipped()), so the server drops that edge only.
 *   consistencyCheck(c) round 3: signs the survivor list U3 with its keys of this run (once: a
 *                      client signs one list only).
 *   unmask(req)        round 4: only if t neighbours whose shares it holds signed the same U3,
 *                      shares of b_v for the neighbours on it and of s_v^SK for those that shared
 *                      keys but are not.
 *
 * Why ConsistencyCheck: without it a lying server recovers one client's input with no colluder.
 * It tells v's neighbours "v survived" (shares of b_v) and the neighbours of each of v's
 * neighbours u "u dropped" (shares of s_u^SK), and every single request looks honest.
 * Reproduced at n = 20 and 100 in tests/aggregation/secagg/consistency.test.ts. With it, an honest
 * u that reveals a share of b_v signed a U3 holding u and showed t neighbour signatures on it; the
 * server needs t more of u's neighbours to answer a U3 without u. Honest neighbours sign once, so
 * that takes 2t ≤ k + a, which the threshold rule (params.ts: 2t > k + a) excludes; and the
 * neighbours that reveal b_v cannot all be ones v did not mask with, since v masks with ≥ t.
 *
 * A signature covers the signer's X25519 keys of this run, and only neighbours whose shares
 * decrypted count (so their keys in the roster are really theirs, of this run): the round id is
 * the server's choice and may be offered again, and signatures gathered in earlier runs of it
 * would otherwise let it tell every client its own story (found by review; replayed in the test).
 *
 * The client answers one request of each kind, refuses a U3 that leaves out itself, names a
 * stranger to the roster or leaves fewer than t of the neighbours it masked with, and refuses an
 * unmask request whose signatures do not verify or are fewer than t. A message that fails a check
 * is rejected with a typed error and changes nothing.
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js'
import { concatBytes, decodeBase64 } from '../../shared/crypto/bytes.ts'
import { sign, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { AccessDeniedError, IntegrityError, InvalidInputError, UnavailableError } from '../../shared/errors/errors.ts'
import { KEY_BYTES, MAX_VECTOR_LENGTH, SIGNATURE_BYTES } from './constants.ts'
import { advertiseTranscript, consistencyTranscript, pairMaskSeed, selfMaskSeed, shareAad, shareDigest, shareKey, survivorsDigest } from './kdf.ts'
import {
  consistencySchema, encodeBytes, idSchema, inboxSchema, NONCE_BYTES, parseMessage, rosterSchema, SEALED_SHARES_BYTES, unmaskRequestSchema,
  type AdvertiseMessage, type SharesMessage, type SignatureMessage, type SkippedMessage, type UnmaskMessage
} from './messages.ts'
import type { GraphConfig, GraphParameters } from './params.ts'
import { addMasksInto, type MaskTerm } from './prg.ts'
import { curves } from './_curves.ts'
import { agree, checkAdvertise, rosterGraph, x25519KeyPair, type ClientKeys } from './_roster.ts'
import { SHARE_BYTES, split, type Share } from './shamir.ts'

export interface MaskingClientOptions {
  roundId: string
  /** This client's id, as the roster and graph name it. */
  id: string
  /** This client's Ed25519 identity key: signs its advertised public keys. */
  identity: SigningKeyPair
  /** The Ed25519 public key of a client id, or undefined for an id not in the round (blockfed ids are the key's hex). */
  identityKeyOf: (id: string) => Uint8Array | undefined
  /** Words per input vector. */
  vectorLength: number
  /** The round's graph: kind and threat model (or explicit degree and threshold), as the server has it. */
  graph: GraphConfig
  /** The round's public 32-byte seed that lays out the graph. */
  seed: Uint8Array
  /**
   * The fewest clients a roster may name: the round's minimum of uploads, known from its offer.
   * The graph's degree and threshold follow from the roster's size, so a server sending a victim
   * a roster of itself and two colluders would make the colluders all of its neighbours and the
   * threshold theirs to meet. Default 2.
   */
  minRoster?: number
}

export type ClientStage = 'advertise' | 'share' | 'mask' | 'check' | 'unmask' | 'done'

export interface MaskingClient {
  readonly stage: ClientStage
  /** Graph parameters once the roster is known (after shareKeys). */
  readonly parameters: GraphParameters | undefined
  /** Round 0: this client's signed public keys. */
  advertise: () => Promise<AdvertiseMessage>
  /** Round 1: checks the roster (unknown, parsed here) and returns the sealed shares for the neighbours. */
  shareKeys: (roster: unknown) => Promise<SharesMessage>
  /** Round 2: the masked input y for the input `x`, given the inbox of shares the neighbours sent. */
  maskedInput: (x: Uint32Array, inbox: unknown) => Promise<Uint32Array>
  /**
   * After maskedInput: the neighbours whose shares did not open, with their pair seeds, to send
   * before the masked input (undefined when every entry opened): messages.ts `skippedSchema`.
   */
  skipped: () => SkippedMessage | undefined
  /** Round 3: this client's signature over the survivor list; AccessDeniedError for a list it may not sign. */
  consistencyCheck: (request: unknown) => SignatureMessage
  /** Round 4: the shares the server may have; AccessDeniedError for a request it may not. */
  unmask: (request: unknown) => Promise<UnmaskMessage>
  /**
   * Zeroes every secret the round left (b, the key pairs, pair seeds and keys, neighbours'
   * shares): for a round that ends before its last step (review 47a). The client is unusable after.
   */
  wipe: () => void
}

interface HeldShares {
  b: Uint8Array
  s: Uint8Array
}

/** What round 1 leaves for round 2, per neighbour: the AEAD key of its shares and the pair mask seed. */
interface Neighbour {
  shareKey: Uint8Array
  maskSeed: Uint8Array
}

function checkOptions (options: MaskingClientOptions): void {
  parseMessage(idSchema, options.roundId, 'masking client roundId')
  parseMessage(idSchema, options.id, 'masking client id')
  if (!Number.isSafeInteger(options.vectorLength) || options.vectorLength < 1 || options.vectorLength > MAX_VECTOR_LENGTH) {
    throw new InvalidInputError(`masking client vectorLength: expected an integer in [1, ${MAX_VECTOR_LENGTH}], got ${options.vectorLength}`)
  }
  if (!(options.seed instanceof Uint8Array) || options.seed.length !== KEY_BYTES) throw new InvalidInputError(`masking client seed: expected ${KEY_BYTES} bytes`)
  if (typeof options.identityKeyOf !== 'function') throw new InvalidInputError('masking client identityKeyOf: expected a function')
  if (options.minRoster !== undefined && !(Number.isSafeInteger(options.minRoster) && options.minRoster >= 2)) throw new InvalidInputError(`masking client minRoster: expected an integer ≥ 2, got ${options.minRoster}`)
}

/**
 * A client for one round.
 *
 * @example
 * const c = createMaskingClient({ roundId, id, identity, identityKeyOf, vectorLength, graph: { kind: 'harary' }, seed })
 * send(await c.advertise()); send(await c.shareKeys(roster)); upload(await c.maskedInput(x, inbox)); send(c.unmask(request))
 */
export function createMaskingClient (options: MaskingClientOptions): MaskingClient {
  checkOptions(options)
  const { roundId, id, vectorLength } = options
  const minRoster = options.minRoster ?? 2
  let stage: ClientStage = 'advertise'
  let busy = false
  let c: { secretKey: Uint8Array, publicKey: Uint8Array } | undefined
  let s: { secretKey: Uint8Array, publicKey: Uint8Array } | undefined
  let b: Uint8Array | undefined
  let params: GraphParameters | undefined
  let neighbours = new Map<string, Neighbour>()
  /** Shares held for each neighbour whose pair arrived: the neighbours this client masked with. */
  let held = new Map<string, HeldShares>()
  /** The roster's ids and this client's graph neighbours, kept from round 1 for the checks of rounds 3 and 4. */
  let rosterIds = new Set<string>()
  let neighbourIds = new Set<string>()
  /** The public keys each neighbour advertised in this run: what its consistency signature covers. */
  let neighbourKeys = new Map<string, ClientKeys>()
  /** The survivor list U3 this client signed, and its digest. */
  let view: { survivors: Set<string>, digest: Uint8Array } | undefined
  /** Round 2's report of the neighbours whose shares did not open. */
  let report: SkippedMessage | undefined

  const expect = (want: ClientStage, what: string): void => {
    if (busy) throw new InvalidInputError(`${what}: the client is still busy with its previous step`)
    if (stage !== want) throw new InvalidInputError(`${what}: the client is at stage ${stage}, not ${want}`)
  }
  /** Runs an async step with the client marked busy, so no second call interleaves with it. */
  const step = async <T>(work: () => Promise<T>): Promise<T> => {
    busy = true
    try {
      return await work()
    } finally {
      busy = false
    }
  }

  async function advertise (): Promise<AdvertiseMessage> {
    expect('advertise', 'advertise')
    return await step(async () => {
      const [cPair, sPair] = await Promise.all([x25519KeyPair(), x25519KeyPair()])
      c = cPair
      s = sPair
      const signature = sign(advertiseTranscript(roundId, id, c.publicKey, s.publicKey), options.identity.secretKey)
      stage = 'share'
      return { type: 'secagg/advertise', roundId, from: id, cPublicKey: encodeBytes(c.publicKey), sPublicKey: encodeBytes(s.publicKey), signature: encodeBytes(signature) }
    })
  }

  async function shareKeys (value: unknown): Promise<SharesMessage> {
    expect('share', 'roster')
    const roster = parseMessage(rosterSchema, value, 'roster')
    if (roster.roundId !== roundId) throw new InvalidInputError(`roster: for round ${roster.roundId}, this is round ${roundId}`)
    if (roster.to !== id) throw new InvalidInputError(`roster: addressed to ${roster.to}, this client is ${id}`)
    for (let i = 1; i < roster.clients.length; i++) {
      if ((roster.clients[i] as string) <= (roster.clients[i - 1] as string)) throw new InvalidInputError(`roster: clients are not sorted and unique at ${roster.clients[i]}`)
    }
    if (!roster.clients.includes(id)) throw new InvalidInputError(`roster: this client (${id}) is not in it`)
    // Every name must be a client of the round, or the floor below could be met with invented
    // ones, and the layout steered by them (stop 31's review: 37 made-up names of 40 left the
    // victim two colluders for neighbours). O(n) lookups; only neighbours' keys are verified.
    const stranger = roster.clients.find(v => options.identityKeyOf(v) === undefined)
    if (stranger !== undefined) throw new InvalidInputError(`roster: names ${stranger}, not a client of round ${roundId}`)
    if (roster.clients.length < minRoster) throw new InvalidInputError(`roster: names ${roster.clients.length} clients, fewer than the ${minRoster} this client shares keys with at least (the runtime's maskingMinRoster, or the offer's minUploads)`)
    let derived: ReturnType<typeof rosterGraph>
    try {
      derived = rosterGraph(roster.clients, options.graph, options.seed, roundId)
    } catch (err) {
      throw new InvalidInputError(`roster: no masking graph for ${roster.clients.length} clients: ${(err as Error).message}`, { cause: err })
    }
    const ids = derived.graph.neighbours(id)
    const sent = roster.neighbours.map(m => m.from)
    if (sent.length !== ids.length || sent.some((v, i) => v !== ids[i])) {
      throw new InvalidInputError(`roster: carries keys of [${sent.join(', ')}], this client's neighbours are [${ids.join(', ')}]`)
    }
    return await step(async () => {
      const cPair = c as { secretKey: Uint8Array, publicKey: Uint8Array }
      const sPair = s as { secretKey: Uint8Array, publicKey: Uint8Array }
      // Only the neighbours' keys are used, so only theirs are checked: O(k), not O(n). Every other
      // name is a client of the round (above); one that advertised nothing can only move the
      // layout, as leaving a real client out could.
      const checked = await Promise.all(roster.neighbours.map(async (entry, i) => await checkAdvertise(entry, roundId, options.identityKeyOf(entry.from), `roster neighbours[${i}]`)))
      // Both agreements per neighbour happen now, so that round 2 only expands masks.
      const derivedKeys = await Promise.all(ids.map(async (v, i) => {
        const peer = checked[i] as ClientKeys
        const [cShared, sShared] = await Promise.all([agree(cPair.secretKey, peer.cPublicKey, `share key with ${v}`), agree(sPair.secretKey, peer.sPublicKey, `mask seed with ${v}`)])
        const n: Neighbour = { shareKey: shareKey(cShared, roundId, id, v), maskSeed: pairMaskSeed(sShared, roundId, id, v) }
        cShared.fill(0)
        sShared.fill(0)
        return n
      }))
      const xs = ids.map(v => derived.graph.index(v))
      const selfSeed = globalThis.crypto.getRandomValues(new Uint8Array(KEY_BYTES))
      const bShares = split(selfSeed, derived.params.threshold, xs)
      const sShares = split(sPair.secretKey, derived.params.threshold, xs)
      const shares = ids.map((v, i) => {
        const nonce = globalThis.crypto.getRandomValues(new Uint8Array(NONCE_BYTES))
        const plain = concatBytes((bShares[i] as Share).y, (sShares[i] as Share).y)
        const sealed = xchacha20poly1305((derivedKeys[i] as Neighbour).shareKey, nonce, shareAad(roundId, id, v)).encrypt(plain)
        plain.fill(0)
        return {
          to: v,
          ciphertext: encodeBytes(concatBytes(nonce, sealed)),
          selfMaskDigest: encodeBytes(shareDigest(roundId, id, v, 'self', (bShares[i] as Share).y)),
          keyDigest: encodeBytes(shareDigest(roundId, id, v, 'key', (sShares[i] as Share).y))
        }
      })
      for (const share of [...bShares, ...sShares]) share.y.fill(0)
      // The key secrets now live only as shares at the neighbours.
      cPair.secretKey.fill(0)
      sPair.secretKey.fill(0)
      b = selfSeed
      rosterIds = new Set(roster.clients)
      neighbourIds = new Set(ids)
      neighbourKeys = new Map(ids.map((v, i) => [v, checked[i] as ClientKeys]))
      neighbours = new Map(ids.map((v, i) => [v, derivedKeys[i] as Neighbour]))
      params = derived.params
      stage = 'mask'
      return { type: 'secagg/shares', roundId, from: id, shares }
    })
  }

  async function maskedInput (x: Uint32Array, value: unknown): Promise<Uint32Array> {
    expect('mask', 'masked input')
    if (!(x instanceof Uint32Array) || x.length !== vectorLength) {
      throw new InvalidInputError(`masked input x: expected a Uint32Array of ${vectorLength} words, got ${x instanceof Uint32Array ? `${x.length} words` : typeof x}`)
    }
    const inbox = parseMessage(inboxSchema, value, 'inbox')
    if (inbox.roundId !== roundId) throw new InvalidInputError(`inbox: for round ${inbox.roundId}, this is round ${roundId}`)
    if (inbox.to !== id) throw new InvalidInputError(`inbox: addressed to ${inbox.to}, this client is ${id}`)
    const t = (params as GraphParameters).threshold
    const received = new Map<string, HeldShares>()
    /** Neighbours whose entry did not open: a bad sender costs its edge, not this client's round (review 47a). */
    const unopened: string[] = []
    try {
      for (const entry of inbox.shares) {
        const peer = neighbours.get(entry.from)
        if (peer === undefined) throw new InvalidInputError(`inbox: shares from ${entry.from}, who is not a neighbour`)
        if (received.has(entry.from)) throw new InvalidInputError(`inbox: shares from ${entry.from} appear twice`)
        const blob = decodeBase64(entry.ciphertext, `inbox shares from ${entry.from}`, { bytes: SEALED_SHARES_BYTES })
        let plain: Uint8Array
        try {
          plain = xchacha20poly1305(peer.shareKey, blob.subarray(0, NONCE_BYTES), shareAad(roundId, entry.from, id)).decrypt(blob.subarray(NONCE_BYTES))
        } catch {
          unopened.push(entry.from)
          continue
        }
        received.set(entry.from, { b: plain.slice(0, SHARE_BYTES), s: plain.slice(SHARE_BYTES) })
        plain.fill(0)
      }
      if (received.size + unopened.length < t) {
        throw new UnavailableError(`inbox: only ${received.size + unopened.length} neighbours shared keys, fewer than the threshold ${t}: the round could not unmask this client`)
      }
      // Masked with fewer than t, this client would be refused at ConsistencyCheck (it counts only
      // neighbours it masked with): said now, naming who sent what did not open.
      if (received.size < t) {
        throw new IntegrityError(`inbox: the shares of ${unopened.join(', ')} do not authenticate, and the ${received.size} that do are fewer than the threshold ${t}`)
      }
    } catch (err) {
      // Refused part-way: the shares already opened are not kept, nor left in memory.
      for (const h of received.values()) { h.b.fill(0); h.s.fill(0) }
      throw err
    }
    return await step(async () => {
      const self = selfMaskSeed(b as Uint8Array, roundId, id)
      try {
        const terms: MaskTerm[] = [{ seed: self, sign: 1 }]
        // y_u carries +PRG(s_uv) for v > u and −PRG(s_uv) for v < u, so each pair cancels in the sum.
        for (const v of received.keys()) terms.push({ seed: (neighbours.get(v) as Neighbour).maskSeed, sign: v > id ? 1 : -1 })
        const y = await addMasksInto(x.slice(), terms)
        report = unopened.length === 0
          ? undefined
          : { type: 'secagg/skipped', roundId, from: id, peers: unopened.map(v => ({ peer: v, seed: encodeBytes((neighbours.get(v) as Neighbour).maskSeed) })) }
        for (const n of neighbours.values()) { n.shareKey.fill(0); n.maskSeed.fill(0) }
        ;(b as Uint8Array).fill(0)
        b = undefined
        neighbours = new Map()
        held = received
        stage = 'check'
        return y
      } finally {
        self.fill(0)
      }
    })
  }

  function consistencyCheck (value: unknown): SignatureMessage {
    expect('check', 'consistency check')
    const request = parseMessage(consistencySchema, value, 'consistency check')
    if (request.roundId !== roundId) throw new InvalidInputError(`consistency check: for round ${request.roundId}, this is round ${roundId}`)
    if (request.to !== id) throw new InvalidInputError(`consistency check: addressed to ${request.to}, this client is ${id}`)
    for (let i = 1; i < request.survivors.length; i++) {
      if ((request.survivors[i] as string) <= (request.survivors[i - 1] as string)) throw new InvalidInputError(`consistency check: survivors are not sorted and unique at ${request.survivors[i]}`)
    }
    const survivors = new Set(request.survivors)
    for (const v of survivors) if (!rosterIds.has(v)) throw new InvalidInputError(`consistency check: survivor ${v} is not in the roster`)
    if (!survivors.has(id)) throw new AccessDeniedError(`consistency check: refused, the survivor list leaves out this client (${id}), which sent its masked input`)
    const t = (params as GraphParameters).threshold
    const alive = [...held.keys()].filter(v => survivors.has(v)).length
    if (alive < t) throw new AccessDeniedError(`consistency check: refused, only ${alive} of the neighbours this client masked with survive, fewer than the threshold ${t}`)
    const digest = survivorsDigest(request.survivors)
    const transcript = consistencyTranscript(roundId, digest, id, (c as { publicKey: Uint8Array }).publicKey, (s as { publicKey: Uint8Array }).publicKey)
    view = { survivors, digest }
    stage = 'unmask'
    return { type: 'secagg/signature', roundId, from: id, signature: encodeBytes(sign(transcript, options.identity.secretKey)) }
  }

  async function unmask (value: unknown): Promise<UnmaskMessage> {
    expect('unmask', 'unmask request')
    const request = parseMessage(unmaskRequestSchema, value, 'unmask request')
    if (request.roundId !== roundId) throw new InvalidInputError(`unmask request: for round ${request.roundId}, this is round ${roundId}`)
    if (request.to !== id) throw new InvalidInputError(`unmask request: addressed to ${request.to}, this client is ${id}`)
    const signed = view as { survivors: Set<string>, digest: Uint8Array }
    const signers = new Set<string>()
    for (const entry of request.signatures) {
      if (signers.has(entry.from)) throw new InvalidInputError(`unmask request: two signatures of ${entry.from}`)
      if (!neighbourIds.has(entry.from)) throw new InvalidInputError(`unmask request: a signature of ${entry.from}, who is not a neighbour`)
      // Only neighbours whose shares decrypted: their keys in the roster are then the ones they
      // really advertised in this run, so their signatures cannot come from an earlier run.
      if (!held.has(entry.from)) throw new AccessDeniedError(`unmask request: refused, a signature of ${entry.from}, whose shares this client does not hold`)
      if (!signed.survivors.has(entry.from)) throw new AccessDeniedError(`unmask request: refused, ${entry.from} signed but is not on the survivor list this client signed`)
      signers.add(entry.from)
    }
    const t = (params as GraphParameters).threshold
    if (signers.size < t) throw new AccessDeniedError(`unmask request: refused, only ${signers.size} neighbours signed the survivor list, fewer than the threshold ${t}`)
    return await step(async () => {
      const ops = await curves()
      const checks = await Promise.all(request.signatures.map(async entry => {
        const key = options.identityKeyOf(entry.from)
        const keys = neighbourKeys.get(entry.from) as ClientKeys
        const transcript = consistencyTranscript(roundId, signed.digest, entry.from, keys.cPublicKey, keys.sPublicKey)
        return key !== undefined && await ops.verify(decodeBase64(entry.signature, `signature of ${entry.from}`, { bytes: SIGNATURE_BYTES }), transcript, key)
      }))
      const bad = request.signatures.filter((_, i) => checks[i] !== true).map(e => e.from)
      // A neighbour that signed another list (or nothing) means the server told it another story.
      if (bad.length > 0) throw new IntegrityError(`unmask request: refused, the signatures of [${bad.join(', ')}] are not over the survivor list this client signed`)
      const owners = [...held.keys()].sort()
      const message: UnmaskMessage = {
        type: 'secagg/unmask',
        roundId,
        from: id,
        selfMaskShares: owners.filter(v => signed.survivors.has(v)).map(v => ({ owner: v, share: encodeBytes((held.get(v) as HeldShares).b) })),
        keyShares: owners.filter(v => !signed.survivors.has(v)).map(v => ({ owner: v, share: encodeBytes((held.get(v) as HeldShares).s) }))
      }
      for (const h of held.values()) { h.b.fill(0); h.s.fill(0) }
      held = new Map()
      stage = 'done'
      return message
    })
  }

  function wipe (): void {
    for (const pair of [c, s]) pair?.secretKey.fill(0)
    b?.fill(0)
    for (const n of neighbours.values()) { n.shareKey.fill(0); n.maskSeed.fill(0) }
    for (const h of held.values()) { h.b.fill(0); h.s.fill(0) }
    c = s = b = undefined
    report = undefined
    neighbours = new Map()
    held = new Map()
    stage = 'done'
  }

  return {
    get stage () { return stage },
    get parameters () { return params },
    advertise,
    shareKeys,
    maskedInput,
    consistencyCheck,
    unmask,
    skipped: () => report,
    wipe
  }
}
