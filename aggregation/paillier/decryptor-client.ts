/**
 * Client of the Paillier decryptor service (coordinator/decryptor), over fetch, for Node and
 * browsers. Every call has a deadline; every answer is parsed by the schema the service declares;
 * an error answer becomes the matching typed error with the service's message.
 */
import {
  AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, TooLargeError, UnauthenticatedError, type BlockfedError
} from '../../shared/errors/errors.ts'
import { fromBase64, toBase64 } from '../../shared/crypto/bytes.ts'
import { jsonCall } from '../../shared/client/json-call.ts'
import { DEFAULT_DECRYPT_TIMEOUT_MS, DEFAULT_KEY_TIMEOUT_MS } from './constants.ts'
import { KeyMismatchError, RepeatedClientError, RoundDecidedError } from './errors.ts'
import { readKeyInfo, type DecryptorKey } from './key-info.ts'
import { accessResponseSchema, decryptResponseSchema, paillierKeyInfoSchema, roundIdSchema } from './schemas.ts'
import { ringFromBytes } from './wire.ts'

export interface DecryptorClientOptions {
  baseUrl: string
  /** Bearer token, when the decryptor requires one. */
  token?: string
  /** Pins the decryptor's key: `key()` fails unless its SHA-256 fingerprint is this (hex). */
  expectedKeyId?: string
  /** Deadline of `key()`; default 10 s. */
  timeoutMs?: number
  /** Deadline of `decrypt()`; default 5 min (the decryptor sums and decrypts thousands of ciphertexts). */
  decryptTimeoutMs?: number
}

export interface Contribution {
  /** The client's Ed25519 public key, hex. */
  clientId: string
  /** Wire bytes from `encryptUpdate`. */
  ciphertexts: Uint8Array
  /** The client's upload signature (shared/rounds/messages.ts `uploadSigningBytes`), which binds the ciphertexts to the round. */
  signature: Uint8Array
}

export interface RoundContributions {
  roundId: string
  /** The model the round trained: part of what each upload signature covers. */
  model: string
  /** Ring values per update. */
  length: number
  /** The model version the round trained: part of what each upload signature covers. */
  baseVersion: number
  /** The key id the round was offered under: a decryptor holding another refuses before it claims the round. */
  keyId?: string
  /** The packing layout's client count the round was offered with: a decryptor packing otherwise refuses before it claims the round. */
  maxClients?: number
  contributions: readonly Contribution[]
}

export interface DecryptorClient {
  readonly baseUrl: string
  /** The decryptor's public key and packing layout, checked (and pinned if asked). */
  key: (signal?: AbortSignal) => Promise<DecryptorKey>
  /** Resolves if this client's token may send decrypt requests; UnauthenticatedError (an AccessDeniedError) if not. */
  access: (signal?: AbortSignal) => Promise<void>
  /** Asks for the ring sum of a round's contributions; a round is decrypted at most once. */
  decrypt: (request: RoundContributions, signal?: AbortSignal) => Promise<Uint32Array>
}

const ERRORS: Record<number, new (message: string) => BlockfedError> = {
  400: InvalidInputError, 401: UnauthenticatedError, 403: AccessDeniedError, 404: NotFoundError,
  409: RoundDecidedError, 413: TooLargeError, 502: IntegrityError
}

/**
 * @example
 * const decryptor = decryptorClient({ baseUrl: 'http://127.0.0.1:7071', expectedKeyId })
 * const { publicKey, layout } = await decryptor.key()
 * const sum = await decryptor.decrypt({ roundId: 'round-7', model: 'mnist', length, baseVersion, contributions })
 */
export function decryptorClient (options: DecryptorClientOptions): DecryptorClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, '')
  const keyTimeout = options.timeoutMs ?? DEFAULT_KEY_TIMEOUT_MS
  const decryptTimeout = options.decryptTimeoutMs ?? DEFAULT_DECRYPT_TIMEOUT_MS

  const call = jsonCall({ baseUrl, token: options.token, service: 'decryptor', errors: ERRORS, named: { RepeatedClientError, KeyMismatchError } })

  return {
    baseUrl,
    async key (signal) {
      return await readKeyInfo(await call('/v1/paillier/key', paillierKeyInfoSchema, {}, keyTimeout, signal), options.expectedKeyId)
    },
    async access (signal) {
      await call('/v1/paillier/access', accessResponseSchema, {}, keyTimeout, signal)
    },
    async decrypt ({ roundId, model, length, baseVersion, keyId, maxClients, contributions }, signal) {
      const id = roundIdSchema.safeParse(roundId)
      if (!id.success) throw new InvalidInputError(`roundId: ${id.error.issues[0]?.message ?? 'invalid'}`)
      const body = JSON.stringify({ model, length, baseVersion, keyId, maxClients, contributions: contributions.map(c => ({ clientId: c.clientId, ciphertexts: toBase64(c.ciphertexts), signature: toBase64(c.signature) })) })
      const path = `/v1/paillier/rounds/${roundId}/decrypt`
      const answer = await call(path, decryptResponseSchema, { method: 'POST', body, headers: { 'content-type': 'application/json' } }, decryptTimeout, signal)
      if (answer.roundId !== roundId || answer.length !== length || answer.clients !== contributions.length) {
        throw new IntegrityError(`POST ${path}: answer is for round ${answer.roundId} with ${answer.clients} clients and ${answer.length} values, not what was asked`)
      }
      return ringFromBytes(fromBase64(answer.sum), length, `POST ${path}: sum`)
    }
  }
}
