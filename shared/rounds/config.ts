/**
 * A training round's configuration (DESIGN.md, "Round"): what the coordinator offers and every
 * selected runtime trains by. It crosses the wire inside the round offer, so it is a strict
 * schema; the coordinator fills the derived fields (trainable tensors, vector length, fixed-point
 * scale, graph seed) from the base version's manifest before offering it.
 */
import { z } from 'zod'
import { InvalidInputError } from '../errors/errors.ts'
import { modelNameSchema } from '../manifest/schema.ts'
import { strategyConfigSchema } from './strategy-config.ts'
import { DEFAULT_FEDLC_TAU, DEFAULT_FEDRS_ALPHA } from './strategy-defaults.ts'

const positiveInt = z.number().int().positive()
const ms = z.number().int().positive().max(3_600_000)

export const secureModeSchema = z.enum(['none', 'masking', 'paillier'])
export type SecureMode = z.infer<typeof secureModeSchema>

/**
 * The clients' correction for label-distribution skew (shared/training/label-skew.ts): plain
 * cross-entropy, FedRS's restricted softmax (Li & Zhan 2021) or FedLC's logit calibration
 * (Zhang et al. 2022). Each client applies it with its own class counts.
 */
export const labelSkewSchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('none') }),
  z.strictObject({ method: z.literal('fedrs'), alpha: z.number().min(0, 'alpha must be in [0, 1]').max(1, 'alpha must be in [0, 1]').default(DEFAULT_FEDRS_ALPHA) }),
  z.strictObject({ method: z.literal('fedlc'), tau: z.number().min(0, 'tau must be a number ≥ 0').max(1000, 'tau must be at most 1000').default(DEFAULT_FEDLC_TAU) })
])

/** Largest classes × features a NaiveMix round may ask for: its means ride in the offer (4 bytes each). */
export const MAX_MEAN_MIX_VALUES = 262_144

/**
 * FedMix's NaiveMix (Yoon et al. 2021; shared/training/mean-mix.ts): clients mix every row with
 * the pooled class means, which the model's first such round gathers through its own secure sum.
 * For classifiers whose inputs lie within ±clip (`features` values a row, labels 0..classes − 1).
 */
export const meanMixSchema = z.strictObject({
  lambda: z.number().gt(0, 'lambda must be in (0, 0.5]').max(0.5, 'lambda must be in (0, 0.5]'),
  classes: z.number().int().min(2).max(1000),
  features: positiveInt
}).refine(m => m.classes * m.features <= MAX_MEAN_MIX_VALUES, { message: `classes × features must be at most ${MAX_MEAN_MIX_VALUES}` })
export type MeanMix = z.infer<typeof meanMixSchema>

/** What an operator asks for (HTTP, CLI, demo); everything else is derived. */
export const roundRequestSchema = z.object({
  model: modelNameSchema,
  /** Base version; the latest when omitted. */
  baseVersion: positiveInt.optional(),
  /** Block units to train (e.g. ["head"]); all float32 blocks when omitted. */
  trainable: z.array(z.string().min(1).max(200)).min(1).max(10_000).optional(),
  epochs: positiveInt.max(100).default(1),
  batchSize: positiveInt.max(65_536).default(32),
  learningRate: z.number().positive().max(10).default(0.05),
  optimizer: z.enum(['sgd', 'momentum', 'adam']).default('sgd'),
  loss: z.enum(['sparseCategoricalCrossentropy', 'meanSquaredError']).default('sparseCategoricalCrossentropy'),
  strategy: strategyConfigSchema.default({ name: 'fedavg' }),
  /** Client-side label-skew correction of the loss (classification only). */
  labelSkew: labelSkewSchema.default({ method: 'none' }),
  /** Client-side NaiveMix with the pooled class means (classification only; not with `dp` or `labelSkew`). */
  meanMix: meanMixSchema.nullable().default(null),
  secure: z.object({
    mode: secureModeSchema.default('masking'),
    /** Masking: the sparse SecAgg+ graph, or every pair masking (Bonawitz 2017). */
    graph: z.enum(['sparse', 'complete']).default('sparse'),
    /**
     * Masking threat model that sizes the graph's degree and Shamir threshold (Bell et al. 2020):
     * the fraction of clients that may collude with the server, and that may drop out after
     * sharing keys. Defaults in aggregation/secagg/constants.ts.
     */
    adversarialRate: z.number().min(0).lt(1).optional(),
    dropoutRate: z.number().min(0).lt(1).optional()
  }).strict().default({ mode: 'masking', graph: 'sparse' }),
  selection: z.object({
    /** Fraction of eligible connected clients offered the round. */
    fraction: z.number().gt(0).max(1).default(1),
    /** Fewer eligible clients than this: the round does not start. */
    minClients: positiveInt.max(10_000).default(2),
    maxClients: positiveInt.max(10_000).default(1000),
    /** Fewer uploads than this at the deadline: the round fails. */
    minUploads: positiveInt.max(10_000).optional(),
    /** A client that took part in a round sits out the next rounds for this long. */
    cooldownMs: z.number().int().min(0).max(86_400_000).default(0)
  }).strict().default({ fraction: 1, minClients: 2, maxClients: 1000, cooldownMs: 0 }),
  /** Per-coordinate clip of the delta before fixed-point encoding, and the update's L2 bound. */
  clip: z.number().positive().max(1e6).default(1),
  normBound: z.number().positive().max(1e9).default(100),
  /**
   * Sample counts above this weigh as this (FedAvg weights n_k / sampleCap, capped at 1). When
   * absent, DEFAULT_SAMPLE_CAP, or 1 in a DP round: every client weighs the same (`sampleCapOf`).
   */
  sampleCap: positiveInt.max(10_000_000).optional(),
  // noiseMultiplier ≥ 0.001: below it ε passes 5·10^5 (no privacy left to count), and far below
  // (≈ 1e-154) the accountant's ε overflows to Infinity, which a round's JSON metrics cannot hold.
  dp: z.object({ noiseMultiplier: z.number().min(0.001).max(100), clip: z.number().positive().max(1e6), delta: z.number().gt(0).lt(1).default(1e-5) }).strict().nullable().default(null),
  /** A block is resealed as new only when ‖Δ‖/‖w‖ exceeds this; otherwise reused by CID, and its change kept for the next round (apply.ts). */
  changeThreshold: z.number().min(0).max(1).default(1e-6),
  deadlines: z.object({
    acceptMs: ms.default(10_000),
    setupMs: ms.default(20_000),
    trainMs: ms.default(300_000),
    unmaskMs: ms.default(20_000)
  }).strict().default({ acceptMs: 10_000, setupMs: 20_000, trainMs: 300_000, unmaskMs: 20_000 })
}).strict()

export type RoundRequest = z.infer<typeof roundRequestSchema>

export const DEFAULT_SAMPLE_CAP = 10_000

/**
 * A request's sample cap. DP noise is sized for one client's whole clipped update (weight 1); a
 * client of n samples under the cap weighs n/sampleCap and shrinks its signal under the same
 * noise, so a DP round weighs every client the same unless the request says otherwise (review
 * 49f: with 400 samples a client and a cap of 10,000, the mean took 25 times the noise).
 */
export function sampleCapOf (request: Pick<RoundRequest, 'sampleCap' | 'dp'>): number {
  return request.sampleCap ?? (request.dp === null ? DEFAULT_SAMPLE_CAP : 1)
}
export type RoundRequestInput = z.input<typeof roundRequestSchema>

/** The offer's full config: the request plus what the coordinator derived from the manifest. */
export const roundConfigSchema = roundRequestSchema.extend({
  /** Decided by the coordinator (`sampleCapOf`): the weight every client of the round uses. */
  sampleCap: positiveInt.max(10_000_000).default(DEFAULT_SAMPLE_CAP),
  id: z.string().regex(/^r_[0-9a-f]{16}$/, 'a round id'),
  baseVersion: positiveInt,
  manifestCid: z.string().min(10).max(200),
  trainable: z.array(z.string().min(1)).min(1),
  /** Tensor names trained, in the order their values are concatenated in the update. */
  tensors: z.array(z.string().min(1)).min(1),
  /**
   * Update length: Σ trainable tensor sizes, then `statsLength` class statistics, then 1 (the
   * client's weight w_k rides last).
   */
  vectorLength: positiveInt.max(256_000_000),
  /**
   * NaiveMix: class statistics each client appends to its update (mean-mix.ts `classStats`),
   * asked for while the coordinator holds no pooled means for the model; 0 otherwise.
   */
  statsLength: z.number().int().min(0).max(MAX_MEAN_MIX_VALUES + 1000).default(0),
  /**
   * NaiveMix: the pooled class means (float32 little-endian, classes × features, base64) and each
   * class's share of all samples; null until a round has gathered them.
   */
  classMeans: z.strictObject({
    means: z.string().max(Math.ceil(MAX_MEAN_MIX_VALUES * 4 / 3) + 4).regex(/^[A-Za-z0-9+/]*=*$/, 'base64'),
    shares: z.array(z.number().min(0).max(1)).min(2).max(1000)
  }).nullable().default(null),
  /** Clients the update is aggregated over, as the fixed-point overflow bound assumes. */
  clients: z.array(z.string().regex(/^[0-9a-f]{64}$/)).min(1).max(10_000),
  fixedPoint: z.object({ clip: z.number().positive(), clients: positiveInt, scale: z.number().positive(), weightScale: z.number().positive() }).strict(),
  /** Public randomness for the SecAgg+ graph, 32 bytes hex. */
  seed: z.string().regex(/^[0-9a-f]{64}$/),
  /**
   * Paillier mode: the decryptor's published key description (n, key id, packing layout),
   * parsed by aggregation/paillier's own schema on arrival; clients recompute and may pin it.
   */
  paillier: z.record(z.string(), z.union([z.string().max(8192), z.number()])).optional()
}).strict()

export type RoundConfig = z.infer<typeof roundConfigSchema>

/**
 * What the request's fields cannot say alone: the selection's bounds must fit within maxClients
 * (else the round could only fail, or would ignore minClients); NaiveMix needs a classification
 * loss, no label-skew correction and no DP (its class statistics would need noise of their own).
 * Throws InvalidInputError naming the conflict.
 */
export function checkRoundRequest (request: RoundRequest): void {
  const { minClients, maxClients, minUploads } = request.selection
  if (minClients > maxClients) throw new InvalidInputError(`selection.minClients ${minClients} is above selection.maxClients ${maxClients}`)
  if (minUploads !== undefined && minUploads > maxClients) throw new InvalidInputError(`selection.minUploads ${minUploads} is above selection.maxClients ${maxClients}: the round could never have that many uploads`)
  if (request.meanMix === null) return
  // Each client's class statistics must reach the coordinator only inside a sum of several.
  if (request.secure.mode === 'none') throw new InvalidInputError('meanMix needs secure aggregation (masking or paillier): in mode none the coordinator would see each client\'s class means')
  if (minUploads !== undefined && minUploads < 2) throw new InvalidInputError('meanMix needs selection.minUploads ≥ 2: a sum of one upload is that client\'s class means')
  // Statistics are values up to max|x| and shares up to 1, encoded within ±clip.
  if (request.clip < 1) throw new InvalidInputError(`meanMix needs clip ≥ 1 (the class shares reach 1), got ${request.clip}`)
  if (request.loss !== 'sparseCategoricalCrossentropy') throw new InvalidInputError(`meanMix mixes class labels: it needs loss sparseCategoricalCrossentropy, not ${request.loss}`)
  if (request.labelSkew.method !== 'none') throw new InvalidInputError(`meanMix and labelSkew ${request.labelSkew.method} cannot be combined`)
  if (request.dp !== null) throw new InvalidInputError('meanMix cannot be combined with dp: the class statistics in the update would need noise of their own')
}

/**
 * The longest the coordinator's gates keep a round of `config` waiting on its clients
 * (coordinator/rounds): the accept gate; masking's two setup gates, AdvertiseKeys then ShareKeys
 * (secure/masking.ts), one setup deadline otherwise; the upload gate; and the unmask phase, whose
 * consistency and unmask requests share one unmask deadline, plus half of one in which clients
 * reconnect to a coordinator restarted meanwhile (rounds.ts, resume). A client that gives up
 * sooner can leave a round that was still going to finish.
 */
export function roundScheduleMs (config: Pick<RoundConfig, 'deadlines' | 'secure'>): number {
  const { acceptMs, setupMs, trainMs, unmaskMs } = config.deadlines
  return acceptMs + (config.secure.mode === 'masking' ? 2 : 1) * setupMs + trainMs + 1.5 * unmaskMs
}

/** Fewer uploads than this and the round fails; also the honest-client count DP noise assumes. */
export function minUploadsOf (config: Pick<RoundConfig, 'selection' | 'clients'>): number {
  return config.selection.minUploads ?? Math.max(2, Math.ceil(config.clients.length / 2))
}
