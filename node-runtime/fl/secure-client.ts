/**
 * The runtime's side of the three secure-aggregation modes, behind one interface: `none` sends
 * the fixed-point vector as is; `paillier` encrypts it under the decryptor's key; `masking`
 * runs the SecAgg+ client (aggregation/secagg).
 */
import { minUploadsOf, type RoundConfig } from '../../shared/rounds/config.ts'
import type { SigningKeyPair } from '../../shared/crypto/sign.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import { precomputeRandomness, type RandomnessMethod, type RandomnessPool } from '../../aggregation/paillier/randomness.ts'
import { readKeyInfo, type DecryptorKey } from '../../aggregation/paillier/key-info.ts'
import { keyIdSchema, paillierKeyInfoSchema } from '../../aggregation/paillier/schemas.ts'
import { ciphertextCount } from '../../aggregation/paillier/layout.ts'
import { encryptUpdate } from '../../aggregation/paillier/aggregate.ts'
import { createMaskingClient } from '../../aggregation/secagg/client.ts'
import { DEFAULT_ADVERSARIAL_RATE } from '../../aggregation/secagg/constants.ts'
import { graphConfig } from '../../shared/rounds/secagg-graph.ts'
import { fromHex } from '../../shared/crypto/bytes.ts'

export interface SecureRoundClient {
  readonly encoding: 'ring-u32le' | 'paillier'
  /** Why this client will not take part, known from the offer alone: the offer is declined with it. */
  readonly refusal?: string
  /** Right after accepting the offer (masking: advertise keys). */
  begin: () => Promise<void>
  /** A `secagg` payload from the coordinator. */
  message: (payload: unknown) => Promise<void>
  /** The encoded update → the bytes to upload. */
  protect: (encoded: Uint32Array, signal: AbortSignal) => Promise<Uint8Array>
  /**
   * A `secagg` payload to send right before the upload, on the connection that carries it
   * (masking: the neighbours whose shares did not open). Sent apart, it was lost while the
   * connection was down and the upload went later without it: a wrong sum (review 47e).
   */
  beforeUpload?: () => unknown
  /** Forget every secret of the round. */
  dispose: () => void
}

export interface SecureClientDeps {
  config: RoundConfig
  clientId: string
  identity: SigningKeyPair
  send: (payload: unknown) => void
}

export function plainClient (): SecureRoundClient {
  return {
    encoding: 'ring-u32le',
    begin: async () => {},
    message: async () => { throw new InvalidInputError('mode none has no secure-aggregation messages') },
    protect: async encoded => new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength),
    dispose: () => {}
  }
}

export interface SecureClientsOptions {
  /**
   * The Paillier decryptor's key id (hex SHA-256 of n; `blockfed decryptor` prints it). Paillier
   * offers are declined without it, and under any other key: the key comes in the coordinator's
   * offer, and a coordinator offering a key of its own decrypts this runtime's update alone
   * (review 47c), which the decryptor's round rules never see.
   */
  paillierKeyId?: string
  /**
   * How Paillier randomness r^n is precomputed: 'plain' (random r; DCR only) or 'short-exponent'
   * (Damgård–Jurik–Nielsen; ~40× faster offline, one more assumption — aggregation/paillier/randomness.ts).
   */
  paillierRandomness?: RandomnessMethod
  /**
   * Masking: the fewest clients a roster must name for this runtime to share its keys, whatever
   * the offer says. The offer's minUploads (and its client list) are the coordinator's own word,
   * so they cannot stop a coordinator that sends this client a roster of itself and two colluders
   * (t = 2: the colluders rebuild both b and s^SK). The larger of this and the offer's is used.
   */
  maskingMinRoster?: number
  /**
   * Masking: the smallest share of colluding clients this runtime lets a round assume (γ, the
   * offer's `secure.adversarialRate`). The threshold is sized to it, and the offer is the
   * coordinator's word: at γ = 0 two colluders next to this client rebuild its input. Offers
   * assuming fewer are declined. Default DEFAULT_ADVERSARIAL_RATE (0.05).
   */
  maskingMinAdversarialRate?: number
}

/** One precompute of Paillier randomness: `count` values, stopped by `controller`. */
interface PoolEntry {
  count: number
  pool: Promise<RandomnessPool>
  controller: AbortController
  done: boolean
}

/** Makes each round's secure-aggregation client; `stop` ends the offline work kept between rounds. */
export type SecureClientFactory = ((deps: SecureClientDeps) => SecureRoundClient) & { stop?: () => void }

/**
 * The runtime's secure-aggregation clients, one per round, by mode. Paillier randomness is
 * precomputed offline: a pool for the next round is filled in the background as soon as a round
 * has used one, so the online cost of encryption is one multiplication per ciphertext.
 *
 * The pool's size comes from the offer (the coordinator's word, checked only after training),
 * so one pool is kept per key: a pool of another size replaces it and stops its precompute, a
 * round that ends before using the pool it started stops it, and `stop()` stops them all. Before,
 * every offered size started a precompute nothing stopped and kept its pool for good.
 */
export function secureClients (options: SecureClientsOptions = {}): SecureClientFactory {
  const pinned = options.paillierKeyId?.toLowerCase()
  if (pinned !== undefined && !keyIdSchema.safeParse(pinned).success) {
    throw new InvalidInputError(`secureClients paillierKeyId: expected the decryptor's key id, 64 hex digits, got "${String(options.paillierKeyId).slice(0, 80)}"`)
  }
  const rate = options.maskingMinAdversarialRate
  if (rate !== undefined && !(typeof rate === 'number' && rate >= 0 && rate < 1)) {
    throw new InvalidInputError(`secureClients maskingMinAdversarialRate: expected a number in [0, 1), got ${String(rate)}`)
  }
  /** By key ID: the one pool made ahead for that key, not yet taken by a round. */
  const pools = new Map<string, PoolEntry>()
  const method = options.paillierRandomness ?? 'short-exponent'
  const drop = (entry: PoolEntry): void => {
    entry.controller.abort(new Error('Paillier randomness no longer needed'))
    void entry.pool.then(pool => pool.destroy(), () => {})
  }
  /** Set by stop(): nothing is made ahead after it (a begin or protect still under way may resume later). */
  let stopped = false
  const prepare = (key: DecryptorKey, count: number): PoolEntry => {
    const kept = pools.get(key.keyId)
    if (kept?.count === count) return kept
    if (kept !== undefined) drop(kept)
    const controller = new AbortController()
    const entry: PoolEntry = { count, controller, done: false, pool: precomputeRandomness(key.publicKey, count, { method, signal: controller.signal }) }
    entry.pool.then(() => { entry.done = true }, () => { if (pools.get(key.keyId) === entry) pools.delete(key.keyId) })
    // After stop, made for the one protect that asks (it is not kept for rounds to come).
    if (!stopped) pools.set(key.keyId, entry)
    return entry
  }
  const factory = (deps: SecureClientDeps): SecureRoundClient => {
    switch (deps.config.secure.mode) {
      case 'none': return plainClient()
      case 'paillier': {
        let key: Promise<DecryptorKey> | undefined
        /** The pool this round's begin started, and whether the round is over. */
        let started: { keyId: string, entry: PoolEntry } | undefined
        let disposed = false
        // Known from the offer, so declined at once (readKeyInfo checks the advertised id against n).
        const offered = (deps.config.paillier as { keyId?: unknown } | undefined)?.keyId
        const refusal = pinned === undefined
          ? 'the offer asks for Paillier encryption, and this runtime has pinned no decryptor key (secureClients paillierKeyId): the offered key could be the coordinator\'s own'
          : offered !== pinned
            ? `the offer's Paillier key ${String(offered).slice(0, 64)} is not the pinned decryptor key ${pinned} (secureClients paillierKeyId)`
            : undefined
        // Refused here too, for a caller that does not look at `refusal` first.
        const keyOf = async (): Promise<DecryptorKey> => {
          if (refusal !== undefined) throw new InvalidInputError(refusal)
          return await (key ??= readKeyInfo(paillierKeyInfoSchema.parse(deps.config.paillier), pinned))
        }
        return {
          encoding: 'paillier',
          ...(refusal === undefined ? {} : { refusal }),
          async begin () {
            const k = await keyOf()
            if (deps.config.fixedPoint.clients > k.layout.maxClients) throw new InvalidInputError(`round ${deps.config.id}: ${deps.config.fixedPoint.clients} clients exceed the Paillier layout's ${k.layout.maxClients}`)
            // The round may have ended (disposed, or the runtime stopped) while the key was read.
            if (disposed || stopped) return
            started = { keyId: k.keyId, entry: prepare(k, ciphertextCount(k.layout, deps.config.vectorLength)) }
          },
          message: async () => { throw new InvalidInputError('Paillier rounds have no secure-aggregation messages') },
          async protect (encoded, signal) {
            const k = await keyOf()
            const count = ciphertextCount(k.layout, encoded.length)
            // Taken out before the wait: no other round can be handed the same values.
            const entry = prepare(k, count)
            pools.delete(k.keyId)
            const stopOnAbort = (): void => drop(entry)
            signal.addEventListener('abort', stopOnAbort, { once: true })
            try {
              const pool = await entry.pool
              const bytes = encryptUpdate(encoded, k.layout, pool)
              pool.destroy()
              // Offline phase for the next round, in the background.
              if (!stopped) prepare(k, count).pool.catch(() => undefined)
              return bytes
            } finally {
              signal.removeEventListener('abort', stopOnAbort)
            }
          },
          dispose () {
            disposed = true
            // A round that ended before protect: a finished pool is kept for the next round, one
            // still being made (sized by this offer) is stopped. Protect took it out of `pools`.
            if (started === undefined || started.entry.done || pools.get(started.keyId) !== started.entry) return
            pools.delete(started.keyId)
            drop(started.entry)
          }
        }
      }
      case 'masking': return maskingClient(deps, options.maskingMinRoster, options.maskingMinAdversarialRate)
    }
  }
  return Object.assign(factory, {
    stop () {
      stopped = true
      for (const entry of pools.values()) drop(entry)
      pools.clear()
    }
  })
}

/**
 * SecAgg+ on the runtime: advertise keys on accepting, share keys when the roster comes, keep
 * the inbox, mask the encoded update with it, sign the survivor list, and answer the unmask
 * request — which the masking client itself refuses unless t neighbours signed the same list.
 */
function maskingClient (deps: SecureClientDeps, localMinRoster = 2, minAdversarialRate = DEFAULT_ADVERSARIAL_RATE): SecureRoundClient {
  const { config } = deps
  const selected = new Set(config.clients)
  const assumed = config.secure.adversarialRate ?? DEFAULT_ADVERSARIAL_RATE
  // Known from the offer, so declined at once: refused later, this client would have held the
  // round up until its setup deadline. The roster can only be a subset of the offer's clients.
  const refusal = config.clients.length < localMinRoster
    ? `the offer names ${config.clients.length} clients, and this runtime shares masking keys only within rosters of at least ${localMinRoster} (maskingMinRoster)`
    : assumed < minAdversarialRate
      ? `the offer sizes its masking threshold for a share of ${assumed} colluding clients, and this runtime takes part only if at least ${minAdversarialRate} is assumed (maskingMinAdversarialRate)`
      : undefined
  const client = createMaskingClient({
    roundId: config.id,
    id: deps.clientId,
    identity: deps.identity,
    identityKeyOf: id => selected.has(id) ? fromHex(id) : undefined,
    vectorLength: config.vectorLength,
    graph: graphConfig(config),
    seed: fromHex(config.seed),
    // minUploads may be 1 in a valid offer; a roster is at least 2 (the client refuses less).
    minRoster: Math.max(2, localMinRoster, minUploadsOf(config))
  })
  let resolveInbox: (inbox: unknown) => void = () => {}
  const inbox = new Promise<unknown>(resolve => { resolveInbox = resolve })
  return {
    encoding: 'ring-u32le',
    ...(refusal === undefined ? {} : { refusal }),
    begin: async () => { deps.send(await client.advertise()) },
    async message (payload) {
      const type = (payload as { type?: unknown } | null)?.type
      if (type === 'secagg/roster') deps.send(await client.shareKeys(payload))
      else if (type === 'secagg/inbox') resolveInbox(payload)
      else if (type === 'secagg/consistency') deps.send(client.consistencyCheck(payload))
      else if (type === 'secagg/unmask-request') deps.send(await client.unmask(payload))
      else throw new InvalidInputError(`secagg message: unknown type ${JSON.stringify(type)}`)
    },
    async protect (encoded, signal) {
      const box = await Promise.race([inbox, new Promise<never>((_resolve, reject) => {
        if (signal.aborted) reject(signal.reason as Error)
        signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })
      })])
      const y = await client.maskedInput(encoded, box)
      return new Uint8Array(y.buffer, y.byteOffset, y.byteLength)
    },
    beforeUpload: () => client.skipped(),
    // A round ended early leaves b, pair seeds or neighbours' shares: zeroed now, not at GC (review 47a).
    dispose: () => { client.wipe() }
  }
}
