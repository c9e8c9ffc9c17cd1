/**
 * The version ledger over HTTP (issue 4), plain enough for a client in any language: the latest
 * signed checkpoint as a C2SP signed note (with witness cosignatures), the log's verifier key,
 * entries with their exact leaf bytes, and RFC 9162 inclusion and consistency proofs. Release
 * channels (stable, canary with a rollout fraction) point at anchored versions.
 */
import type { FastifyInstance } from 'fastify'
import type { ZodTypeProvider } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { modelNameSchema } from '../../shared/client/api-schemas.ts'
import type { SigningKeyPair } from '../../shared/crypto/sign.ts'
import { signChannels } from '../../shared/ledger/channels.ts'
import { channelNameSchema, channelRequestSchema, channelSetResponseSchema, channelsResponseSchema, consistencyResponseSchema, ENTRIES_PAGE, entriesResponseSchema, entryResponseSchema, inclusionResponseSchema, ledgerNumberSchema, type Channels } from '../../shared/ledger/api.ts'
import { parseEntry, type LedgerEntry } from '../../shared/ledger/entry.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError } from '../../shared/errors/errors.ts'
import type { Repository } from '../store/repository.ts'
import type { VersionLog } from '../ledger/log.ts'
import { authenticate, mayUseModel, needsToken } from './auth.ts'
import { BODY_REFUSALS, refusals, WRITE_REFUSALS } from './errors.ts'

export interface LedgerRoutesDeps {
  repo: Repository
  log: VersionLog
  /** Signs channels answers (the manifests' key). */
  signing: SigningKeyPair
}

const errors = refusals()
const TEXT = 'text/plain; charset=utf-8'

/**
 * A stored leaf as an entry. Bytes that are not one are never served as one: the log's own
 * storage is at fault (an edit behind its back), so 502 IntegrityError, not the caller's 400.
 */
function storedEntry (bytes: Uint8Array, index: number): LedgerEntry {
  try {
    return parseEntry(bytes, `ledger entry ${index}`)
  } catch (err) {
    if (err instanceof IntegrityError) throw err
    throw new IntegrityError(`ledger entry ${index} as stored is not a ledger entry: ${(err as Error).message}`, { cause: err })
  }
}

export async function ledgerRoutes (app: FastifyInstance, deps: LedgerRoutesDeps): Promise<void> {
  const api = app.withTypeProvider<ZodTypeProvider>()
  const { log } = deps
  const inTree = (what: string, value: number, size: number): void => {
    if (value > size) throw new InvalidInputError(`${what} ${value} is beyond the log's size ${size}`)
  }

  api.get('/ledger/checkpoint', {
    schema: { operationId: 'getCheckpoint', summary: 'The latest signed checkpoint (C2SP tlog-checkpoint in a signed note, witness cosignatures appended)', produces: [TEXT] }
  }, async (_req, reply) => {
    // Behind the log when the signing of a new version's checkpoint failed after the version was
    // recorded (its commit refused: a full disk): signed now, not left unverifiable to every
    // runtime until the next publish (review 46f).
    const latest = log.unsigned() ? undefined : log.latest()
    const served = latest ?? log.checkpoint()
    return await reply.type(TEXT).header('cache-control', 'no-cache').send(served.cosigned)
  })

  api.get('/ledger/key', {
    schema: { operationId: 'getLedgerKey', summary: 'The log\'s verifier key: name+hexkeyid+base64(0x01‖pubkey)', produces: [TEXT] }
  }, async (_req, reply) => await reply.type(TEXT).send(`${log.vkey}\n`))

  api.get('/ledger/entries/:index', {
    schema: { operationId: 'getLedgerEntry', summary: 'One ledger entry and its exact leaf bytes', params: z.object({ index: ledgerNumberSchema }), response: { 200: entryResponseSchema, ...refusals(502) } }
  }, async (req, reply) => {
    const bytes = log.entry(req.params.index)
    void reply.header('cache-control', 'public, max-age=31536000, immutable')
    return { index: req.params.index, entry: storedEntry(bytes, req.params.index), leaf: toBase64(bytes) }
  })

  api.get('/ledger/entries', {
    schema: {
      operationId: 'listLedgerEntries', summary: `Leaf bytes of entries \`from\` to \`to\` − 1, at most ${ENTRIES_PAGE} per answer (ask again from where it ends): what a log monitor reads`,
      querystring: z.strictObject({ from: ledgerNumberSchema, to: ledgerNumberSchema }),
      response: { 200: entriesResponseSchema, ...refusals(502) }
    }
  }, async (req, reply) => {
    const { from, to } = req.query
    inTree('to', to, log.size())
    if (from >= to) throw new InvalidInputError(`from ${from} is not below to ${to}`)
    // Entries below the log's size never change.
    void reply.header('cache-control', 'public, max-age=31536000, immutable')
    const leaves = log.entries(from, Math.min(to, from + ENTRIES_PAGE))
    leaves.forEach((leaf, i) => storedEntry(leaf, from + i))
    return { from, leaves: leaves.map(toBase64) }
  })

  api.get('/ledger/proof/inclusion', {
    schema: {
      operationId: 'getInclusionProof', summary: 'RFC 9162 inclusion proof of entry `index` in the tree of `size` entries',
      querystring: z.strictObject({ index: ledgerNumberSchema, size: ledgerNumberSchema }),
      response: { 200: inclusionResponseSchema, ...errors }
    }
  }, async (req, reply) => {
    const { index, size } = req.query
    inTree('size', size, log.size())
    if (index >= size) throw new InvalidInputError(`index ${index} is not below size ${size}`)
    void reply.header('cache-control', 'public, max-age=31536000, immutable')
    return { index, size, hashes: log.inclusionProof(index, size).map(toBase64) }
  })

  api.get('/ledger/proof/consistency', {
    schema: {
      operationId: 'getConsistencyProof', summary: 'RFC 9162 consistency proof between the trees of `from` and `to` entries',
      querystring: z.strictObject({ from: ledgerNumberSchema, to: ledgerNumberSchema }),
      response: { 200: consistencyResponseSchema, ...errors }
    }
  }, async (req, reply) => {
    const { from, to } = req.query
    inTree('to', to, log.size())
    if (from > to) throw new InvalidInputError(`from ${from} is greater than to ${to}`)
    void reply.header('cache-control', 'public, max-age=31536000, immutable')
    return { from, to, hashes: log.consistencyProof(from, to).map(toBase64) }
  })

  const channelsOf = (name: string): Channels => {
    const latest = deps.repo.latest(name)
    if (latest === undefined) throw new NotFoundError(`no model named ${name}`)
    const set = deps.repo.channels(name)
    const stable = set.find(c => c.channel === 'stable')
    const canary = set.find(c => c.channel === 'canary')
    const channels = {
      model: name,
      stable: { version: stable?.version ?? latest.version, followsLatest: stable === undefined },
      canary: canary === undefined ? null : { version: canary.version, rollout: canary.rollout }
    }
    // Both terms only grow: versions are appended, moves counted (shared/ledger/channels.ts).
    return signChannels(channels, latest.version + deps.repo.channelMoves(name), log.size(), deps.signing)
  }

  api.get('/v1/models/:name/channels', {
    schema: { operationId: 'getChannels', summary: 'A model\'s release channels', params: z.object({ name: modelNameSchema }), response: { 200: channelsResponseSchema, ...errors } }
  }, async req => channelsOf(req.params.name))

  api.delete('/v1/models/:name/channels/:channel', {
    schema: {
      operationId: 'clearChannel', summary: 'Clear a release channel: stable follows the latest version again; the canary ends',
      ...needsToken('ingest'),
      params: z.object({ name: modelNameSchema, channel: channelNameSchema }),
      response: { 200: channelsResponseSchema, ...refusals(...WRITE_REFUSALS) }
    }
  }, async req => {
    const caller = await authenticate(req, deps.repo)
    if (!caller.grants.ingest) throw new AccessDeniedError(`role ${caller.role} may not set release channels`)
    const { name, channel } = req.params
    mayUseModel(caller, name, 'set the release channels of')
    if (deps.repo.latest(name) === undefined) throw new NotFoundError(`no model named ${name}`)
    // Idempotent: clearing a channel that is not set leaves it as asked.
    deps.repo.clearChannel(name, channel)
    return channelsOf(name)
  })

  api.put('/v1/models/:name/channels/:channel', {
    schema: {
      operationId: 'setChannel', summary: 'Point a release channel at an anchored version',
      ...needsToken('ingest'),
      params: z.object({ name: modelNameSchema, channel: channelNameSchema }),
      body: channelRequestSchema,
      response: { 200: channelSetResponseSchema, ...refusals(...BODY_REFUSALS, ...WRITE_REFUSALS) }
    }
  }, async req => {
    const caller = await authenticate(req, deps.repo)
    if (!caller.grants.ingest) throw new AccessDeniedError(`role ${caller.role} may not set release channels`)
    const { name, channel } = req.params
    mayUseModel(caller, name, 'set the release channels of')
    if (deps.repo.latest(name) === undefined) throw new NotFoundError(`no model named ${name}`)
    if (deps.repo.version(name, req.body.version) === undefined) throw new NotFoundError(`model ${name} has no version ${req.body.version}`)
    if (log.indexOf(name, req.body.version) === undefined) throw new InvalidInputError(`${name}@${req.body.version} is not anchored in the ledger`)
    if (channel === 'stable' && req.body.rollout !== undefined && req.body.rollout !== 1) throw new InvalidInputError('rollout applies to the canary channel only')
    // Moving the canary to a new version keeps its rollout unless one is given: falling back to 1
    // widened a 10 % canary to every canary client without a word.
    const kept = channel === 'canary' ? deps.repo.channels(name).find(c => c.channel === 'canary')?.rollout : undefined
    const rollout = req.body.rollout ?? kept ?? 1
    deps.repo.setChannel(name, channel, req.body.version, rollout)
    return { model: name, channel, version: req.body.version, rollout }
  })
}
