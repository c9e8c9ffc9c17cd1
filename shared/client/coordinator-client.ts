/**
 * Typed client for the coordinator's HTTP API, over fetch (Node and browsers). Every call has a
 * deadline, every answer is parsed by the same schema the server declares, and an error answer
 * becomes the matching typed error carrying the server's message.
 */
import type { z } from 'zod'
import type { ModelFile } from '../model/types.ts'
import { AccessDeniedError, ConflictError, IntegrityError, InvalidInputError, NotFoundError, TooLargeError, UnauthenticatedError, type BlockfedError } from '../errors/errors.ts'
import { toBase64 } from '../crypto/bytes.ts'
import { unwrapKeys, type WrapKeyPair } from '../crypto/wrap.ts'
import { jsonCall } from './json-call.ts'
import { channelSetResponseSchema, channelsResponseSchema, type ChannelName, type Channels } from '../ledger/api.ts'
import { roundListSchema, roundStartedSchema, roundSummarySchema, type RoundListEntry, type RoundStatus } from '../rounds/api.ts'
import type { RoundRequestInput } from '../rounds/config.ts'
import {
  coordinatorInfoSchema, ingestResultSchema, keyResponseSchema, modelListSchema,
  tokenListSchema, tokenRequestSchema, tokenResponseSchema, tokenRevokedSchema, verdictListSchema, verdictRecordedSchema, verdictRequestSchema, versionListSchema, type CoordinatorInfo, type IngestResult, type ModelSummary,
  type TokenInfo, type TokenRevoked, type VersionSummary
} from './api-schemas.ts'
import { accessQuery } from './access-pairs.ts'

export interface CoordinatorClientOptions {
  baseUrl: string
  token?: string
  timeoutMs?: number
}

export interface CoordinatorClient {
  readonly baseUrl: string
  info: (signal?: AbortSignal) => Promise<CoordinatorInfo>
  models: (signal?: AbortSignal) => Promise<ModelSummary[]>
  versions: (model: string, signal?: AbortSignal) => Promise<VersionSummary[]>
  /** The signed manifest as served; the caller verifies it (see manifest/sign.ts). */
  manifest: (model: string, version: number | 'latest', signal?: AbortSignal) => Promise<unknown>
  /** Data keys this client's token grants, unwrapped with `wrapKey`: keyId → key. */
  keys: (model: string, version: number, wrapKey: WrapKeyPair, signal?: AbortSignal) => Promise<{ keys: Map<string, Uint8Array>, denied: string[] }>
  /** Uploads and ingests; `onProgress` (bytes sent so far, total) streams the body to report it. */
  ingest: (model: string, files: ModelFile[], options?: { signal?: AbortSignal, onProgress?: (sent: number, total: number) => void, access?: Readonly<Record<string, string>> }) => Promise<IngestResult>
  /** Makes a token of `role` (an admin token) and returns it; `label` says whose it is in the token list. */
  createToken: (role: string, signal?: AbortSignal, label?: string) => Promise<string>
  /** Makes a token as asked (role, label, lifetime; an admin token): the token, its id and when it expires. */
  issueToken: (request: z.input<typeof tokenRequestSchema>, signal?: AbortSignal) => Promise<z.infer<typeof tokenResponseSchema>>
  /** Every token by id and role, revoked ones too (an admin token). */
  tokens: (signal?: AbortSignal) => Promise<TokenInfo[]>
  /** Revokes a token by its id (an admin token): it opens nothing from then on. */
  revokeToken: (id: string, signal?: AbortSignal) => Promise<TokenRevoked>
  /** Points a release channel at an anchored version (a token that may ingest). */
  setChannel: (model: string, channel: ChannelName, request: { version: number, rollout?: number }, signal?: AbortSignal) => Promise<z.infer<typeof channelSetResponseSchema>>
  /** Clears a release channel (a token that may ingest): stable follows the latest again, the canary ends. */
  clearChannel: (model: string, channel: ChannelName, signal?: AbortSignal) => Promise<Channels>
  /** Starts a training round now (a token whose role grants `rounds`); it runs on without the caller. */
  startRound: (request: RoundRequestInput, signal?: AbortSignal) => Promise<{ id: string }>
  /** A round's state, outcome, metrics and clients. */
  round: (id: string, signal?: AbortSignal) => Promise<RoundStatus>
  /** A model's latest rounds, newest first (at most `limit`, default 50). */
  rounds: (model: string, limit?: number, signal?: AbortSignal) => Promise<RoundListEntry[]>
  /** Reports this runtime's verdict on a version from its own data (rejected, or rolled back from). */
  reportVerdict: (model: string, version: number, verdict: z.input<typeof verdictRequestSchema>, signal?: AbortSignal) => Promise<void>
  /** How many runtimes rejected, or rolled back from, each version (an operator's token). */
  verdicts: (model: string, signal?: AbortSignal) => Promise<z.infer<typeof verdictListSchema>['versions']>
}

const ERRORS: Record<number, new (message: string) => BlockfedError> = {
  400: InvalidInputError, 401: UnauthenticatedError, 403: AccessDeniedError, 404: NotFoundError, 409: ConflictError, 413: TooLargeError, 422: InvalidInputError,
  // Only when the coordinator's own body names it (json-call.ts): a proxy's 502 stays "unreachable".
  502: IntegrityError
}

export function coordinatorClient (options: CoordinatorClientOptions): CoordinatorClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, '')
  const timeoutMs = options.timeoutMs ?? 30_000

  const request = jsonCall({ baseUrl, token: options.token, service: 'coordinator', errors: ERRORS })
  const call = async <T>(path: string, schema: z.ZodType<T>, init: RequestInit = {}, signal?: AbortSignal, timeout = timeoutMs): Promise<T> =>
    await request(path, schema, init, timeout, signal)

  const json = (body: unknown): RequestInit => ({ method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
  const passthrough = { safeParse: (v: unknown) => ({ success: true as const, data: v }) } as unknown as z.ZodType<unknown>

  const issueToken = async (request: z.input<typeof tokenRequestSchema>, signal?: AbortSignal): Promise<z.infer<typeof tokenResponseSchema>> =>
    await call('/v1/tokens', tokenResponseSchema, json(request), signal)
  return {
    baseUrl,
    info: async signal => await call('/v1/coordinator', coordinatorInfoSchema, {}, signal),
    models: async signal => (await call('/v1/models', modelListSchema, {}, signal)).models,
    versions: async (model, signal) => (await call(`/v1/models/${encodeURIComponent(model)}/versions`, versionListSchema, {}, signal)).versions,
    manifest: async (model, version, signal) => await call(`/v1/models/${encodeURIComponent(model)}/versions/${version}/manifest`, passthrough, {}, signal),
    async keys (model, version, wrapKey, signal) {
      const answer = await call(`/v1/models/${encodeURIComponent(model)}/versions/${version}/keys`, keyResponseSchema,
        json({ publicKey: toBase64(wrapKey.publicKey) }), signal)
      const keys = new Map<string, Uint8Array>()
      const unwrapped = unwrapKeys(wrapKey, answer.ephemeralPublicKey, answer.keys.map(k => ({ wrapped: k.wrapped, aad: k.blockCid })))
      answer.keys.forEach((k, i) => keys.set(k.keyId, unwrapped[i] as Uint8Array))
      return { keys, denied: answer.denied }
    },
    async ingest (model, files, { signal, onProgress, access } = {}) {
      const form = new FormData()
      for (const f of files) form.append('file', new Blob([f.bytes as Uint8Array<ArrayBuffer>]), f.path)
      let init: RequestInit = { method: 'POST', body: form }
      if (onProgress !== undefined) {
        // Serialise the multipart body once and count bytes as fetch pulls them.
        const encoded = new Request('http://localhost/', init)
        const total = files.reduce((n, f) => n + f.bytes.length, 0)
        let sent = 0
        const counted = encoded.body?.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
          transform (chunk, out) { sent += chunk.length; onProgress(Math.min(sent, total), total); out.enqueue(chunk) }
        }))
        init = { method: 'POST', body: counted, headers: { 'content-type': encoded.headers.get('content-type') ?? '' }, duplex: 'half' } as RequestInit
      }
      // Uploads of large models take longer than a metadata call.
      return await call(`/v1/models/${encodeURIComponent(model)}/ingest${accessQuery(access)}`, ingestResultSchema, init, signal, Math.max(timeoutMs, 600_000))
    },
    createToken: async (role, signal, label) => (await issueToken({ role, ...(label === undefined ? {} : { label }) }, signal)).token,
    issueToken,
    tokens: async signal => (await call('/v1/tokens', tokenListSchema, {}, signal)).tokens,
    revokeToken: async (id, signal) => await call(`/v1/tokens/${encodeURIComponent(id)}`, tokenRevokedSchema, { method: 'DELETE' }, signal),
    setChannel: async (model, channel, body, signal) =>
      await call(`/v1/models/${encodeURIComponent(model)}/channels/${channel}`, channelSetResponseSchema, { ...json(body), method: 'PUT' }, signal),
    clearChannel: async (model, channel, signal) =>
      await call(`/v1/models/${encodeURIComponent(model)}/channels/${channel}`, channelsResponseSchema, { method: 'DELETE' }, signal),
    startRound: async (body, signal) => ({ id: (await call('/v1/rounds', roundStartedSchema, json(body), signal)).id }),
    round: async (id, signal) => await call(`/v1/rounds/${encodeURIComponent(id)}`, roundSummarySchema, {}, signal),
    rounds: async (model, limit = 50, signal) => (await call(`/v1/models/${encodeURIComponent(model)}/rounds?limit=${limit}`, roundListSchema, {}, signal)).rounds,
    async reportVerdict (model, version, verdict, signal) {
      await call(`/v1/models/${encodeURIComponent(model)}/versions/${version}/verdicts`, verdictRecordedSchema, json(verdict), signal)
    },
    verdicts: async (model, signal) => (await call(`/v1/models/${encodeURIComponent(model)}/verdicts`, verdictListSchema, {}, signal)).versions
  }
}
