/**
 * A Node runtime taking part in training rounds (DESIGN.md, pipeline 5, client side): one
 * WebSocket to the coordinator, reconnecting with backoff. For each offer it accepts if it is
 * idle and holds data for the model, loads the base version through the runtime's verified load
 * pipeline, trains only the round's tensors locally (tfjs), clips and encodes the delta, protects
 * it with the round's secure-aggregation mode, signs and uploads it. Every wait is bounded by the
 * round's own deadlines; a round that overruns is abandoned, never waited on.
 */
import WebSocket from 'ws'
import type { IncomingMessage } from 'node:http'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import { z } from 'zod'
import { ROUND_PROTOCOL_VERSION, ROUNDS_SUBPROTOCOL, protocolMismatch, serverMessageSchema, parseFrame, encodeUploadFrame, uploadSigningBytes, helloSigningBytes, type ClientMessage, type ServerMessage } from '../../shared/rounds/messages.ts'
import type { FetchedModel } from '../../shared/load/fetch-model.ts'
import type { TrainingData } from '../../shared/training/data.ts'
import { trainLocal } from '../../shared/training/local-train.ts'
import { offeredMeanMix, withClassStats } from '../../shared/rounds/mean-mix-offer.ts'
import { trainableLayout } from '../../shared/rounds/trainable.ts'
import { fixedPointParams, encodeUpdate, sampleWeight, cryptoUniform } from '../../aggregation/fixed-point.ts'
import { clipL2 } from '../../aggregation/dp/clip.ts'
import { clientNoiseSigma } from '../../aggregation/dp/noise.ts'
import { checkFinite } from '../../aggregation/validate.ts'
import { minUploadsOf, roundScheduleMs, secureModeSchema, type RoundConfig } from '../../shared/rounds/config.ts'
import { sha256 } from '../../shared/crypto/hash.ts'
import { toBase64, toHex } from '../../shared/crypto/bytes.ts'
import { sign, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { AccessDeniedError, BlockfedError, IntegrityError, InvalidInputError, TimeoutError, UnavailableError } from '../../shared/errors/errors.ts'
import { loadTfjsEngine } from '../engines/tfjs.ts'
import { plainClient, type SecureClientDeps, type SecureClientFactory, type SecureRoundClient } from './secure-client.ts'
import { holdStateDir, statisticsGiven, updatesGiven, type StatisticsGiven, type UpdatesGiven } from './given.ts'
import { repeatsBase, uploadOf, type GivenUpload } from '../../shared/rounds/one-update.ts'
import { describeIssues } from '../../shared/errors/parse-json.ts'
import { errorBodySchema } from '../../shared/client/api-schemas.ts'

export interface ParticipantModel {
  /** The runtime's own private training data for this model. */
  data: () => TrainingData | Promise<TrainingData>
}

export type ParticipantEvent =
  | { type: 'connected' }
  | { type: 'disconnected', reason: string }
  | { type: 'offer', roundId: string, accepted: boolean, reason?: string }
  | { type: 'progress', roundId: string, epoch: number, epochs: number, loss: number }
  /** `again`: the same upload sent once more, to a resumed round that never got it (a coordinator that stopped). */
  | { type: 'uploaded', roundId: string, bytes: number, again?: true }
  | { type: 'result', roundId: string, state: 'published' | 'failed', version: number | null, reason: string | null, bytesUp: number, bytesDown: number }
  | { type: 'error', roundId?: string, message: string }
  /**
   * Once per accepted round, however it ended for this runtime (a result, an error, an abort, a
   * dropout): the bytes it sent and received for the round. A runtime that dropped out gets no
   * `result`, so this is the only complete tally.
   */
  | { type: 'bytes', roundId: string, bytesUp: number, bytesDown: number }

export interface ParticipantOptions {
  /** The coordinator's base URL (http[s]://host:port); the socket is at /v1/rounds/ws. */
  url: string
  token: string
  identity: SigningKeyPair
  models: Record<string, ParticipantModel>
  /** Loads a version through the runtime's verified pipeline (cache, keys, blocks). */
  fetchVersion: (model: string, version: number, signal: AbortSignal) => Promise<FetchedModel>
  /** Secure-aggregation clients for masking / paillier (none is built in). */
  /** Makes each round's secure-aggregation client (secureClients()); its `stop`, if any, is called at this participant's stop. */
  secureClient?: SecureClientFactory
  /** Seeds the local shuffle (per round it is mixed with the model and base version). */
  seed?: number
  /**
   * Where the runtime keeps what must outlive it (what it has put into secure sums: its NaiveMix
   * class statistics and the base versions it uploaded updates from, fl/given.ts); without it,
   * that is kept for the process's life only. Participants of one process may share it; another
   * process may not (`start()` refuses it with a ConflictError naming the holder).
   */
  stateDir?: string
  /** What this runtime agrees to: an offer asking less is declined, saying why, before any work. */
  policy?: ParticipantPolicy
  /** Test hook: called with the encoded update before it is protected (a bad client's tamper point). */
  tamper?: (encoded: Uint32Array, config: RoundConfig) => Uint32Array
  /** Drop out after uploading (simulated dropout): close the socket once the upload is sent. */
  dropAfterUpload?: (config: RoundConfig) => boolean
  /** First wait before reconnecting (default 1 s); it doubles per failed attempt up to `reconnectMaxMs` (default 5 s), with jitter. */
  reconnectMs?: number
  reconnectMaxMs?: number
  onEvent?: (event: ParticipantEvent) => void
}

/**
 * A runtime's own say in how its update is protected: the coordinator chooses each round's secure
 * mode and cohort, and one that asks for less than this (a plain round, where it would see this
 * runtime's update alone; a sum that may count a single upload) is declined. Defaults accept all.
 */
export const participantPolicySchema = z.strictObject({
  /** Secure modes accepted. Leave out 'none' and no coordinator sees this runtime's update alone. */
  secureModes: z.array(secureModeSchema).min(1).readonly().optional(),
  /** Fewest uploads a round's sum may count on (its minUploads): a sum of one upload is that upload. */
  minUploads: z.number().int().min(1).max(10_000).optional()
})
export type ParticipantPolicy = z.infer<typeof participantPolicySchema>

/** Why `config` asks for less than `policy` allows, or undefined when it does not. */
export function policyRefusal (config: RoundConfig, policy: ParticipantPolicy): string | undefined {
  if (policy.secureModes !== undefined && !policy.secureModes.includes(config.secure.mode)) {
    return `secure mode ${config.secure.mode} is not accepted here (policy.secureModes: ${policy.secureModes.join(', ')})`
  }
  if (policy.minUploads !== undefined && minUploadsOf(config) < policy.minUploads) {
    return `the offer's sum may count ${minUploadsOf(config)} upload(s); this runtime asks for at least ${policy.minUploads} (policy.minUploads)`
  }
  return undefined
}

export interface Participant {
  readonly id: string
  start: () => Promise<void>
  stop: () => Promise<void>
  /** Resolves once connected and welcomed (at once if it is now); rejects at the deadline, or with `signal`'s reason. */
  ready: (timeoutMs?: number, signal?: AbortSignal) => Promise<void>
}

const ROUND_SLACK_MS = 5000

/** An upload as it went out: the masking report sent just before it, if any, and the frame. */
interface SentUpload {
  before?: unknown
  frame: Uint8Array
}

/** A round this runtime accepted or is deciding on. */
interface RoundTask {
  config: RoundConfig
  secure: SecureRoundClient
  controller: AbortController
  result: (m: Extract<ServerMessage, { type: 'result' }>) => void
  bytesUp: number
  bytesDown: number
  accepted: boolean
  uploaded: boolean
  sent?: SentUpload
}

/** The abort reason of a round's local work once the coordinator announced its result. */
class RoundEndedError extends Error {
  readonly result: Extract<ServerMessage, { type: 'result' }>
  constructor (result: Extract<ServerMessage, { type: 'result' }>) {
    super(`round ${result.roundId} ended: ${result.state}`)
    this.result = result
  }
}

/** The coordinator said this runtime is not (or no longer) in the round: nothing to decline. */
class LeftOutError extends Error {}

function wsUrl (base: string): string {
  const u = new URL('/v1/rounds/ws', base)
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:'
  return u.toString()
}

/** Upgrade refusals the coordinator's hub gives that asking again will not change (hub.ts). */
const LASTING_REFUSALS = new Set([400, 401, 403, 404])
/**
 * The backoff's cap while the last attempt met a lasting refusal (a revoked, expired or unknown
 * token, a role that may not train): still retried, since a proxy's 403 may pass, but not every
 * few seconds for ever (review 52a: 97 refusals in 6 minutes from a revoked token's runtimes).
 */
export const REFUSED_RECONNECT_MAX_MS = 5 * 60_000

/**
 * Why an upgrade was refused, from its body: the coordinator's `{ error, message }` gives its
 * message; any other body (a proxy's page) is given as it came. At most 2000 characters, within 2 s.
 */
async function refusalOf (res: IncomingMessage): Promise<string> {
  return await new Promise(resolve => {
    let text = ''
    const done = (): void => {
      clearTimeout(timer)
      res.destroy()
      resolve(messageOf(text.trim()).slice(0, 2000))
    }
    const timer = setTimeout(done, 2000)
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => { text += chunk; if (text.length > 2000) done() })
    res.on('end', done)
    res.on('error', done)
  })
}

/** The `message` of an error body in the coordinator's shape, else the text itself. */
function messageOf (text: string): string {
  let body: unknown
  try { body = JSON.parse(text) } catch { return text }
  return errorBodySchema.safeParse(body).data?.message ?? text
}

/**
 * The wait before reconnect attempt `failures` + 1 (0 after a connection that was welcomed):
 * exponential backoff, capped (never below `baseMs`), with "equal jitter" (half fixed, half
 * random; `random` in [0, 1)). A runtime `holding` a masking round it uploaded to does not back
 * off: a coordinator that restarted waits only half the round's unmask deadline for its
 * uploaders (rounds.ts, `resume`).
 */
export function reconnectDelay (failures: number, baseMs: number, maxMs: number, random: number, holding = false): number {
  const wait = Math.min(Math.max(baseMs, maxMs), baseMs * 2 ** Math.min(holding ? 0 : failures, 30))
  return wait / 2 + (wait / 2) * random
}

function mix (seed: number, text: string): number {
  let h = seed >>> 0
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x9e3779b1) >>> 0
  return h
}

export function createParticipant (options: ParticipantOptions): Participant {
  const id = toHex(options.identity.publicKey)
  const checked = participantPolicySchema.safeParse(options.policy ?? {})
  if (!checked.success) throw new InvalidInputError(`createParticipant policy: ${describeIssues(checked.error)}`)
  const policy = checked.data
  let socket: WebSocket | undefined
  let running = false
  let welcomed = false
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined
  /** Connections closed since the last welcome: each waits twice as long before the next try. */
  let failures = 0
  /** A lasting refusal was said on stderr (once: without an onEvent listener nothing else shows it). */
  let saidRefusal = false
  /** This attempt met a lasting refusal: the wait before the next backs off up to REFUSED_RECONNECT_MAX_MS. */
  let refusedForGood = false
  /** `ready()` calls waiting: called with nothing once welcomed, or with why the wait is over. */
  const waiters = new Set<(err?: Error) => void>()
  const wake = (err?: Error): void => {
    for (const w of [...waiters]) w(err)
    waiters.clear()
  }
  /** The next welcome (after any abort it makes); rejects with `signal`'s reason, or why the participant stopped. */
  const nextWelcome = async (signal: AbortSignal): Promise<void> => {
    signal.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { waiters.delete(done); reject(signal.reason as Error) }
      const done = (err?: Error): void => {
        signal.removeEventListener('abort', onAbort)
        if (err === undefined) resolve()
        else reject(err)
      }
      waiters.add(done)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
  /**
   * The round this runtime works on: at most one at a time. `sent` keeps the upload as it went
   * out (the masking report before it, and the frame), until the round ends, to send again the
   * same bytes if a resumed round says it never got them.
   */
  let current: RoundTask | undefined
  // A listener that throws must not stop the runtime's own work (a reconnect, a round's unwinding).
  const emit = (e: ParticipantEvent): void => {
    try {
      options.onEvent?.(e)
    } catch (err) {
      console.error(`blockfed: a participant onEvent listener threw on a ${e.type} event: ${(err as Error)?.message ?? String(err)}`)
    }
  }
  // Taken when first needed (after start), let go at stop: participants sharing a stateDir share
  // these records (given.ts), and one never started holds nobody else's copy in place.
  let records: { statistics: StatisticsGiven, updates: UpdatesGiven } | undefined
  let stateDir: { release: () => void } | undefined
  const kept = (): { statistics: StatisticsGiven, updates: UpdatesGiven } =>
    (records ??= { statistics: statisticsGiven(options.stateDir), updates: updatesGiven(options.stateDir) })
  /**
   * The (model, base version) pairs whose upload is being recorded and sent: from the round's last
   * signal check to the send. No round from such a base is accepted meanwhile; after the send the
   * record refuses it (baseRefusal).
   */
  const sending = new Set<string>()
  const baseKey = (config: RoundConfig): string => `${config.model}\n${config.baseVersion}`

  function send (message: ClientMessage): number {
    const text = JSON.stringify(message)
    if (socket?.readyState === WebSocket.OPEN) socket.send(text)
    return text.length
  }

  function connect (): void {
    const ws = new WebSocket(wsUrl(options.url), [ROUNDS_SUBPROTOCOL], { headers: { authorization: `Bearer ${options.token}` }, maxPayload: 256 << 20, handshakeTimeout: 10_000 })
    socket = ws
    refusedForGood = false
    // A refusal (401, 403, another protocol version) says why in its body; ws would report only the status.
    let refused = false
    ws.on('unexpected-response', (_req, res) => {
      refused = true
      void refusalOf(res).then(why => {
        // Ended first, so that the close (and the next attempt) comes whatever the listener does.
        ws.terminate()
        if (!running) return
        const message = `the coordinator refused the connection: ${res.statusCode ?? ''} ${why}`.trim()
        emit({ type: 'error', message })
        // What the coordinator refuses for good (another protocol version, an unknown token, a
        // role that may not train) is refused again: whoever waits for this participant to be
        // ready hears it now. Other statuses (a proxy's 429 or 503) may pass; the wait goes on.
        if (LASTING_REFUSALS.has(res.statusCode ?? 0)) {
          refusedForGood = true
          wake(new AccessDeniedError(`participant ${id.slice(0, 8)}: ${message}`))
          // Nobody listening: a participant refused for good would retry unseen for ever (review 40a).
          if (options.onEvent === undefined && !saidRefusal) console.error(`blockfed: participant ${id.slice(0, 8)}: ${message}; it keeps trying`)
          saidRefusal = true
        }
      })
    })
    ws.on('message', (data, isBinary) => {
      if (isBinary) { emit({ type: 'error', message: 'unexpected binary frame from the coordinator' }); return }
      const text = data.toString()
      if (current !== undefined) current.bytesDown += text.length
      let message: ServerMessage
      try {
        message = parseFrame(serverMessageSchema, text, 'coordinator message')
      } catch (err) {
        emit({ type: 'error', message: (err as Error).message })
        return
      }
      void onMessage(message).catch(err => emit({ type: 'error', message: (err as Error).message }))
    })
    ws.on('error', err => {
      if (refused) return
      // The coordinator did not echo the subprotocol: one from before the subprotocol named the version.
      const message = err.message === 'Server sent no subprotocol' ? protocolMismatch('runtime', `another one (the coordinator, of another blockfed version, does not answer subprotocol ${ROUNDS_SUBPROTOCOL})`) : `socket: ${err.message}`
      emit({ type: 'error', message })
    })
    ws.on('close', (code, reason) => {
      welcomed = false
      if (socket === ws) socket = undefined
      // A round this runtime accepted is kept until the next welcome says whether the coordinator
      // still counts on it, within the round's budget: one that restarted resumes a round it left
      // collecting (rounds.ts, `resume`), waiting for the uploads still to come and, in masking,
      // for its uploaders' unmask shares, and tells the uploaders of one it finished how it ended
      // (review 47b: a restart mid-round failed it, and cost its uploaders their base version).
      // A live coordinator dropped this runtime with the connection, and its welcome says so.
      if (current !== undefined && !current.accepted) current.controller.abort(new Error('connection to the coordinator lost'))
      emit({ type: 'disconnected', reason: `${code} ${reason.toString()}` })
      if (!running) return
      // Backoff with jitter: a fleet that lost its coordinator does not come back in one burst,
      // and one that keeps being refused does not knock every second.
      // `current` is, here, a masking round this runtime uploaded to and keeps (above).
      const maxMs = Math.max(options.reconnectMaxMs ?? 5000, refusedForGood ? REFUSED_RECONNECT_MAX_MS : 0)
      reconnectTimer = setTimeout(connect, reconnectDelay(failures++, options.reconnectMs ?? 1000, maxMs, Math.random(), current !== undefined))
    })
  }

  async function onMessage (message: ServerMessage): Promise<void> {
    switch (message.type) {
      case 'challenge': {
        const signature = sign(helloSigningBytes(message.nonce), options.identity.secretKey)
        const models = Object.keys(options.models)
        const given = await givenFor(models)
        // A round kept across the reconnect (see 'close'): a coordinator that resumed it asks on.
        const held = current === undefined ? [] : [current.config.id]
        send({ type: 'hello', protocol: ROUND_PROTOCOL_VERSION, clientId: id, signature: toBase64(signature), models, ...(given.length === 0 ? {} : { given }), ...(held.length === 0 ? {} : { rounds: held }) })
        return
      }
      case 'welcome':
        if (current !== undefined && !(message.rounds ?? []).includes(current.config.id)) current.controller.abort(new Error(`connection to the coordinator lost: it no longer counts on this runtime in round ${current.config.id}`))
        welcomed = true
        failures = 0
        if (current?.sent !== undefined && (message.awaiting ?? []).includes(current.config.id)) sendAgain(current, current.sent)
        emit({ type: 'connected' })
        wake()
        return
      case 'offer': return offer(message.config)
      case 'secagg':
        if (current?.config.id !== message.roundId) return
        try {
          await current.secure.message(message.payload)
        } catch (err) {
          // A request this client refuses (e.g. an unmasking request that would expose an update).
          emit({ type: 'error', roundId: message.roundId, message: (err as Error).message })
        }
        return
      case 'result': {
        const round = current
        if (round?.config.id !== message.roundId) return
        // Free for the next offer at once: it may arrive before this round's task has unwound.
        // A round that ended without this client's upload (it failed early, or published without
        // it) stops the local work too, which would otherwise train beside the next round.
        current = undefined
        round.result(message)
        round.controller.abort(new RoundEndedError(message))
        return
      }
      case 'error':
        emit({ type: 'error', ...(message.roundId === undefined ? {} : { roundId: message.roundId }), message: message.message })
        // Left out (a late accept, say) before this runtime uploaded: stop before anything is
        // trained, recorded as given or sent for a round that would refuse it.
        if (message.left === true) {
          const round = current
          if (round !== undefined && round.config.id === message.roundId && !round.uploaded) round.controller.abort(new LeftOutError(message.message))
        }
    }
  }

  /**
   * The upload a resumed round never got (its coordinator refused it while stopping, or stopped
   * before reading it): the same report and frame, in the same order, on the new connection. Not
   * a second update: the bytes and their signature are those recorded as given (given.ts).
   */
  function sendAgain (round: RoundTask, sent: SentUpload): void {
    if (socket?.readyState !== WebSocket.OPEN) return
    if (sent.before !== undefined) round.bytesUp += send({ type: 'secagg', roundId: round.config.id, payload: sent.before })
    socket.send(sent.frame)
    round.bytesUp += sent.frame.length
    emit({ type: 'uploaded', roundId: round.config.id, bytes: sent.frame.length, again: true })
  }

  /** Declines an offer, saying why (and with this runtime's record, when that is the reason). */
  function decline (roundId: string, reason: string, given?: GivenUpload): void {
    send({ type: 'decline', roundId, reason: reason.slice(0, 500), ...(given === undefined ? {} : { given }) })
    emit({ type: 'offer', roundId, accepted: false, reason })
  }

  function offer (config: RoundConfig): void {
    // Own keys only: an offer for model "constructor" found Object.prototype's and was accepted.
    const model = Object.hasOwn(options.models, config.model) ? options.models[config.model] : undefined
    const reason = current !== undefined
      ? 'busy with another round'
      : model === undefined
        ? `no data for model ${config.model}`
        : !config.clients.includes(id)
            ? 'not among the selected clients'
            : sending.has(baseKey(config))
              ? `still sending an update from ${config.model}@${config.baseVersion}`
              // DP noise per client is sized for minUploads honest ones (clientNoiseSigma): more than
              // the round selected would shrink it below what the round claims.
              : minUploadsOf(config) > config.clients.length
                ? `the offer counts on ${minUploadsOf(config)} uploads from ${config.clients.length} selected clients`
                : policyRefusal(config, policy)
    if (reason !== undefined) {
      decline(config.id, reason)
      return
    }
    const controller = new AbortController()
    const budget = roundScheduleMs(config) + ROUND_SLACK_MS
    const timer = setTimeout(() => controller.abort(new TimeoutError(`round ${config.id} overran its deadlines (${budget} ms)`)), budget)
    let resolveResult: (m: Extract<ServerMessage, { type: 'result' }>) => void = () => {}
    const result = new Promise<Extract<ServerMessage, { type: 'result' }>>(resolve => { resolveResult = resolve })
    const secureDeps: SecureClientDeps = { config, clientId: id, identity: options.identity, send: payload => { if (current !== undefined) current.bytesUp += send({ type: 'secagg', roundId: config.id, payload }) } }
    const secure = config.secure.mode === 'none' ? plainClient() : options.secureClient?.(secureDeps)
    if (secure === undefined || secure.refusal !== undefined) {
      const reason = secure?.refusal ?? `secure mode ${config.secure.mode} is not available here (createParticipant was given no secureClient: pass secureClients() from blockfed/node)`
      clearTimeout(timer)
      secure?.dispose()
      decline(config.id, reason)
      return
    }
    const round = { config, secure, controller, result: resolveResult, bytesUp: 0, bytesDown: 0, accepted: false, uploaded: false }
    // Taken before the first await: an offer in the same read must find this runtime busy.
    current = round
    // Every wait of the round ends at its budget: the abort frees this runtime for the next offer
    // even when a step does not watch the signal (a hung fetch, a data source that never answers).
    const aborted = new Promise<never>((_resolve, reject) => controller.signal.addEventListener('abort', () => {
      if (current === round) current = undefined
      reject(controller.signal.reason as Error)
    }, { once: true }))
    aborted.catch(() => {})
    const reportResult = (final: Extract<ServerMessage, { type: 'result' }>): void => {
      emit({ type: 'result', roundId: config.id, state: final.state, version: final.version, reason: final.reason, bytesUp: round.bytesUp, bytesDown: round.bytesDown })
    }
    void (async () => {
      const refusal = await baseRefusal(config).catch((err: Error) => ({ reason: err.message, given: undefined }))
      // Refused, or the round ended (or the socket closed) while this was decided: never accepted.
      if (refusal !== undefined || controller.signal.aborted) {
        clearTimeout(timer)
        secure.dispose()
        if (current === round) current = undefined
        if (refusal === undefined) return
        decline(config.id, refusal.reason, refusal.given)
        return
      }
      round.bytesUp += send({ type: 'accept', roundId: config.id })
      round.accepted = true
      emit({ type: 'offer', roundId: config.id, accepted: true })
      try {
        await Promise.race([(async () => {
          await secure.begin()
          await train(config, model as ParticipantModel, round)
        })(), aborted])
        reportResult(await Promise.race([result, aborted]))
      } catch (err) {
        if (err instanceof RoundEndedError) {
          reportResult(err.result)
          return
        }
        // Left out by the coordinator: it waits for nothing from this runtime, and the error is emitted.
        if (err instanceof LeftOutError) return
        const message = err instanceof BlockfedError ? err.message : `round ${config.id}: ${(err as Error).message}`
        // Said at once, so that the round stops waiting for this client instead of running into
        // its training deadline.
        if (!round.uploaded) send({ type: 'decline', roundId: config.id, reason: message.slice(0, 500) })
        emit({ type: 'error', roundId: config.id, message })
      } finally {
        clearTimeout(timer)
        emit({ type: 'bytes', roundId: config.id, bytesUp: round.bytesUp, bytesDown: round.bytesDown })
        secure.dispose()
        if (current === round) current = undefined
      }
    })()
  }

  /**
   * Why this runtime will not take the round, decided before it accepts: a second upload from a
   * base it uploaded from could single an update out of a secure sum (shared/rounds/one-update.ts).
   * Returns the reason and the record, which the decline carries.
   */
  async function baseRefusal (config: RoundConfig): Promise<{ reason: string, given: GivenUpload } | undefined> {
    const given = await kept().updates.newest(config.model)
    if (given === undefined || !repeatsBase(given, uploadOf(config.baseVersion, config.secure.mode))) return undefined
    const what = given.secure ? 'to a secure round' : 'in the clear'
    return { given, reason: `round ${config.id}: this runtime already uploaded an update from ${config.model}@${given.base} ${what}, and gives one per base version, moving forward only (a second upload from one base could single an update out of a secure sum); offered base ${config.baseVersion} in mode ${config.secure.mode}` }
  }

  /** The record for the hello: an unreadable one is left out (each offer is then declined with why). */
  async function givenFor (models: string[]): Promise<Array<GivenUpload & { model: string }>> {
    const rows = await Promise.all(models.map(async model => {
      const given = await kept().updates.newest(model).catch(() => undefined)
      return given === undefined ? [] : [{ model, ...given }]
    }))
    return rows.flat()
  }

  async function train (config: RoundConfig, model: ParticipantModel, round: NonNullable<typeof current>): Promise<void> {
    const { signal } = round.controller
    const fetched = await options.fetchVersion(config.model, config.baseVersion, signal)
    if (fetched.signed.cid !== config.manifestCid) throw new IntegrityError(`round ${config.id}: base version ${config.baseVersion} has manifest ${fetched.signed.cid}, the offer names ${config.manifestCid}`)
    round.bytesDown += fetched.report.bytesFetched
    const data = await model.data()
    const topology = fetched.manifest.topology
    if (fetched.manifest.format !== 'tfjs-layers' || topology.kind !== 'tfjs') throw new InvalidInputError(`round ${config.id}: local training needs a tfjs layers model, got ${fetched.manifest.format}`)
    const stats = offeredMeanMix(config, data)
    // The row size NaiveMix statistics are gathered for, when this round gathers them.
    const gathering = stats.stats === undefined ? undefined : config.meanMix?.features
    if (gathering !== undefined && await kept().statistics.has(config.model, gathering)) {
      throw new InvalidInputError(`round ${config.id}: this runtime already gave its class statistics for ${config.model} to a round; a second sum over other clients could single it out`)
    }
    // The offer's layout is the base's, as both sides derive it (shared/rounds/trainable.ts),
    // checked before any training: a wrong one would fail only after the epochs were spent.
    const statsLength = stats.stats?.length ?? 0
    const layout = trainableLayout(fetched.manifest.tensors, config.trainable)
    if (layout.names.join('\n') !== config.tensors.join('\n') || layout.parameters + statsLength !== config.vectorLength - 1) {
      throw new InvalidInputError(`round ${config.id}: the offer's tensors (${config.tensors.length}) and vectorLength ${config.vectorLength} are not those of units ${config.trainable.join(', ')} in ${config.model}@${config.baseVersion}: ${layout.names.length} tensors, ${layout.parameters} values + ${statsLength} class statistics + 1`)
    }
    const engine = await loadTfjsEngine('tfjs-layers', topology, fetched.weights)
    const net = (engine as { model: LayersModel }).model
    let deltas: Float32Array
    let samples: number
    try {
      const classes = (net.outputs[0]?.shape.at(-1) ?? 0) as number
      if (config.meanMix !== null && classes !== config.meanMix.classes) throw new InvalidInputError(`round ${config.id}: meanMix names ${config.meanMix.classes} classes, the model outputs ${classes}`)
      const trained = await trainLocal({
        model: net,
        trainable: config.tensors,
        data,
        epochs: config.epochs,
        batchSize: config.batchSize,
        learningRate: config.learningRate,
        optimizer: config.optimizer,
        loss: config.loss,
        proxMu: config.strategy.name === 'fedprox' ? config.strategy.mu : 0,
        labelSkew: config.labelSkew,
        ...(stats.means === undefined || config.meanMix === null ? {} : { meanMix: { lambda: config.meanMix.lambda, means: stats.means } }),
        // From the base version, not the round id (random): a run is then reproducible from its seed.
        seed: mix(options.seed ?? 1, `${config.model}@${config.baseVersion}`),
        signal,
        onProgress: p => {
          if (p.batch !== p.batches) return
          round.bytesUp += send({ type: 'progress', roundId: config.id, epoch: p.epoch, epochs: config.epochs, loss: p.loss })
          emit({ type: 'progress', roundId: config.id, epoch: p.epoch, epochs: config.epochs, loss: p.loss })
        }
      })
      deltas = trained.deltas
      samples = trained.samples
    } finally {
      net.dispose()
    }
    if (deltas.length + statsLength !== config.vectorLength - 1) throw new IntegrityError(`round ${config.id}: trained ${deltas.length} values and ${statsLength} class statistics, the round expects ${config.vectorLength - 1} values`)
    checkFinite(deltas)
    const params = fixedPointParams({ clip: config.fixedPoint.clip, clients: config.fixedPoint.clients })
    if (params.scale !== config.fixedPoint.scale || params.weightScale !== config.fixedPoint.weightScale) throw new InvalidInputError(`round ${config.id}: the offered fixed-point scale does not match its clip and client count`)
    const weight = sampleWeight({ samples, sampleCap: config.sampleCap })
    const random = cryptoUniform()
    let encoded = config.dp === null
      ? encodeUpdate(withClassStats(clipL2(deltas, config.normBound).clipped, stats.stats), { params, weight, random })
      : encodeUpdate(deltas, { params, weight, random, dp: { l2Clip: Math.min(config.dp.clip, config.normBound), sigma: clientNoiseSigma({ noiseMultiplier: config.dp.noiseMultiplier, clip: config.dp.clip, minClients: minUploadsOf(config) }), valueClip: config.clip } })
    if (options.tamper !== undefined) encoded = options.tamper(encoded, config)
    const payload = await round.secure.protect(encoded, signal)
    const header = { type: 'upload' as const, roundId: config.id, baseVersion: config.baseVersion, encoding: round.secure.encoding }
    const signature = sign(uploadSigningBytes(config.model, header, await sha256(payload)), options.identity.secretKey)
    const frame = encodeUploadFrame({ ...header, signature: toBase64(signature) }, payload)
    // The round may have ended while the update was protected (its result, a closed socket, the
    // deadline all abort it, and a step such as Paillier's randomness wait does not watch the
    // signal): then nothing is recorded or sent, and a round offered since from the same base
    // may take its place. A work that outlives its round can never upload.
    signal.throwIfAborted()
    // Trained while the connection was down: sent once a welcome names the round again (one that
    // does not aborts it), before anything is recorded as given.
    while (socket?.readyState !== WebSocket.OPEN || !welcomed) await nextWelcome(signal)
    const base = baseKey(config)
    sending.add(base)
    try {
      // Before the update and statistics leave: a crash right after the send must not forget them.
      await kept().updates.record(config.model, uploadOf(config.baseVersion, config.secure.mode))
      if (gathering !== undefined) await kept().statistics.record(config.model, gathering)
      // Checked again with no await before the send: a welcome that does not name the round
      // aborts it, so the frame never goes out on a connection that no longer counts on it, nor
      // after the round's end.
      signal.throwIfAborted()
      if (socket?.readyState !== WebSocket.OPEN || !welcomed) throw new TimeoutError(`round ${config.id}: the connection closed before the upload`)
      // On the same connection, just before the frame, with no await between: both go, in order.
      const before = round.secure.beforeUpload?.()
      if (before !== undefined) round.bytesUp += send({ type: 'secagg', roundId: config.id, payload: before })
      socket.send(frame)
      round.sent = { ...(before === undefined ? {} : { before }), frame }
    } finally {
      sending.delete(base)
    }
    round.uploaded = true
    round.bytesUp += frame.length
    emit({ type: 'uploaded', roundId: config.id, bytes: frame.length })
    if (options.dropAfterUpload?.(config) === true) socket.close(4000, 'dropping out after upload (simulated)')
  }

  return {
    id,
    async start () {
      if (running) return
      // Before anything connects: a second process on this stateDir is refused here.
      stateDir ??= options.stateDir === undefined ? undefined : holdStateDir(options.stateDir)
      running = true
      connect()
    },
    async stop () {
      running = false
      wake(new UnavailableError(`participant ${id.slice(0, 8)}: stopped`))
      records?.statistics.release()
      records?.updates.release()
      records = undefined
      stateDir?.release()
      stateDir = undefined
      if (reconnectTimer !== undefined) clearTimeout(reconnectTimer)
      current?.controller.abort(new Error('participant stopping'))
      // Randomness made ahead for the next round is not wanted once stopped (a pool sized by an
      // offer kept a core busy after stop).
      options.secureClient?.stop?.()
      const ws = socket
      if (ws !== undefined && ws.readyState !== WebSocket.CLOSED) {
        await new Promise<void>(resolve => {
          const t = setTimeout(() => { ws.terminate(); resolve() }, 2000)
          ws.once('close', () => { clearTimeout(t); resolve() })
          ws.close(1000, 'participant stopping')
        })
      }
    },
    async ready (timeoutMs = 10_000, signal) {
      signal?.throwIfAborted()
      if (welcomed) return
      if (!running) throw new UnavailableError(`participant ${id.slice(0, 8)}: not started, or stopped`)
      const deadline = new AbortController()
      const t = setTimeout(() => deadline.abort(new TimeoutError(`participant ${id.slice(0, 8)}: not connected after ${timeoutMs} ms`)), timeoutMs)
      try {
        await nextWelcome(signal === undefined ? deadline.signal : AbortSignal.any([signal, deadline.signal]))
      } finally {
        clearTimeout(t)
      }
    }
  }
}
