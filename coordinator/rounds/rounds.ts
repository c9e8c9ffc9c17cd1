/**
 * Rounds (DESIGN.md, pipeline 5) on the coordinator: select clients, offer the round, run the
 * secure-aggregation mode's setup, collect uploads, turn them into their sum, apply the strategy,
 * and publish a new version where only blocks that changed are new. Every step moves the
 * persisted state machine (state.ts) and waits behind a deadline (gate.ts); a client that goes
 * silent is dropped, not waited for. A stop leaves a round that was collecting, or summing
 * without its clients, as a kill would; at the next start `resumeInterrupted()` resumes a round
 * left collecting short of its uploads (the runtimes still training keep it across a reconnect)
 * and a masking round whose sum still needs its clients, and `recover()` finishes the rest from
 * the database, or fails them cleanly.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { randomInt } from 'node:crypto'
import { checkRoundRequest, minUploadsOf, roundConfigSchema, roundRequestSchema, sampleCapOf, type RoundConfig, type RoundRequest, type RoundRequestInput } from '../../shared/rounds/config.ts'
import { classStatsLength } from '../../shared/training/mean-mix.ts'
import { classMeansOffer } from '../../shared/rounds/mean-mix-offer.ts'
import { decodeUploadFrame, maxUploadFrameBytes, uploadSigningBytes, type ClientMessage, type ServerMessage } from '../../shared/rounds/messages.ts'
import { trainableLayout, trainableUnits, untrainableFormat } from '../../shared/rounds/trainable.ts'
import { sha256 } from '../../shared/crypto/hash.ts'
import { fromBase64, fromHex, toHex } from '../../shared/crypto/bytes.ts'
import { verify } from '../../shared/crypto/sign.ts'
import { ConflictError, InvalidInputError, isUnreachable, NotFoundError, UnavailableError } from '../../shared/errors/errors.ts'
import { afterUpload, newestGiven, repeatsBase, uploadOf } from '../../shared/rounds/one-update.ts'
import type { IngestResult } from '../../shared/client/api-schemas.ts'
import { roundFixedPoint } from './fixed-point.ts'
import { signedManifestOf, type Repository } from '../store/repository.ts'
import { DEFAULT_ACCESS_LEVEL } from '../constants.ts'
import { readsLevel } from '../tokens/scope.ts'
import type { PublishOptions } from '../ingest/ingest.ts'
import type { NormalisedModel } from '../../shared/model/types.ts'
import type { BaseModel } from './base-model.ts'
import type { RoundStore, RoundRow } from './store.ts'
import type { ClientConnection, HubHandlers, RoundHub } from './hub.ts'
import type { AcceptedUpload, RoundIo, SecureRoundServer } from './secure/types.ts'
import { MIN_MASKING_CLIENTS } from '../../aggregation/secagg/constants.ts'
import { gate } from './gate.ts'
import { isFinal } from './state.ts'
import { RoundFailure, reasonOf, throwIfAborted, withRound } from './failure.ts'
import { blankRound, declined, MAX_DECLINE_REASON, MAX_DECLINE_REASONS, type ActiveRound } from './active-round.ts'
import { aggregateAndPublish } from './publish.ts'

export interface RoundManagerDeps {
  store: RoundStore
  repo: Repository
  hub: () => RoundHub
  readBase: (name: string, version: number) => Promise<BaseModel>
  publish: (name: string, model: NormalisedModel, options: PublishOptions) => Promise<IngestResult>
  /** The secure-aggregation server for a round's mode (restored from a snapshot after a restart). */
  /** `offline`: without asking any service (a round resumed at a start, before the hub answers). */
  secureServer: (config: RoundConfig, snapshot?: unknown, options?: { offline?: boolean }) => Promise<SecureRoundServer>
  /** Extra fields a mode needs in the offer (Paillier: the decryptor's public key). */
  offerExtras?: (request: RoundConfig['secure']) => Promise<Pick<RoundConfig, 'paillier'>>
  onEvent?: (event: RoundEvent) => void
}

export type RoundEvent =
  | { type: 'state', roundId: string, state: string, detail?: string }
  | { type: 'progress', roundId: string, clientId: string, epoch: number, epochs: number, loss: number | null }
  | { type: 'upload', roundId: string, clientId: string, bytes: number }
  | { type: 'rejected', roundId: string, clientId: string, reason: string }
  | { type: 'declined', roundId: string, clientId: string, reason: string }

/** A round that cannot start: too few eligible clients are connected now (the message says why). */
export class TooFewClientsError extends UnavailableError {
  override readonly name: string = 'TooFewClientsError'
}

/** Another round of the model is running: a conflict that ends with that round. */
export class RoundRunningError extends ConflictError {}

export interface RoundSummary {
  id: string
  model: string
  state: 'published' | 'failed'
  baseVersion: number
  version: number | null
  reason: string | null
  metrics: Record<string, number> | null
  /**
   * Of the clients offered the round: those that accepted, declined (said no, with a reason) and
   * uploaded; `dropped` are the rest that did not upload (silent, disconnected, late or withdrawn).
   * A round finished after a restart knows no acceptances (0).
   */
  participants: { offered: number, accepted: number, declined: number, uploaded: number, dropped: number }
}

export interface RoundManager {
  handlers: HubHandlers
  /**
   * Runs one round on demand; resolves when it is published or failed, rejects with
   * UnavailableError when the coordinator stops and leaves the round for its next start.
   */
  run: (request: RoundRequestInput, signal?: AbortSignal) => Promise<RoundSummary>
  /** Starts one round; resolves with its id once offered, `done` when it ends (as `run`). */
  start: (request: RoundRequestInput, signal?: AbortSignal) => Promise<{ id: string, done: Promise<RoundSummary> }>
  /** Runs rounds back to back until stopped (continuous scheduling). */
  /**
   * Runs rounds one after another, `pauseMs` apart. A round that cannot start for now
   * (UnavailableError: too few clients) is skipped; any other error (a pinned base that is no
   * longer the latest, a throwing `onRound`) ends the schedule and goes to `onError`.
   */
  schedule: (request: RoundRequestInput, options: { pauseMs: number, rounds?: number, onRound?: (s: RoundSummary) => void, onError?: (err: Error) => void }) => { stop: () => Promise<void> }
  /** Resumes the masking rounds a killed or stopped coordinator left collecting, with their uploaders: before the hub answers any hello. */
  resumeInterrupted: () => Promise<void>
  /** Ends what a killed or stopped coordinator left unfinished (after `resumeInterrupted`, which it runs if not yet run); resumed rounds are not in the list (they run on). */
  recover: () => Promise<RoundSummary[]>
  active: () => string[]
  stop: () => Promise<void>
}

/** Longest reason a result message carries (shared/rounds/messages.ts, `result`). */
const MAX_RESULT_REASON = 2000

/** Runs `each` on every item, whichever of them throws; then throws the first failure, if any. */
function inEach<T> (items: readonly T[], each: (item: T) => void): void {
  const failures: unknown[] = []
  for (const item of items) {
    try {
      each(item)
    } catch (err) {
      failures.push(err)
    }
  }
  if (failures.length > 0) throw failures[0]
}

/** The middle value (the mean of the two middle ones for an even count). */
function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

/** `count` of `items`, uniformly at random (Fisher–Yates; `randomInt` draws without modulo bias). */
function sample<T> (items: T[], count: number): T[] {
  const pool = [...items]
  for (let i = pool.length - 1; i > 0; i--) {
    const j = randomInt(i + 1)
    ;[pool[i], pool[j]] = [pool[j] as T, pool[i] as T]
  }
  return pool.slice(0, count)
}

export function roundManager (deps: RoundManagerDeps): RoundManager {
  const active = new Map<string, ActiveRound>()
  const busy = new Set<string>()
  const emit = (e: RoundEvent): void => { deps.onEvent?.(e) }
  let stopping = false
  /** The abort reason of the rounds `stop()` ends: only those may be left for the next start (`leftForNextStart`). */
  const stopReason = new Error('coordinator stopping')

  function transition (round: ActiveRound | RoundRow, to: 'collecting' | 'unmasking' | 'failed', reason?: string): void {
    const id = 'config' in round ? round.config.id : (round as RoundRow).id
    deps.store.transition(id, to, reason === undefined ? {} : { reason })
    emit({ type: 'state', roundId: id, state: to, ...(reason === undefined ? {} : { detail: reason }) })
  }

  function io (round: ActiveRound): RoundIo {
    return {
      send: (clientId, payload) => deps.hub().get(clientId)?.send({ type: 'secagg', roundId: round.config.id, payload }),
      signal: round.controller.signal
    }
  }

  function dropClient (round: ActiveRound, clientId: string, why?: string): void {
    if (round.dropped.has(clientId)) return
    round.dropped.add(clientId)
    round.secure.drop(clientId)
    // Told at once when still connected (a late uploader, say), so it stops training for nothing.
    if (why !== undefined && !round.uploads.has(clientId) && !round.receiving.has(clientId)) {
      deps.hub().get(clientId)?.send({ type: 'error', roundId: round.config.id, message: `round ${round.config.id}: ${why}; the round goes on without this client`, left: true })
    }
    // An upload being checked arrived whole before the loss: the round waits for its check (the
    // upload handler settles the gate), or a client that uploads and leaves at once would lose an
    // upload it has recorded as given (found in CI: 3 of 4 uploads counted).
    if (!round.receiving.has(clientId)) round.waiting?.gate.settle(clientId)
    // Last: a store that fails (the disk full) leaves the round going on without the client all
    // the same, and the caller says why (review 53b). Only a client that took part is dropped:
    // one that declined, or never answered the offer, keeps its status (review 38a: a decline
    // turned into 'dropped' at its disconnect, and the cooldown then kept it out of the next round).
    if (round.accepted.has(clientId) && !round.uploads.has(clientId)) deps.store.setClient(round.config.id, clientId, 'dropped')
  }

  const handlers: HubHandlers = {
    async message (client, message) {
      if (message.type === 'hello') throw new InvalidInputError('hello: already connected')
      const round = active.get(message.roundId)
      // Stopping, a round has left `active` while its clients are still connected: one told "not
      // running, left" gave up its part, and a masking round then resumed without it and failed
      // (review 52a: a progress message in that window). The round is kept for the next start.
      if (round === undefined && stopping) throw withRound(new UnavailableError(`the coordinator is stopping; round ${message.roundId} goes on at its next start`), message.roundId)
      if (round === undefined) throw withRound(new InvalidInputError(`round ${message.roundId} is not running`), message.roundId, { left: true })
      if (!round.config.clients.includes(client.id)) throw withRound(new InvalidInputError(`round ${message.roundId}: this client was not selected`), message.roundId, { left: true })
      await dispatch[message.type](round, client, message as never)
    },
    async upload (client, frame) {
      const { header, payload } = decodeUploadFrame(frame)
      const round = active.get(header.roundId)
      let reserved: ActiveRound | undefined
      try {
        if (round === undefined) throw stopping ? new UnavailableError(`the coordinator is stopping; upload again for round ${header.roundId} after its next start`) : new InvalidInputError(`upload for round ${header.roundId}, which is not running`)
        const { config } = round
        if (header.baseVersion !== config.baseVersion) throw new InvalidInputError(`upload for base version ${header.baseVersion}; round ${config.id} trains version ${config.baseVersion}`)
        if (round.uploads.has(client.id) || round.receiving.has(client.id)) throw new InvalidInputError(`upload: round ${config.id} already has this client's update (replay)`)
        // A client that withdrew or was dropped (disconnected, or late) stays out: the round stopped
        // waiting for it, and in masking mode the sum already counts it as dropped.
        if (round.dropped.has(client.id)) throw withRound(new InvalidInputError(`upload: this client withdrew or was dropped from round ${config.id}`), config.id, { left: true })
        const early = !round.allowed.has(client.id) && round.accepted.has(client.id) && round.waiting?.kind === 'accept'
        if (!round.allowed.has(client.id) && !early) throw new InvalidInputError(`upload: client is not a participant of round ${config.id} at this stage`)
        // Checks that do not depend on the round's phase come first: a bad early upload is refused
        // now, not when uploads open, and does not hold the client's one upload slot meanwhile.
        const expected = config.secure.mode === 'paillier' ? 'paillier' : 'ring-u32le'
        if (header.encoding !== expected) throw new InvalidInputError(`upload: encoding ${header.encoding}, round ${config.id} expects ${expected}`)
        if (payload.length !== round.secure.uploadBytes) throw new InvalidInputError(`upload: ${payload.length} bytes, the round expects ${round.secure.uploadBytes}`)
        round.receiving.add(client.id)
        reserved = round
        const checkSignature = (digest: Uint8Array): void => {
          if (!verify(fromBase64(header.signature), uploadSigningBytes(config.model, header, digest), fromHex(client.id))) throw new InvalidInputError('upload: the signature does not verify with the client key')
        }
        if (early) {
          // Checked before it is held; once uploads open it is stored without another await.
          checkSignature(await sha256(payload))
          // Held (one frame, within the hub's allowance) until uploads open; the round's deadlines bound the wait.
          await round.uploadsOpen
        }
        if (!round.allowed.has(client.id)) throw new InvalidInputError(`upload: client is not a participant of round ${config.id}: ${active.get(config.id) === round ? 'it did not complete the round\'s setup' : 'the round ended before uploads opened'}`)
        const collecting = round.waiting
        if (collecting?.kind !== 'upload') throw new InvalidInputError(`upload: round ${config.id} is not collecting`)
        if (!early) {
          const digest = await sha256(payload)
          // The deadline may have passed (and the round failed or moved on) while the digest was
          // computed: an upload stored now would outlive its round or join a sum already taken.
          if (active.get(config.id) !== round || round.waiting !== collecting) throw new InvalidInputError(`upload: round ${config.id} stopped collecting before this upload was checked`)
          checkSignature(digest)
        }
        round.secure.checkUpload(client.id, payload)
        const upload = { payload: payload.slice(), signature: header.signature }
        deps.store.putUpload(config.id, client.id, upload)
        deps.store.setClient(config.id, client.id, 'uploaded')
        round.uploads.set(client.id, upload)
        emit({ type: 'upload', roundId: config.id, clientId: client.id, bytes: frame.length })
        collecting.gate.settle(client.id)
      } catch (err) {
        emit({ type: 'rejected', roundId: header.roundId, clientId: client.id, reason: (err as Error).message })
        throw withRound(err, header.roundId)
      } finally {
        reserved?.receiving.delete(client.id)
        // Dropped while this was checked (see dropClient): settled now, stored or not.
        if (reserved?.dropped.has(client.id) === true) reserved.waiting?.gate.settle(client.id)
      }
    },
    disconnect (client) {
      // Every round lets it go, whichever store write fails; the first failure is said (hub.ts).
      inEach([...active.values()].filter(round => round.config.clients.includes(client.id)), round => { dropClient(round, client.id) })
    },
    connected (client, holds) {
      // Only a resumed round still counts on a client that says hello: a live round dropped it
      // when its connection was lost (or replaced, before this hello was answered). A client whose
      // runtime no longer holds the round (it restarted, or its budget ran out) is dropped at once
      // rather than waited for.
      const ids: string[] = []
      // Every resumed round stops waiting for it, whichever store write fails; the first failure
      // then refuses the hello (hub.ts says it to the client), as in `disconnect` (review 53c).
      inEach([...active.values()].filter(round => round.resumed === true && round.accepted.has(client.id) && !round.dropped.has(client.id)), round => {
        try {
          if (holds.includes(round.config.id)) ids.push(round.config.id)
          else dropClient(round, client.id)
        } finally {
          round.reconnecting?.settle(client.id)
        }
      })
      // Of the resumed rounds, those still taking this client's upload: one it sent that never
      // got in (refused while this coordinator stopped, or never read) comes again, the same frame.
      const awaiting = ids.filter(id => {
        const round = active.get(id)
        return round?.waiting?.kind === 'upload' && round.allowed.has(client.id) && !round.uploads.has(client.id) && !round.receiving.has(client.id)
      })
      // A round recover() is finishing, or has finished since the restart, that this uploader
      // holds: named in its welcome, so that it waits for the result (sent now, after the
      // welcome, if the round has ended) instead of taking the round for lost (review 47b).
      for (const id of holds) {
        if (ids.includes(id) || !(recovering.has(id) || recoveredEnds.has(id)) || !uploadedTo(id, client.id)) continue
        ids.push(id)
        const ended = recoveredEnds.get(id)
        if (ended !== undefined) queueMicrotask(() => { deps.hub().get(client.id)?.send(ended) })
      }
      return { rounds: ids, awaiting }
    },
    uploadAllowance (client) {
      // One upload frame per round the client accepted and has not uploaded to yet (an early
      // one, sent before uploads open, is held by `upload` until they do).
      const id = client.id
      let bytes = 0
      for (const round of active.values()) {
        if (!round.accepted.has(id) || round.dropped.has(id) || round.uploads.has(id) || round.receiving.has(id)) continue
        bytes += maxUploadFrameBytes(round.secure.uploadBytes)
      }
      return bytes
    }
  }

  const dispatch: { [K in Exclude<ClientMessage['type'], 'hello'>]: (round: ActiveRound, client: ClientConnection, m: Extract<ClientMessage, { type: K }>) => void | Promise<void> } = {
    accept (round, client) {
      if (round.waiting?.kind !== 'accept' || round.acceptsClosed === true) throw withRound(new InvalidInputError(`round ${round.config.id}: acceptances are closed`), round.config.id, { left: true })
      // A withdrawn (or disconnected) client stays out: its stored status must not turn back to 'accepted'.
      if (round.dropped.has(client.id)) throw withRound(new InvalidInputError(`round ${round.config.id}: this client withdrew or was dropped; it cannot accept again`), round.config.id, { left: true })
      if (round.declined.has(client.id)) throw withRound(new InvalidInputError(`round ${round.config.id}: this client declined; it cannot accept after`), round.config.id, { left: true })
      round.accepted.add(client.id)
      deps.store.setClient(round.config.id, client.id, 'accepted')
      round.waiting.gate.settle(client.id)
    },
    decline (round, client, m) {
      // After an upload a decline would only dodge the cooldown (the upload stays in the sum);
      // after an accept it is a withdrawal, and the round stops waiting for the client at once.
      if (round.uploads.has(client.id) || round.receiving.has(client.id)) throw withRound(new InvalidInputError(`round ${round.config.id}: already uploaded; a decline cannot take it back`), round.config.id)
      // Its own record, which can be ahead of ours (an upload sent that never counted here): the
      // next round leaves it out instead of offering what it will decline again. Its word can
      // only keep itself out.
      if (m.given !== undefined) client.given.set(round.config.model, afterUpload(client.given.get(round.config.model), m.given))
      if (round.accepted.has(client.id)) {
        dropClient(round, client.id)
        return
      }
      // Past the offer's window a client that never answered is out already: its record (above)
      // is kept, but it is not counted as declining a round its counts had closed (review 51a).
      if (round.acceptsClosed === true || round.resumed === true) return
      round.declined.add(client.id)
      deps.store.setClient(round.config.id, client.id, 'declined')
      const reason = m.reason.slice(0, MAX_DECLINE_REASON)
      if (round.declineReasons.has(reason) || round.declineReasons.size < MAX_DECLINE_REASONS) round.declineReasons.set(reason, (round.declineReasons.get(reason) ?? 0) + 1)
      emit({ type: 'declined', roundId: round.config.id, clientId: client.id, reason })
      round.waiting?.gate.settle(client.id)
    },
    progress (round, client, m) {
      if (round.dropped.has(client.id) && !round.uploads.has(client.id)) throw withRound(new InvalidInputError(`round ${round.config.id}: this client withdrew or was dropped`), round.config.id, { left: true })
      if (!round.accepted.has(client.id) || round.uploads.has(client.id) || round.receiving.has(client.id)) {
        throw withRound(new InvalidInputError(`round ${round.config.id}: progress only between accept and upload`), round.config.id)
      }
      if (m.loss !== null) round.losses.set(client.id, m.loss)
      emit({ type: 'progress', roundId: round.config.id, clientId: client.id, epoch: m.epoch, epochs: m.epochs, loss: m.loss })
    },
    async secagg (round, client, m) {
      // Offered is not enough: a client that declined, or did not accept in time, must not join the setup (the roster).
      if (!round.accepted.has(client.id) || round.dropped.has(client.id)) throw withRound(new InvalidInputError(`round ${round.config.id}: secure-aggregation messages only from clients that accepted the round and are still in it`), round.config.id, round.dropped.has(client.id) ? { left: true } : {})
      try {
        if (await round.secure.message(client.id, m.payload) === 'persist') {
          try {
            deps.store.saveSecureState(round.config.id, round.secure.snapshot())
          } catch (err) {
            // Not kept, the message would be lost at a restart while the upload after it is
            // stored (a wrong sum): the client is out instead (review 47f).
            dropClient(round, client.id, 'the coordinator could not save its secure-aggregation message')
            throw err
          }
        }
        if (round.persistWhenComplete === true && !round.secure.needsClients()) {
          deps.store.saveSecureState(round.config.id, round.secure.snapshot())
          round.persistWhenComplete = false
        }
      } catch (err) {
        throw withRound(err, round.config.id)
      }
    }
  }

  /**
   * The version a round trains and the layout of its trainable units. Checked before any client
   * is counted: a stale base or an unknown unit is the request's fault, whoever is connected.
   */
  function roundBase (request: RoundRequest): { row: NonNullable<ReturnType<Repository['latest']>>, layout: ReturnType<typeof trainableLayout>, units: string[], levels: string[] } {
    const row = deps.repo.latest(request.model)
    if (row === undefined) throw new NotFoundError(`no model named ${request.model}`)
    // A round's result becomes the next version, so it trains the latest: one trained on an older
    // version would revert its successors. `baseVersion` pins the expectation.
    if (request.baseVersion !== undefined && request.baseVersion !== row.version) {
      throw new ConflictError(`model ${request.model}: a round trains the latest version (${row.version}), not version ${request.baseVersion}: its result would revert what came after`)
    }
    const manifest = signedManifestOf(row).manifest
    const format = untrainableFormat(manifest.format)
    if (format !== undefined) throw new InvalidInputError(`model ${request.model}: ${format}`)
    return { row, layout: trainableLayout(manifest.tensors, request.trainable), units: request.trainable ?? trainableUnits(manifest.tensors), levels: [...new Set(manifest.blocks.map(b => b.access))].sort() }
  }

  async function configure (request: RoundRequest, base: ReturnType<typeof roundBase>, selected: string[]): Promise<RoundConfig> {
    const { row, layout, units } = base
    const clients = [...selected].sort()
    let fixedPoint
    try {
      fixedPoint = roundFixedPoint(request, clients)
    } catch (err) {
      // A bad request, not a fault of the coordinator's (review 47b: a 500 for dp.clip 1e12).
      if (!(err instanceof RangeError)) throw err
      const dp = request.dp === null ? '' : `, dp.clip ${request.dp.clip} at noise multiplier ${request.dp.noiseMultiplier}`
      throw new InvalidInputError(`round for ${request.model}: clip ${request.clip}${dp} and ${clients.length} clients leave no fixed-point scale under 2^31 (their updates could overflow the sum); lower the clip${dp === '' ? '' : ', dp.clip or dp.noiseMultiplier'} or the clients (selection.maxClients)`, { cause: err })
    }
    // NaiveMix: offer the pooled class means once gathered; until then this round gathers them.
    const mix = request.meanMix
    const stored = mix === null ? undefined : deps.store.classMeans(request.model, mix.classes, mix.features)
    const statsLength = mix !== null && stored === undefined ? classStatsLength(mix.classes, mix.features) : 0
    const draft: RoundConfig = {
      ...request,
      sampleCap: sampleCapOf(request),
      id: `r_${toHex(globalThis.crypto.getRandomValues(new Uint8Array(8)))}`,
      baseVersion: row.version,
      manifestCid: row.manifest_cid,
      trainable: units,
      tensors: layout.names,
      vectorLength: layout.parameters + statsLength + 1,
      statsLength,
      classMeans: stored === undefined ? null : classMeansOffer(stored),
      clients,
      fixedPoint: { ...fixedPoint },
      seed: toHex(globalThis.crypto.getRandomValues(new Uint8Array(32))),
      ...(await deps.offerExtras?.(request.secure))
    }
    return roundConfigSchema.parse(draft)
  }

  /**
   * Connected clients with data for the model, free, past their cooldown, and able to upload from
   * this base version in this mode (shared/rounds/one-update.ts: they would decline), so a retry
   * after a failed round goes to the others.
   */
  function eligible (request: RoundRequest, baseVersion: number, levels: readonly string[]): { ids: string[], givenAtBase: number, lackLevels: number, otherModels: number, inRounds: number, resting: number } {
    const { model, selection: { cooldownMs } } = request
    const now = Date.now()
    let givenAtBase = 0
    let lackLevels = 0
    // Counted so that "0 eligible" says where the connected clients are (review 52a).
    let otherModels = 0
    let inRounds = 0
    let resting = 0
    const ids = deps.hub().clients().filter(c => {
      if (!c.models.includes(model)) {
        otherModels++
        return false
      }
      if (busy.has(c.id)) {
        inRounds++
        return false
      }
      // Training needs the whole base model: a token that may not read some of its blocks
      // (review 50a M2) would fail the round at its fetch.
      const reads = c.reads ?? [DEFAULT_ACCESS_LEVEL]
      if (!levels.every(level => readsLevel(reads, level))) {
        lackLevels++
        return false
      }
      if (repeatsBase(newestGiven(deps.store.newestUpload(c.id, model), c.given.get(model)), uploadOf(baseVersion, request.secure.mode))) {
        givenAtBase++
        return false
      }
      const last = deps.store.lastParticipation(c.id)
      if (last === undefined || now - last >= cooldownMs) return true
      resting++
      return false
    }).map(c => c.id)
    return { ids, givenAtBase, lackLevels, otherModels, inRounds, resting }
  }

  function fail (roundId: string, reason: string): void {
    const row = deps.store.get(roundId)
    if (row !== undefined && !isFinal(row.state)) {
      deps.store.transition(roundId, 'failed', { reason })
      deps.store.deleteUploads(roundId)
      emit({ type: 'state', roundId, state: 'failed', detail: reason })
    }
  }

  /** Clients that said no to a round, as stored (a restart forgets the live round's sets). */
  function declinedIn (roundId: string): number {
    return deps.store.clients(roundId).filter(c => c.status === 'declined').length
  }

  function summary (id: string, participants: RoundSummary['participants']): RoundSummary {
    const row = deps.store.get(id) as RoundRow
    return { id, model: row.model, state: row.state as 'published' | 'failed', baseVersion: row.baseVersion, version: row.version, reason: row.reason, metrics: row.metrics, participants }
  }

  /** Models whose round start() is setting up (between picking clients and registering the round). */
  const starting = new Set<string>()
  /** Rounds a restart left that recover() has still to end: round id → model. */
  const recovering = new Map<string, string>()
  /**
   * The results of the rounds this start recovered or resumed, for their uploaders that reconnect
   * after they ended (kept for this process's life: a restart leaves a handful of rounds at most).
   */
  const recoveredEnds = new Map<string, Extract<ServerMessage, { type: 'result' }>>()

  /** The round that holds `model` now, described, if any: live, resumed, being set up or being recovered. */
  function runningOn (model: string): string | undefined {
    if (starting.has(model)) return 'a round being set up'
    for (const [id, round] of active) if (round.config.model === model) return `round ${id}`
    for (const [id, m] of recovering) if (m === model) return `round ${id} (left by the last start, being recovered)`
    return undefined
  }

  async function start (input: RoundRequestInput, signal?: AbortSignal): Promise<{ id: string, done: Promise<RoundSummary> }> {
    if (stopping) throw new UnavailableError('the coordinator is stopping')
    const request = roundRequestSchema.parse(input)
    checkRoundRequest(request)
    if (request.secure.mode === 'masking' && request.selection.maxClients < MIN_MASKING_CLIENTS) throw new InvalidInputError(`selection.maxClients ${request.selection.maxClients}: masking needs at least ${MIN_MASKING_CLIENTS} clients`)
    const other = runningOn(request.model)
    if (other !== undefined) throw new RoundRunningError(`model ${request.model}: ${other} is still running; one round per model at a time, since of two rounds from one base version only the first to finish could publish`)
    const base = roundBase(request)
    const { levels } = base
    const { ids: candidates, givenAtBase, lackLevels, otherModels, inRounds, resting } = eligible(request, base.row.version, levels)
    // A masking round with fewer clients could only fail at its first stage (secagg/server.ts),
    // and any round with fewer than minUploads at its deadline; clients also size their DP
    // noise for minUploads, and refuse an offer selecting fewer (participant.ts).
    const masking = request.secure.mode === 'masking' ? MIN_MASKING_CLIENTS : 0
    const least = Math.max(masking, request.selection.minClients, request.selection.minUploads ?? 0)
    if (candidates.length < least) {
      // Where the other connected clients are, each reason said only when it left some out.
      const others = ([
        [givenAtBase, `already uploaded from version ${base.row.version} to a round that failed or did not take the upload, and give one update per base version`],
        [lackLevels, `connected with tokens that may not read every block of version ${base.row.version}, which has blocks at ${levels.filter(l => l !== DEFAULT_ACCESS_LEVEL).join(', ')}: give those runtimes tokens made with those levels, token create edge --level`],
        [otherModels, 'connected for other models only: a runtime trains the models its participant names'],
        [inRounds, 'in another model\'s round'],
        [resting, 'took part less than selection.cooldownMs ago']
      ] as const).filter(([n]) => n > 0).map(([n, why]) => ` (${n} more ${why})`).join('')
      const why = least === request.selection.minClients ? '' : least === masking ? ` (masking needs ${MIN_MASKING_CLIENTS})` : ` (selection.minUploads)`
      // The remedy named where the lock-out shows (review 49f): the README's alone was missed.
      const remedy = givenAtBase === 0 ? '' : `; those that uploaded train again from a new version (ingest changed weights: the same files are the same version)`
      throw new TooFewClientsError(`round for ${request.model} not started: ${candidates.length} eligible client(s) connected${others}, at least ${least} needed${why}${remedy}`)
    }
    const count = Math.min(request.selection.maxClients, Math.max(least, Math.ceil(request.selection.fraction * candidates.length)))
    const selected = sample(candidates, count)
    // Reserve the clients before the first await (configure may ask the decryptor over the
    // network): a concurrent start() must not pick them too.
    for (const id of selected) busy.add(id)
    starting.add(request.model)
    let config: RoundConfig
    let secure: SecureRoundServer
    try {
      config = await configure(request, base, selected)
      secure = await deps.secureServer(config)
      if (stopping) throw new UnavailableError('the coordinator is stopping')
    } catch (err) {
      for (const id of selected) busy.delete(id)
      throw err
    } finally {
      starting.delete(request.model)
    }
    try {
      deps.store.create(config)
    } catch (err) {
      // Not recorded, so not run: the clients are free for the next round (they stayed busy).
      for (const id of selected) busy.delete(id)
      throw err
    }
    const controller = new AbortController()
    const onAbort = (): void => controller.abort(signal?.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    let openUploads = (): void => {}
    const uploadsOpen = new Promise<void>(resolve => { openUploads = resolve })
    const round: ActiveRound = { ...blankRound(config, secure, controller), uploadsOpen, openUploads }
    const minUploads = minUploadsOf(config)
    active.set(config.id, round)
    emit({ type: 'state', roundId: config.id, state: 'open', detail: `${config.clients.length} client(s) offered` })
    return { id: config.id, done: drive(round, minUploads, signal, onAbort) }
  }

  async function drive (round: ActiveRound, minUploads: number, signal: AbortSignal | undefined, onAbort: () => void): Promise<RoundSummary> {
    const { config, controller } = round
    const started = performance.now()
    let left = false
    let failure: unknown
    try {
      round.waiting = { kind: 'accept', gate: gate(config.clients, config.deadlines.acceptMs, controller.signal) }
      for (const id of config.clients) {
        const c = deps.hub().get(id)
        if (c === undefined) dropClient(round, id)
        else c.send({ type: 'offer', config })
      }
      await round.waiting.gate.done
      // Acceptances close here: during the secure setup (masking: up to two setup deadlines) a late
      // accept is refused, not recorded (with its cooldown) for a round that will not include the
      // client. An accepted client's upload is still held until uploads open.
      round.acceptsClosed = true
      const accepted = [...round.accepted].filter(id => !round.dropped.has(id))
      if (accepted.length < minUploads) {
        const { count, words } = declined(round)
        throw new RoundFailure(`${accepted.length} client(s) accepted, at least ${minUploads} needed${count}`, words)
      }
      const ready = await round.secure.setup(accepted, io(round))
      // Stopped during the setup: it ended early, and a round not yet collecting fails.
      throwIfAborted(controller)
      deps.store.saveSecureState(config.id, round.secure.snapshot())
      if (ready.length < minUploads) throw new RoundFailure(`${ready.length} client(s) completed secure-aggregation setup, at least ${minUploads} needed`)
      for (const id of ready) round.allowed.add(id)
      for (const id of accepted) if (!round.allowed.has(id)) dropClient(round, id, 'it did not complete the secure-aggregation setup in time')
      transition(round, 'collecting')
      round.waiting = { kind: 'upload', gate: gate(ready.filter(id => !round.dropped.has(id)), config.deadlines.trainMs, controller.signal) }
      round.openUploads()
      await round.waiting.gate.done
      round.waiting = undefined
      throwIfAborted(controller)
      const late = ready.filter(id => !round.uploads.has(id))
      for (const id of late) dropClient(round, id, 'no upload before the training deadline')
      if (round.uploads.size < minUploads) throw new RoundFailure(`${round.uploads.size} upload(s) before the deadline, at least ${minUploads} needed`)
      transition(round, 'unmasking')
      deps.store.saveSecureState(config.id, round.secure.snapshot())
      round.persistWhenComplete = true
      const losses = [...round.losses.entries()].filter(([id]) => round.uploads.has(id)).map(([, l]) => l)
      await aggregateAndPublish(deps, config, round.uploads, round.secure, io(round), {
        ...turnout(config, round.declined.size, round.uploads.size),
        accepted: accepted.length,
        // The median: each loss is its client's own word, and one client reporting −1e9 set the
        // mean to anything (review 47b); the median moves only when half the uploaders lie.
        ...(losses.length > 0 ? { trainLoss: median(losses) } : {}),
        roundMs: Math.round(performance.now() - started)
      })
    } catch (err) {
      failure = err
      left = leftForNextStart(round)
      if (!left) fail(config.id, reasonOf(err))
    } finally {
      signal?.removeEventListener('abort', onAbort)
      unregister(round)
      round.openUploads()
    }
    if (left) throw new UnavailableError(`the coordinator stopped during round ${config.id}: its next start finishes it from the uploads stored, or resumes it with its uploaders (masking)`)
    const s = summary(config.id, { ...turnout(config, round.declined.size, round.uploads.size), accepted: round.accepted.size, uploaded: round.uploads.size })
    // The clients are told the failure without its operator-only detail (when it is what was stored).
    const told = failure instanceof RoundFailure && s.reason === reasonOf(failure) ? { ...s, reason: failure.message } : s
    announce(config, told)
    return s
  }

  /** Ends a round's waits and frees its model and clients for the next round (live or resumed). */
  function unregister (round: ActiveRound): void {
    round.controller.abort()
    active.delete(round.config.id)
    for (const id of round.config.clients) busy.delete(id)
  }

  /** The result message of a round that ended so. */
  function resultOf (config: RoundConfig, end: Pick<RoundSummary, 'state' | 'version' | 'reason'>): Extract<ServerMessage, { type: 'result' }> {
    // The result message holds a reason of at most MAX_RESULT_REASON characters (messages.ts): a
    // longer one, which clients' own words can make, would be refused by every client.
    const reason = end.reason === null || end.reason.length <= MAX_RESULT_REASON ? end.reason : `${end.reason.slice(0, MAX_RESULT_REASON - 1)}…`
    return { type: 'result', roundId: config.id, state: end.state, version: end.version, reason }
  }

  /** Tells the round's connected clients how it ended; returns what they were told. */
  function announce (config: RoundConfig, end: Pick<RoundSummary, 'state' | 'version' | 'reason'>): Extract<ServerMessage, { type: 'result' }> {
    const message = resultOf(config, end)
    for (const id of config.clients) deps.hub().get(id)?.send(message)
    return message
  }

  /**
   * announce() for a round this start recovered or resumed, which ended as stored: the result is
   * also kept for its uploaders that reconnect after it ended (a resumed mode-none round waits for
   * none of them: one back later took the round for lost; found in CI).
   */
  function announceAfterRestart (config: RoundConfig, ended: RoundRow): void {
    recoveredEnds.set(config.id, announce(config, { state: ended.state as 'published' | 'failed', version: ended.version, reason: ended.reason }))
  }

  /** Whether `clientId` uploaded to round `roundId`, as stored. */
  const uploadedTo = (roundId: string, clientId: string): boolean => deps.store.clients(roundId).some(c => c.clientId === clientId && c.status === 'uploaded')

  /**
   * A round the stop aborted while it was collecting, or summing without its clients (Paillier
   * waiting on its decryptor, which keeps its answer for the same request), is left as a kill
   * would leave it, not failed: the next start finishes it from the uploads stored, or resumes
   * it (masking). Failing it would cost its uploaders that base version (one update per base)
   * for a mere restart. One not yet collecting, or whose sum was asking clients (they answer
   * once), fails as before; so does one that failed on its own while the stop waited.
   */
  function leftForNextStart (round: ActiveRound): boolean {
    if (round.controller.signal.reason !== stopReason) return false
    const state = deps.store.get(round.config.id)?.state
    return state === 'collecting' || (state === 'unmasking' && !round.secure.needsClients())
  }

  async function run (input: RoundRequestInput, signal?: AbortSignal): Promise<RoundSummary> {
    return await (await start(input, signal)).done
  }

  /**
   * A round killed or stopped while collecting, resumed (review 47b: failed for want of the uploads
   * still to come, it cost its uploaders their base version). Its runtimes keep an accepted round
   * across a reconnect and say so in their hello (participant.ts), so it waits for them, at most
   * half the unmask deadline: those still away, or no longer holding the round, are dropped. The
   * clients that had not uploaded may do so until the training deadline the round had before
   * the restart (the restart does not move it). Then it runs the sum
   * as a live round would (masking: ConsistencyCheck and Unmasking among those that uploaded),
   * or fails with too few uploads. Runs on after `recover()` returns; its end is reported as
   * events and `result` messages. Killed once a masking sum had begun, a round fails instead:
   * clients answer each of those requests once, and the snapshot predates them.
   */
  function resume (row: RoundRow, uploads: Map<string, AcceptedUpload>, secure: SecureRoundServer): void {
    const { config } = row
    const uploaders = [...uploads.keys()]
    // Those that completed the setup and had not uploaded: 'accepted' in the store (a client that
    // did not complete it was dropped, and stored so).
    const training = deps.store.clients(config.id).filter(c => c.status === 'accepted' && !uploads.has(c.clientId)).map(c => c.clientId)
    const taking = [...uploaders, ...training]
    const controller = new AbortController()
    const round: ActiveRound = {
      ...blankRound(config, secure, controller),
      acceptsClosed: true,
      accepted: new Set(taking),
      allowed: new Set(taking),
      uploads,
      persistWhenComplete: true,
      resumed: true,
      // Uploaders are needed again in masking only (their unmask shares).
      reconnecting: gate(config.secure.mode === 'masking' ? taking : training, config.deadlines.unmaskMs / 2, controller.signal)
    }
    for (const id of config.clients) if (!round.accepted.has(id)) dropClient(round, id)
    // A collecting row's updatedAt is when it began collecting (store.ts: only state changes set it).
    const trainUntil = Date.parse(row.updatedAt) + config.deadlines.trainMs
    if (training.length > 0) round.waiting = { kind: 'upload', gate: gate(training, Math.max(0, trainUntil - Date.now()), controller.signal) }
    // Registered last, with nothing after it that can throw: a half-registered round would stay
    // in `active` with no task to end it.
    active.set(config.id, round)
    for (const id of config.clients) busy.add(id)
    void (async () => {
      let left = false
      try {
        emit({ type: 'state', roundId: config.id, state: 'collecting', detail: `resumed after a restart: waiting for ${uploaders.length} uploader(s)${training.length === 0 ? '' : ` and ${training.length} client(s) still training`} to reconnect` })
        // What its server, built offline, could not check at the start (a Paillier key), now:
        // before those still training upload for nothing. A service out of reach is the sum's to meet.
        await secure.ready?.(controller.signal).catch((err: unknown) => {
          throwIfAborted(controller)
          if (!isUnreachable(err)) throw new RoundFailure(`resumed after a restart: ${err instanceof Error ? err.message : String(err)}`)
        })
        await round.reconnecting?.done
        round.reconnecting = undefined
        throwIfAborted(controller)
        // Those it waited for and that are not back are out; in mode none its uploaders are not
        // waited for, and one back later is named in its welcome (found in CI: it was dropped here).
        for (const id of config.secure.mode === 'masking' ? taking : training) if (deps.hub().get(id) === undefined) dropClient(round, id)
        if (round.waiting !== undefined) {
          await round.waiting.gate.done
          round.waiting = undefined
          throwIfAborted(controller)
          for (const id of training) if (!uploads.has(id)) dropClient(round, id, 'no upload before the training deadline')
        }
        const minUploads = minUploadsOf(config)
        if (uploads.size < minUploads) throw new RoundFailure(`resumed after a restart with ${uploads.size} upload(s) by the training deadline, at least ${minUploads} needed`)
        // From here clients are asked: a restart from now on fails the round (see above).
        transition(round, 'unmasking')
        if (config.secure.mode === 'masking') deps.store.saveSecureState(config.id, round.secure.snapshot())
        await aggregateAndPublish(deps, config, uploads, secure, io(round), { ...turnout(config, declinedIn(config.id), uploads.size), recovered: 1, resumed: 1 })
      } catch (err) {
        left = leftForNextStart(round)
        if (!left) fail(config.id, reasonOf(err))
      } finally {
        unregister(round)
      }
      if (left) return
      announceAfterRestart(config, deps.store.get(config.id) as RoundRow)
    })().catch(err => {
      // After stop() closed the store, say: reported, never an unhandled rejection.
      emit({ type: 'state', roundId: config.id, state: 'interrupted', detail: `resumed round: ${(err as Error).message}; its stored state is as it last was` })
    })
  }

  /** Rounds left unfinished that `recover()` ends (those resumed are not among them), with their uploads and secure server where already read. */
  let toFinish: Array<{ row: RoundRow, uploads?: Map<string, AcceptedUpload>, secure?: SecureRoundServer }> | undefined

  /**
   * Resumes the masking rounds a killed or stopped coordinator left collecting (local work only): call it
   * before the hub answers any hello, so that a reconnecting uploader finds its round named in
   * its welcome. `recover()` ends the other unfinished rounds, after, since they may wait on a
   * decryptor that must not hold those reconnects.
   */
  async function resumeInterrupted (): Promise<void> {
    if (toFinish !== undefined) return
    toFinish = []
    for (const row of deps.store.unfinished()) {
      // Until it is ended or resumed (registered in `active`), a new round of its model is refused.
      recovering.set(row.id, row.config.model)
      if (row.state !== 'collecting') {
        toFinish.push({ row })
        continue
      }
      try {
        const { mode } = row.config.secure
        const uploads = deps.store.uploads(row.id)
        // A round with the uploads its sum needs is finished from them, as it was (Paillier's by
        // recover(), whose server asks the decryptor, which must not hold up the start).
        if (mode !== 'masking' && uploads.size >= minUploadsOf(row.config)) {
          toFinish.push(mode === 'none' ? { row, uploads } : { row })
          continue
        }
        // Short of them, it goes on: built without asking the decryptor, which its sum asks.
        const secure = await deps.secureServer(row.config, row.secureState, { offline: true })
        if (mode !== 'masking' || secure.needsClients()) {
          resume(row, uploads, secure)
          recovering.delete(row.id)
        } else {
          toFinish.push({ row, uploads, secure })
        }
      } catch {
        // Ended with the others, by recover(), which says why.
        toFinish.push({ row })
      }
    }
  }

  async function recover (): Promise<RoundSummary[]> {
    await resumeInterrupted()
    const out: RoundSummary[] = []
    const finish = toFinish ?? []
    toFinish = []
    for (const { row, uploads: read, secure: restored } of finish) {
      const uploads = read ?? deps.store.uploads(row.id)
      const participants = { ...turnout(row.config, declinedIn(row.id), uploads.size), accepted: 0, uploaded: uploads.size }
      const minUploads = minUploadsOf(row.config)
      let summing = false
      try {
        if (row.state === 'open') throw new RoundFailure('the coordinator restarted before uploads began')
        if (uploads.size < minUploads) throw new RoundFailure(`the coordinator restarted with ${uploads.size} upload(s) accepted, at least ${minUploads} needed`)
        const secure = restored ?? await deps.secureServer(row.config, row.secureState)
        if (secure.needsClients()) throw new RoundFailure(`the coordinator restarted while the ${row.config.secure.mode} sum was asking its clients, which answer each request once`)
        if (row.state === 'collecting') transition(row, 'unmasking')
        const controller = new AbortController()
        // A Paillier sum is the decryptor's work, under the call's own deadline as in a live round
        // (secure/paillier.ts: minutes for a large model); a masking sum needs no client any more.
        // stop() ends either at once.
        const timer = row.config.secure.mode === 'paillier' ? undefined : setTimeout(() => controller.abort(), row.config.deadlines.unmaskMs)
        recoveries.add(controller)
        if (stopping) controller.abort(stopReason)
        summing = true
        try {
          const send: RoundIo['send'] = (clientId, payload) => deps.hub().get(clientId)?.send({ type: 'secagg', roundId: row.id, payload })
          await aggregateAndPublish(deps, row.config, uploads, secure, { send, signal: controller.signal }, { offered: participants.offered, declined: participants.declined, dropped: participants.dropped, recovered: 1 })
        } finally {
          clearTimeout(timer)
          recoveries.delete(controller)
        }
      } catch (err) {
        // Stopped meanwhile: left for the next start again, as a live round stopped mid-sum is.
        if (!(stopping && summing)) fail(row.id, reasonOf(err))
      } finally {
        recovering.delete(row.id)
      }
      const ended = deps.store.get(row.id)
      if (ended !== undefined && (ended.state === 'published' || ended.state === 'failed')) {
        // Accepted and never uploaded: out of the round, as a live or resumed round marks them.
        for (const { clientId, status } of deps.store.clients(row.id)) if (status === 'accepted') deps.store.setClient(row.id, clientId, 'dropped')
        announceAfterRestart(row.config, ended)
      }
      out.push(summary(row.id, participants))
    }
    return out
  }

  const schedules = new Set<() => Promise<void>>()
  /** Sums of rounds left by the last start, being finished by recover(). */
  const recoveries = new Set<AbortController>()

  return {
    handlers,
    run,
    start,
    resumeInterrupted,
    recover,
    active: () => [...active.keys()],
    schedule (request, options) {
      const controller = new AbortController()
      // Never rejects: an error thrown out of it had nobody to catch it and ended the process.
      const loop = (async () => {
        for (let i = 0; options.rounds === undefined || i < options.rounds; i++) {
          if (controller.signal.aborted) return
          try {
            // Run first: `onRound?.(await run())` skips the run itself when there is no onRound.
            const summary = await run(request, controller.signal)
            options.onRound?.(summary)
          } catch (err) {
            if (controller.signal.aborted) return
            // Another round on the model (an operator's, a resumed one) only delays this schedule,
            // and is not one of its rounds: waited out, a second at least between tries.
            if (err instanceof RoundRunningError) {
              i--
              await sleep(Math.max(options.pauseMs, 1000), undefined, { signal: controller.signal }).catch(() => undefined)
              continue
            }
            if (!(err instanceof UnavailableError)) {
              try {
                options.onError?.(err instanceof Error ? err : new Error(String(err)))
              } catch {}
              return
            }
          }
          await sleep(options.pauseMs, undefined, { signal: controller.signal }).catch(() => undefined)
        }
      })()
      const stop = async (): Promise<void> => { controller.abort(); await loop; schedules.delete(stop) }
      schedules.add(stop)
      return { stop }
    },
    async stop () {
      stopping = true
      await Promise.all([...schedules].map(async s => await s()))
      for (const round of active.values()) round.controller.abort(stopReason)
      for (const controller of recoveries) controller.abort(stopReason)
      const deadline = Date.now() + 5000
      while (active.size > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
    }
  }
}

/**
 * A round's offered, declined and dropped counts: dropped are the offered that neither declined
 * nor uploaded (review 49f: declines were counted as dropped).
 */
function turnout (config: RoundConfig, declined: number, uploaded: number): { offered: number, declined: number, dropped: number } {
  const offered = config.clients.length
  return { offered, declined, dropped: offered - declined - uploaded }
}
