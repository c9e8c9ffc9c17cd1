/**
 * `blockfed simulate` and the federated-learning demo: a real coordinator and N real Node
 * runtimes over loopback, each runtime holding its own partition of the mnist package's training
 * digits (iid, classes:K or dirichlet:α). Rounds run over the WebSocket protocol with the chosen
 * secure-aggregation mode; after each round an evaluator runtime loads the new version through
 * the verified load pipeline and measures test accuracy on 2,000 held-out digits. The summary
 * also trains the same model centrally, on the pooled data, for the same epoch budget, in the
 * same run — the reference federated accuracy is judged against.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import { createCoordinator, type Coordinator } from '../coordinator.ts'
import { TooFewClientsError, type RoundEvent, type RoundSummary } from '../rounds/rounds.ts'
import type { RoundRequestInput, SecureMode } from '../../shared/rounds/config.ts'
import { createNodeRuntime, type NodeRuntime } from '../../node-runtime/runtime.ts'
import { createParticipant, type Participant, type ParticipantEvent } from '../../node-runtime/fl/participant.ts'
import { secureClients } from '../../node-runtime/fl/secure-client.ts'
import { clientIdentity } from '../../node-runtime/fl/identity.ts'
import { loadTfjsEngine, tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { mnistSplit, IMAGE_SIZE } from '../../node-runtime/data/mnist.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { partitionIndices, parsePartition } from '../../shared/training/partition.ts'
import { takeRows, type TrainingData } from '../../shared/training/data.ts'
import { trainLocal, type OptimizerName } from '../../shared/training/local-train.ts'
import { evaluateAccuracy } from '../../shared/training/evaluate.ts'
import { weightNames } from '../../shared/training/weights.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'
import type { FetchedModel } from '../../shared/load/fetch-model.ts'
import { spawnDecryptor, type DecryptorProcess } from './decryptor-process.ts'
import { decryptorClient } from '../../aggregation/paillier/decryptor-client.ts'
import { runAll } from './cleanup.ts'
import { MIN_MASKING_CLIENTS } from '../../aggregation/secagg/constants.ts'
import { graphParameters } from '../../aggregation/secagg/params.ts'

export interface SimulationOptions {
  clients: number
  rounds: number
  partition: string
  secure: SecureMode
  /** Probability that a client drops out right after uploading, per round. */
  dropout: number
  seed: number
  hidden: number[]
  epochs: number
  batchSize: number
  learningRate: number
  /**
   * The clients' learning rate decays by this factor per round: round r trains at
   * learningRate·lrDecay^(r−1) (1: constant). Li et al. 2020 ("On the Convergence of FedAvg on
   * Non-IID Data", ICLR) show a decaying rate is needed for FedAvg to converge on non-IID data;
   * the centralised reference follows the same schedule per round's epochs.
   */
  lrDecay: number
  optimizer: OptimizerName
  strategy: RoundRequestInput['strategy']
  /** The clients' label-skew correction (FedRS / FedLC); the centralised reference trains without. */
  labelSkew: RoundRequestInput['labelSkew']
  /**
   * NaiveMix's λ (shared/training/mean-mix.ts), 0 for none: clients mix each digit with the pooled
   * class means, which the first round gathers through its secure sum (so it is off with secure
   * mode none). The centralised reference, which holds every class, trains without.
   */
  meanMix: number
  /** Paillier mode: the decryptor's URL; without one, a decryptor process is started for the run. */
  decryptorUrl?: string
  /** Its bearer token, if it requires one. */
  decryptorToken?: string
  /** Skip the centralised reference (it costs rounds × epochs passes over the pooled data). */
  centralised: boolean
  dataDir?: string
  /**
   * Stops the run: the round under way is aborted, then everything the run started (runtimes,
   * coordinator, decryptor process) is stopped and its temporary data deleted before `simulate`
   * rejects with the signal's reason.
   */
  signal?: AbortSignal
  onRound?: (report: RoundReport) => void
  onEvent?: (event: RoundEvent | (ParticipantEvent & { client: number })) => void
  /** Said once, before any runtime starts, when the partition left some clients without data. */
  onNote?: (message: string) => void
}

export interface RoundReport {
  round: number
  /** Null: the round could not start (too few eligible clients; `reason` says why). */
  id: string | null
  state: 'published' | 'failed'
  version: number | null
  reason: string | null
  accuracy: number | null
  participants: RoundSummary['participants']
  /**
   * Clients this simulation dropped right after their upload (--dropout). The coordinator counts
   * them as uploaded: to it they vanished during the sum, which a masking round survives while
   * enough of their neighbours' shares come in.
   */
  droppedAfterUpload: number
  bytesUp: number
  bytesDown: number
  roundMs: number
  evalMs: number
  changedBlocks: number | null
}

export interface SimulationSummary {
  /** What the clients and the server ran with, so that a reported figure names its setting. */
  setting: Pick<SimulationOptions, 'hidden' | 'epochs' | 'batchSize' | 'learningRate' | 'lrDecay' | 'optimizer' | 'strategy' | 'labelSkew' | 'meanMix'>
  rounds: number
  clients: number
  partition: string
  secure: SecureMode
  dropout: number
  seed: number
  /** Rounds that published a version (0: the run produced no model). */
  publishedRounds: number
  finalAccuracy: number | null
  bestAccuracy: number | null
  firstRoundAt94: number | null
  centralised: { accuracy: number, epochs: number, ms: number } | null
  gapToCentralised: number | null
  totalMs: number
  bytesUp: number
  bytesDown: number
}

/** The convergence target's line for a summary (issue 3: 94% within the run's rounds). */
export function describeTarget (summary: Pick<SimulationSummary, 'firstRoundAt94'>): string {
  return summary.firstRoundAt94 === null ? '94% not reached' : `94% first reached at round ${summary.firstRoundAt94}`
}

/** The gap to the centralised reference, in points; "-" when there is none (no round published). */
export function describeGap (summary: Pick<SimulationSummary, 'gapToCentralised'>): string {
  return summary.gapToCentralised === null ? '-' : `${(summary.gapToCentralised * 100).toFixed(2)} points`
}

export const SIMULATION_DEFAULTS: Omit<SimulationOptions, 'clients' | 'rounds' | 'partition' | 'secure' | 'dropout' | 'seed'> = {
  // The convergence setting (784-200-200-10). Among the settings searched on classes:2
  // (BENCHMARKS.md, "Convergence"), local momentum SGD (0.9) starting at 0.08 and decaying by
  // 0.93 a round, one epoch, with NaiveMix at λ = 0.05 (Yoon et al. 2021), under a FedAvgM server
  // step (Hsu et al. 2019; β = 0.8, η = 1) did best; FedAdam, SCAFFOLD, FedProx, FedDyn and the
  // label-skew losses FedRS / FedLC did worse on this 2-classes-per-client split.
  hidden: [200, 200],
  epochs: 1,
  batchSize: 32,
  learningRate: 0.08,
  lrDecay: 0.93,
  optimizer: 'momentum',
  strategy: { name: 'fedavgm', lr: 1, momentum: 0.8 },
  labelSkew: { method: 'none' },
  meanMix: 0.05,
  centralised: true
}

/**
 * The masking graph for the dropout being simulated: sized with a margin above the mean, since
 * the threshold must hold for a round's actual dropouts, not just their expectation.
 */
function maskingGraph (dropout: number): { graph: 'sparse', dropoutRate?: number } {
  return { graph: 'sparse', ...(dropout > 0 ? { dropoutRate: Math.min(0.45, dropout + 0.1) } : {}) }
}

/** How long a client's byte tally may trail the round's summary (its result crosses the socket). */
const TALLY_WAIT_MS = 10_000

interface Client { participant: Participant, runtime: NodeRuntime, log: EventLog }

/** A client's events, and a way to wait, boundedly, for the one a predicate picks. */
interface EventLog {
  events: ParticipantEvent[]
  push: (event: ParticipantEvent) => void
  /** Resolves with what `find` returns once it is not undefined, or undefined after `ms` or an abort. */
  until: <T>(find: () => T | undefined, ms: number, signal?: AbortSignal) => Promise<T | undefined>
}

function eventLog (): EventLog {
  const events: ParticipantEvent[] = []
  const watchers = new Set<() => void>()
  return {
    events,
    push (event) {
      events.push(event)
      for (const w of [...watchers]) w()
    },
    async until (find, ms, signal) {
      const found = find()
      if (found !== undefined || signal?.aborted === true) return found
      return await new Promise(resolve => {
        const done = (): void => {
          clearTimeout(timer)
          watchers.delete(check)
          signal?.removeEventListener('abort', done)
          resolve(find())
        }
        const check = (): void => { if (find() !== undefined) done() }
        const timer = setTimeout(done, ms)
        watchers.add(check)
        signal?.addEventListener('abort', done, { once: true })
      })
    }
  }
}

/**
 * Whether client `client` drops out after its upload in round `round` (simulated dropout with
 * probability `p`): one draw from (seed, round, client) alone, so a --seed drops the same clients
 * in the same rounds whatever order their uploads arrive in.
 */
export function dropsOut (seed: number, round: number, client: number, p: number): boolean {
  if (!(p > 0)) return false
  // Each input is multiplied in on its own (murmur3 constants), so no two (seed, round, client)
  // triples share a draw by an XOR coincidence (with a bare seed ^ round, seed 5 in round 2 would
  // draw as seed 6 in round 1).
  let h = Math.imul(seed ^ 0x5eed, 0x9e3779b1)
  h = Math.imul(h ^ (h >>> 16) ^ round, 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13) ^ client, 0xc2b2ae35)
  return mulberry32((h ^ (h >>> 16)) >>> 0)() < p
}

async function accuracyOf (fetched: FetchedModel, test: TrainingData): Promise<number> {
  const topology = fetched.manifest.topology
  if (topology.kind !== 'tfjs') throw new InvalidInputError('simulation model must be tfjs')
  const engine = await loadTfjsEngine('tfjs-layers', topology, fetched.weights)
  const model = (engine as { model: LayersModel }).model
  try {
    return await evaluateAccuracy(model, test)
  } finally {
    model.dispose()
  }
}

export async function simulate (options: SimulationOptions): Promise<SimulationSummary> {
  if (!Number.isInteger(options.clients) || options.clients < 2) throw new InvalidInputError(`--clients: at least 2, got ${options.clients}`)
  if (options.secure === 'masking' && options.clients < MIN_MASKING_CLIENTS) throw new InvalidInputError(`--clients: masking needs at least ${MIN_MASKING_CLIENTS} clients, got ${options.clients} (or choose --secure none or paillier)`)
  if (!Number.isInteger(options.rounds) || options.rounds < 1) throw new InvalidInputError(`--rounds: at least 1, got ${options.rounds}`)
  if (!(options.dropout >= 0 && options.dropout < 1)) throw new InvalidInputError(`--dropout: a probability in [0, 1), got ${options.dropout}`)
  if (!(options.lrDecay > 0 && options.lrDecay <= 1)) throw new InvalidInputError(`lrDecay: a factor in (0, 1], got ${options.lrDecay}`)
  if (!(options.meanMix >= 0 && options.meanMix <= 0.5)) throw new InvalidInputError(`meanMix: NaiveMix's λ in [0, 0.5] (0: off), got ${options.meanMix}`)
  // NaiveMix's class statistics travel only inside a secure sum: without one it is off (the summary's setting says so).
  const meanMix = options.secure === 'none' ? 0 : options.meanMix
  const skew = options.labelSkew?.method ?? 'none'
  if (meanMix > 0 && skew !== 'none') throw new InvalidInputError(`label skew ${skew} cannot be combined with NaiveMix (λ ${meanMix}, on by default): turn it off with --mean-mix 0`)
  const learningRate = (round: number): number => options.learningRate * options.lrDecay ** (round - 1)
  parsePartition(options.partition)
  const { signal } = options
  signal?.throwIfAborted()
  const started = performance.now()
  const { train, test } = mnistSplit()
  const pooled: TrainingData = { xs: train.images, ys: train.labels, count: train.count, featureShape: [IMAGE_SIZE] }
  const testData: TrainingData = { xs: test.images, ys: test.labels, count: test.count, featureShape: [IMAGE_SIZE] }
  // Split before anything is created: a spec that cannot split these labels has nothing to clean up.
  const split = partitionIndices(options.partition, train.labels, options.clients, options.seed)
  const shares = split.filter(ix => ix.length > 0)
  const least = options.secure === 'masking' ? MIN_MASKING_CLIENTS : 2
  if (shares.length < least) throw new InvalidInputError(`--partition ${options.partition} with --seed ${options.seed} gives data to ${shares.length} of ${options.clients} clients; a round needs at least ${least} (try another --seed, a larger alpha or more --clients)`)
  const graph = maskingGraph(options.dropout)
  if (options.secure === 'masking' && graph.dropoutRate !== undefined) {
    // Every round would fail at its roster: refused before anything starts.
    try {
      graphParameters(shares.length, { kind: 'harary', population: shares.length, dropoutRate: graph.dropoutRate })
    } catch (err) {
      throw new InvalidInputError(`--dropout ${options.dropout} with --secure masking sizes the masking graph for ${Math.round(graph.dropoutRate * 100)}% dropouts, which ${shares.length} clients cannot carry (${(err as Error).message}); give more --clients or a lower --dropout`, { cause: err })
    }
  }
  if (shares.length < split.length) options.onNote?.(`${shares.length} of ${split.length} clients got data (--partition ${options.partition}, --seed ${options.seed}); the others are left out`)
  await tfjsBackend()
  signal?.throwIfAborted()
  const events = options.onEvent ?? (() => {})
  /** The round under way, for the dropout draws, and the clients dropped in it. */
  let round = 0
  let droppedThisRound = 0

  let coordinator: Coordinator | undefined
  const clients: Client[] = []
  let evaluator: NodeRuntime | undefined
  let decryptor: DecryptorProcess | undefined
  let failed = false
  const root = options.dataDir ?? await mkdtemp(join(tmpdir(), 'blockfed-simulate-'))
  try {
    // The Paillier key holder is its own process, never the coordinator's.
    if (options.secure === 'paillier' && options.decryptorUrl === undefined) decryptor = await spawnDecryptor(join(root, 'decryptor'), ['--min-clients', '2'], undefined, signal)
    signal?.throwIfAborted()
    // The runtimes pin the decryptor's key, asked of the decryptor itself, never of the coordinator.
    const paillierKeyId = options.secure !== 'paillier'
      ? undefined
      : decryptor?.keyId ?? (await decryptorClient({ baseUrl: options.decryptorUrl as string, token: options.decryptorToken, timeoutMs: 10_000 }).key(signal)).keyId
    coordinator = await createCoordinator({ dataDir: join(root, 'coordinator'), port: 0, decryptorUrl: options.decryptorUrl ?? decryptor?.url, decryptorToken: options.decryptorToken ?? decryptor?.token, onRoundEvent: e => events(e) })
    const url = await coordinator.start()
    const token = await coordinator.createToken('edge')
    // Seeded, so that a run is reproducible from --seed (up to the stochastic rounding of the
    // fixed-point encoding, which draws from crypto.getRandomValues on purpose).
    const initial = mnistMlp({ hidden: options.hidden, seed: options.seed })
    await coordinator.ingest('mnist', await modelFiles(initial))
    initial.dispose()
    const aoe = { version: '1.0.0', tag: 'digits', runtime: 'tensorflow', source: 'blockfed', modelDir: 'mnist', modelName: 'mnist', updateURL: url }

    for (const [i, indices] of shares.entries()) {
      signal?.throwIfAborted()
      const dir = join(root, `runtime-${i}`)
      const runtime = await createNodeRuntime({ dataDir: dir, token })
      const data = takeRows(pooled, indices)
      const log = eventLog()
      const participant = createParticipant({
        url,
        token,
        identity: await clientIdentity(dir),
        stateDir: dir,
        models: { mnist: { data: () => data } },
        fetchVersion: async (_m, v, signal) => await runtime.fetch(aoe, v, signal),
        secureClient: secureClients({ paillierKeyId }),
        seed: options.seed + i,
        dropAfterUpload: () => {
          const drop = dropsOut(options.seed, round, i, options.dropout)
          if (drop) droppedThisRound++
          return drop
        },
        reconnectMs: 100,
        onEvent: e => { log.push(e); events({ ...e, client: i }) }
      })
      // Pushed before start(): cleanup stops whatever started, also when start() throws.
      clients.push({ participant, runtime, log })
      await participant.start()
    }
    await Promise.all(clients.map(async c => await c.participant.ready(30_000, signal)))
    evaluator = await createNodeRuntime({ dataDir: join(root, 'evaluator'), token })

    const rounds = coordinator.rounds
    /**
     * One round. One that cannot start is reported as failed with the reason: after a secure
     * round failed once uploads were in, the clients that uploaded give no second update from
     * that base version (node-runtime/fl/given.ts), and too few others may be left.
     */
    const runRound = async (request: RoundRequestInput): Promise<Pick<RoundSummary, 'state' | 'version' | 'reason' | 'metrics' | 'participants'> & { id: string | null }> => {
      try {
        return await rounds.run(request, signal)
      } catch (err) {
        if (!(err instanceof TooFewClientsError) || signal?.aborted === true) throw err
        return { id: null, state: 'failed', version: null, reason: err.message, metrics: null, participants: { offered: 0, accepted: 0, declined: 0, uploaded: 0, dropped: 0 } }
      }
    }
    const reports: RoundReport[] = []
    for (let r = 1; r <= options.rounds; r++) {
      round = r
      droppedThisRound = 0
      // Runtimes that dropped out last round reconnect within reconnectMs; give them the chance.
      await Promise.all(clients.map(async c => await c.participant.ready(5000, signal).catch(() => {})))
      signal?.throwIfAborted()
      const t0 = performance.now()
      const summary = await runRound({
        model: 'mnist',
        epochs: options.epochs,
        batchSize: options.batchSize,
        learningRate: learningRate(r),
        optimizer: options.optimizer,
        strategy: options.strategy,
        labelSkew: options.labelSkew,
        meanMix: meanMix > 0 ? { lambda: meanMix, classes: 10, features: IMAGE_SIZE } : null,
        // Size the masking graph for the dropout being simulated (a margin above the mean: the
        // threshold must hold for the round's actual dropouts, not just their expectation).
        secure: { mode: options.secure, ...graph },
        clip: 1,
        normBound: 1000,
        selection: { minClients: Math.min(2, clients.length), fraction: 1 }
      })
      // An aborted round ends as a failed one: not a result to report.
      signal?.throwIfAborted()
      const roundMs = performance.now() - t0
      let accuracy: number | null = null
      const e0 = performance.now()
      if (summary.version !== null) accuracy = await accuracyOf(await evaluator.fetch(aoe, summary.version, signal), testData)
      const evalMs = performance.now() - e0
      const id = summary.id
      const bytes = id === null ? [] : await Promise.all(clients.map(async c => await roundBytes(c.log, id, signal)))
      signal?.throwIfAborted()
      const report: RoundReport = {
        round: r,
        id: summary.id,
        state: summary.state,
        version: summary.version,
        reason: summary.reason,
        accuracy,
        participants: summary.participants,
        droppedAfterUpload: droppedThisRound,
        bytesUp: bytes.reduce((n, b) => n + b.up, 0),
        bytesDown: bytes.reduce((n, b) => n + b.down, 0),
        roundMs: Math.round(roundMs),
        evalMs: Math.round(evalMs),
        changedBlocks: summary.metrics?.changedBlocks ?? null
      }
      reports.push(report)
      options.onRound?.(report)
    }

    let centralised: SimulationSummary['centralised'] = null
    if (options.centralised) {
      const c0 = performance.now()
      const base = await evaluator.fetch(aoe, 1, signal)
      const topology = base.manifest.topology
      if (topology.kind !== 'tfjs') throw new InvalidInputError('simulation model must be tfjs')
      const model = (await loadTfjsEngine('tfjs-layers', topology, base.weights) as { model: LayersModel }).model
      const epochs = options.rounds * options.epochs
      try {
        // One call per round, as the clients train: the same epochs and learning rate, and the
        // optimiser state (momentum, Adam moments) restarting as theirs does.
        for (let r = 1; r <= options.rounds; r++) {
          await trainLocal({ model, trainable: weightNames(model), data: pooled, epochs: options.epochs, batchSize: options.batchSize, learningRate: learningRate(r), optimizer: options.optimizer, loss: 'sparseCategoricalCrossentropy', seed: options.seed + r, signal })
        }
        centralised = { accuracy: await evaluateAccuracy(model, testData), epochs, ms: Math.round(performance.now() - c0) }
      } finally {
        model.dispose()
      }
    }
    const accuracies = reports.map(r => r.accuracy).filter((a): a is number => a !== null)
    const finalAccuracy = [...reports].reverse().find(r => r.accuracy !== null)?.accuracy ?? null
    const { hidden, epochs, batchSize, lrDecay, optimizer, strategy, labelSkew } = options
    return {
      setting: { hidden, epochs, batchSize, learningRate: options.learningRate, lrDecay, optimizer, strategy, labelSkew, meanMix },
      rounds: options.rounds,
      clients: clients.length,
      partition: options.partition,
      secure: options.secure,
      dropout: options.dropout,
      seed: options.seed,
      publishedRounds: reports.filter(r => r.state === 'published').length,
      finalAccuracy,
      bestAccuracy: accuracies.length > 0 ? Math.max(...accuracies) : null,
      firstRoundAt94: reports.find(r => (r.accuracy ?? 0) >= 0.94)?.round ?? null,
      centralised,
      gapToCentralised: centralised === null || finalAccuracy === null ? null : centralised.accuracy - finalAccuracy,
      totalMs: Math.round(performance.now() - started),
      bytesUp: reports.reduce((n, r) => n + r.bytesUp, 0),
      bytesDown: reports.reduce((n, r) => n + r.bytesDown, 0)
    }
  } catch (err) {
    failed = true
    throw err
  } finally {
    // Every step runs even when an earlier one throws: a runtime whose stop() fails must not
    // leave the coordinator listening, the decryptor holding its key, or the data on disk.
    const errors = await runAll([
      ...clients.flatMap(c => [async () => await c.participant.stop(), async () => await c.runtime.stop()]),
      async () => await evaluator?.stop(),
      async () => await coordinator?.stop(),
      async () => await decryptor?.stop(),
      async () => { if (options.dataDir === undefined) await rm(root, { recursive: true, force: true }) }
    ])
    // The run's own error says more than a cleanup error; without one, the first cleanup error
    // replaces the result.
    if (!failed && errors.length > 0) throw errors[0]
  }
}

/**
 * A client's bytes for one round: the tally it gives however the round ended for it (also when it
 * dropped out after uploading, and so got no result). The tally may trail the summary by a
 * message; a client that never accepted the round has none. Should it not come, the upload
 * is all that is known.
 */
async function roundBytes (log: EventLog, roundId: string, signal?: AbortSignal): Promise<{ up: number, down: number }> {
  if (!log.events.some(e => e.type === 'offer' && e.roundId === roundId && e.accepted)) return { up: 0, down: 0 }
  const tally = await log.until(() => log.events.find((e): e is Extract<ParticipantEvent, { type: 'bytes' }> => e.type === 'bytes' && e.roundId === roundId), TALLY_WAIT_MS, signal)
  if (tally !== undefined) return { up: tally.bytesUp, down: tally.bytesDown }
  const uploaded = log.events.find((e): e is Extract<ParticipantEvent, { type: 'uploaded' }> => e.type === 'uploaded' && e.roundId === roundId)
  return { up: uploaded?.bytes ?? 0, down: 0 }
}
