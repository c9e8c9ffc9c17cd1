/**
 * Secure mode `paillier` on the coordinator (cross-silo: clients never talk to each other).
 * Clients encrypt their packed fixed-point vectors under the decryptor's key; the coordinator
 * checks each upload's shape and ciphertext ranges, keeps them, and hands all of them to the
 * decryptor (a separate process holding the private key), which sums and decrypts only the sum,
 * once per round. The coordinator never holds a key that opens an individual update.
 *
 * The decryptor answers the same request again with the same sum (from the decryption still
 * running, or from its record), so an answer lost on the way (a connection cut, a restart, a
 * busy answer) is asked for again within the round's deadline, never decrypted twice.
 */
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { AccessDeniedError, BusyError, InvalidConfigError, InvalidInputError, ServiceFailedError, TimeoutError, isUnreachable } from '../../../shared/errors/errors.ts'
import { DECRYPTOR_TOKEN_ENV } from '../../decryptor/constants.ts'
import { sleep } from '../../../shared/load/deadline.ts'
import { busyWaiter } from '../../../shared/load/retry.ts'
import { fromBase64 } from '../../../shared/crypto/bytes.ts'
import { decryptorClient, type DecryptorClient, type DecryptorClientOptions, type RoundContributions } from '../../../aggregation/paillier/decryptor-client.ts'
import { DEFAULT_DECRYPT_TIMEOUT_MS } from '../../../aggregation/paillier/constants.ts'
import { describeKey, readKeyInfo } from '../../../aggregation/paillier/key-info.ts'
import { paillierKeyInfoSchema } from '../../../aggregation/paillier/schemas.ts'
import { ciphertextCount } from '../../../aggregation/paillier/layout.ts'
import { ciphertextWidth, decodeCiphertexts } from '../../../aggregation/paillier/wire.ts'
import type { SecureRoundServer } from './types.ts'

/**
 * Time the decryptor gets per ciphertext of the sum, on top of the default deadline: a 2048-bit
 * decryption takes ≈ 12 ms here, so a round of 25k ciphertexts (≈ 1.4 M parameters) would
 * outlive a fixed 300 s deadline, and a caller that gives up loses the round's one decryption.
 */
const DECRYPT_MS_PER_CIPHERTEXT = 50
/**
 * Requests, at most, that the decryptor answers with a 5xx of its own (its code failing, not down):
 * such a failure is asked again a few times, not for the whole deadline (review 50b: 26 minutes
 * and ~100 re-sends of a large round's ciphertexts against a decryptor failing each request).
 */
const DECRYPT_FAILED_ATTEMPTS = 5
/** Wait before asking an unreachable decryptor again, doubled after each failure up to DECRYPT_RETRY_MAX_MS. */
const DECRYPT_RETRY_MS = 1_000
const DECRYPT_RETRY_MAX_MS = 15_000

type DecryptorAccess = Pick<DecryptorClientOptions, 'baseUrl' | 'token'>

/** The decryptor's key as a round offer carries it (clients re-derive and may pin it). */
export async function paillierOffer (decryptor: DecryptorAccess): Promise<NonNullable<RoundConfig['paillier']>> {
  const key = await decryptorClient(decryptor).key()
  return await describeKey(key.publicKey, key.layout, key.minClients)
}

/**
 * The round's sum, asked for again (the same request) while the decryptor cannot be reached or
 * its answer is cut off, until one deadline of `timeoutMs`. Review 37a: the decryptor's socket
 * closed under a long decryption, the round failed on the first UnavailableError, and the sum
 * the decryptor went on to keep was never asked for. Review 49f: five requests over 15 s failed
 * the round across a decryptor's restart, and every client that had uploaded lost its update
 * for that base version (one per base version). A busy answer (its slots hold other rounds'
 * decryptions, which may run for minutes) is waited out as its Retry-After asks.
 */
async function decryptAsking (decryptor: DecryptorClient, request: RoundContributions, timeoutMs: number, signal: AbortSignal, retryMs = DECRYPT_RETRY_MS): Promise<Uint32Array> {
  const deadline = AbortSignal.timeout(timeoutMs)
  const either = AbortSignal.any([signal, deadline])
  // The caller's abort is its own; the deadline's is a TimeoutError naming the round.
  const cutShort = (requests: number, err: unknown): unknown => signal.aborted
    ? signal.reason
    : new TimeoutError(`round ${request.roundId}: no sum from the decryptor within ${timeoutMs} ms (${requests} request(s); the last: ${err instanceof Error ? err.message.slice(0, 200) : String(err)})`, { cause: err })
  const waitBusy = busyWaiter(timeoutMs)
  let failures = 0
  let failed = 0
  for (let requests = 1; ; requests++) {
    try {
      return await decryptor.decrypt(request, either)
    } catch (err) {
      if (either.aborted) throw cutShort(requests, err)
      if (err instanceof BusyError && await waitBusy(err.retryAfterMs, either).catch(() => { throw cutShort(requests, err) })) continue
      if (!isUnreachable(err) || (err instanceof ServiceFailedError && ++failed >= DECRYPT_FAILED_ATTEMPTS)) throw err
      failures++
      await sleep(Math.min(DECRYPT_RETRY_MAX_MS, retryMs * 2 ** (failures - 1)), either).catch(() => { throw cutShort(requests, err) })
    }
  }
}

/**
 * The server of a Paillier round. It asks the decryptor for its key first, so that a round whose
 * key the decryptor no longer holds fails before anyone trains; `offline` leaves that to the sum
 * (whose request names the key, which the decryptor checks: 409 KeyMismatch), for a round resumed
 * at a start that must not wait on the decryptor (review 47b: such a round was failed instead).
 * `retryMs`: the first wait before an unreachable decryptor is asked again (tests shorten it).
 */
export async function paillierServer (config: RoundConfig, access: DecryptorAccess, { offline = false, retryMs }: { offline?: boolean, retryMs?: number } = {}): Promise<SecureRoundServer> {
  const key = await readKeyInfo(paillierKeyInfoSchema.parse(config.paillier))
  const count = ciphertextCount(key.layout, config.vectorLength)
  const decryptTimeoutMs = DEFAULT_DECRYPT_TIMEOUT_MS + count * DECRYPT_MS_PER_CIPHERTEXT
  const decryptor = decryptorClient({ ...access, decryptTimeoutMs })
  const checkKey = async (signal?: AbortSignal): Promise<void> => {
    const live = await decryptor.key(signal)
    if (live.keyId !== key.keyId) throw new InvalidInputError(`round ${config.id} was offered under Paillier key ${key.keyId}, the decryptor now holds ${live.keyId}`)
    // The sum's request names the layout too, and the decryptor refuses another (review 49a).
    if (live.layout.maxClients !== key.layout.maxClients) throw new InvalidInputError(`round ${config.id} was offered with a packing layout for ${key.layout.maxClients} clients, the decryptor now packs for ${live.layout.maxClients}`)
    // The key is public; the sum is asked with this coordinator's token. One the decryptor refuses
    // let every client train and upload, spending its base version, for a round that failed at
    // the sum (review 54b): asked now, before anyone trains. Not "unreachable": waiting won't help.
    await decryptor.access(signal).catch((err: unknown) => {
      if (!(err instanceof AccessDeniedError)) throw err
      throw new InvalidConfigError(`round ${config.id}: the decryptor refuses this coordinator's token (${err.message}); start the coordinator with the token the decryptor was started with (--decryptor-token or ${DECRYPTOR_TOKEN_ENV})`, { cause: err })
    })
  }
  if (!offline) await checkKey()
  return {
    mode: 'paillier',
    uploadBytes: count * ciphertextWidth(key.publicKey),
    setup: async accepted => accepted,
    message () { throw new InvalidInputError('Paillier rounds have no secure-aggregation messages') },
    checkUpload (_clientId, payload) {
      decodeCiphertexts(payload, key.publicKey, count, 'upload')
    },
    async sum (uploads, io) {
      // Each upload goes with its client's signature: the decryptor opens it only for this round.
      const contributions = [...uploads].map(([clientId, u]) => ({ clientId, ciphertexts: u.payload, signature: fromBase64(u.signature) }))
      return await decryptAsking(decryptor, { roundId: config.id, model: config.model, length: config.vectorLength, baseVersion: config.baseVersion, keyId: key.keyId, maxClients: key.layout.maxClients, contributions }, decryptTimeoutMs, io.signal, retryMs)
    },
    drop () {},
    snapshot: () => null,
    needsClients: () => false,
    // Built offline, the key is checked once the round runs: uploads under a key the decryptor
    // no longer holds would each spend their client's base version for nothing (review 48f).
    ...(offline ? { ready: checkKey } : {})
  }
}
