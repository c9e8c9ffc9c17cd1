/**
 * Client of the ledger's HTTP API (coordinator/http/ledger-routes.ts), over fetch, for Node and
 * browsers: every answer schema-checked, hashes decoded; verification is the caller's (verify.ts).
 */
import { decodeBase64 } from '../crypto/bytes.ts'
import { AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, type BlockfedError } from '../errors/errors.ts'
import { jsonCall, textCall } from '../client/json-call.ts'
import { channelsResponseSchema, consistencyResponseSchema, entriesResponseSchema, entryResponseSchema, inclusionResponseSchema, type Channels } from './api.ts'

export interface LedgerClient {
  /** The latest checkpoint note with its cosignatures, as served. */
  checkpoint: (signal?: AbortSignal) => Promise<string>
  key: (signal?: AbortSignal) => Promise<string>
  entry: (index: number, signal?: AbortSignal) => Promise<{ index: number, leaf: Uint8Array }>
  /** Leaf bytes of entries from `from` on, below `to`: at least one, perhaps fewer than asked (a page). */
  entries: (from: number, to: number, signal?: AbortSignal) => Promise<Uint8Array[]>
  inclusion: (index: number, size: number, signal?: AbortSignal) => Promise<Uint8Array[]>
  consistency: (from: number, to: number, signal?: AbortSignal) => Promise<Uint8Array[]>
  channels: (model: string, signal?: AbortSignal) => Promise<Channels>
}

// 502 with the coordinator's IntegrityError body: the log found its own storage inconsistent
// (e.g. an entry that is not canonical JSON) — never "unavailable", so a client does not fall
// back as if offline. A proxy's 502 Bad Gateway is an outage (json-call.ts).
const ERRORS: Record<number, new (message: string) => BlockfedError> = { 400: InvalidInputError, 403: AccessDeniedError, 404: NotFoundError, 502: IntegrityError }
/** A checkpoint note with a few dozen cosignatures is a few KiB; anything far larger is not one. */
const MAX_NOTE_BYTES = 64 << 10

export function ledgerClient (options: { baseUrl: string, timeoutMs?: number }): LedgerClient {
  const timeoutMs = options.timeoutMs ?? 30_000
  const json = jsonCall({ baseUrl: options.baseUrl, service: 'ledger', errors: ERRORS })
  // Bounded as the bytes arrive: a note far larger than one can be is cut off, not held.
  const text = textCall({ baseUrl: options.baseUrl, service: 'ledger', errors: ERRORS, maxBytes: MAX_NOTE_BYTES })
  return {
    checkpoint: async signal => await text('/ledger/checkpoint', {}, timeoutMs, signal),
    key: async signal => (await text('/ledger/key', {}, timeoutMs, signal)).trim(),
    async entry (index, signal) {
      const answer = await json(`/ledger/entries/${index}`, entryResponseSchema, {}, timeoutMs, signal)
      return { index: answer.index, leaf: decodeBase64(answer.leaf, `ledger entry ${index}: leaf`, { error: IntegrityError }) }
    },
    async entries (from, to, signal) {
      const answer = await json(`/ledger/entries?from=${from}&to=${to}`, entriesResponseSchema, {}, timeoutMs, signal)
      if (answer.from !== from || answer.leaves.length > to - from) {
        throw new IntegrityError(`ledger entries ${from}–${to - 1}: the answer holds ${answer.leaves.length} entries from ${answer.from}`)
      }
      return answer.leaves.map((l, i) => decodeBase64(l, `ledger entry ${from + i}: leaf`, { error: IntegrityError }))
    },
    inclusion: async (index, size, signal) =>
      (await json(`/ledger/proof/inclusion?index=${index}&size=${size}`, inclusionResponseSchema, {}, timeoutMs, signal)).hashes.map((h, i) => decodeBase64(h, `inclusion proof hash ${i}`, { error: IntegrityError })),
    consistency: async (from, to, signal) =>
      (await json(`/ledger/proof/consistency?from=${from}&to=${to}`, consistencyResponseSchema, {}, timeoutMs, signal)).hashes.map((h, i) => decodeBase64(h, `consistency proof hash ${i}`, { error: IntegrityError })),
    channels: async (model, signal) => await json(`/v1/models/${encodeURIComponent(model)}/channels`, channelsResponseSchema, {}, timeoutMs, signal)
  }
}
