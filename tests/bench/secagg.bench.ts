/**
 * Pairwise-masking secure aggregation (aggregation/secagg) against its physical limit and the
 * plaintext baseline, in one run.
 *
 * Main figure: 100 clients × 1M parameters, 10% of the clients dropping after ShareKeys, once
 * with the sparse SecAgg+ graph and once with the complete graph. Every client runs the real
 * protocol in this process (advertise, shareKeys, a real 1M-word maskedInput for every survivor,
 * consistency check, unmask) and the server processes all of it, including unmasking; its sum is checked against
 * the plaintext ring sum. Timings:
 *  - client masking = maskedInput() (inbox decryption, seed derivation, the copy of x and every
 *    PRG expansion folded in), per survivor; key agreement happens in shareKeys, timed as setup;
 *  - raw PRG = the same number of 4 MB masks from fresh seeds with nothing else, as the fastest of
 *    (a) 1 MiB or 256 KiB WebCrypto AES-CTR calls, four in flight (one per thread of Node's
 *    pool), nothing read back, and (b) one WebCrypto call per mask, in turn, measured right after the client it stands for (every 5th client); the ratio
 *    reported against the target is the median of those paired ratios (the machine is shared,
 *    so adjacent measurements are compared), with the ratio of the medians beside it;
 *  - server = checking and routing setup messages, adding each upload into the running sum,
 *    closing, checking survivors' signatures, receiving unmask shares and finish() (rebuild
 *    secrets, remove masks).
 * References in the same run: plaintext FedAvg on the server (`weightedMean` over 100 float32
 * updates, float64 accumulation) and the plain ring sum of 100 vectors.
 * Bytes: the masked upload is a binary frame of 4 bytes per parameter, like a float32 update;
 * setup messages are JSON, counted separately (uploads and downloads).
 *
 * Scaling: client cost for n ∈ {25, 50, 100, 200} at 100K parameters, sparse vs complete: all n
 * clients run setup, a few representative ones run maskedInput (the server does not finish).
 *
 * Targets: client masking ≤ 1.5 × raw PRG for its mask bytes; upload ≤ 1.1 × a float32 update.
 * `paillier` holds the Paillier figures (tests/bench/secagg-paillier.ts): online and offline cost.
 */
import { paillierCost } from './secagg-paillier.ts'
import { chacha20 } from '@noble/ciphers/chacha.js'
import { ringSum, addInto } from '../../aggregation/ring.ts'
import { weightedMean } from '../../aggregation/strategies/weighted-mean.ts'
import { createMaskingClient, type MaskingClient } from '../../aggregation/secagg/client.ts'
import { createMaskingServer } from '../../aggregation/secagg/server.ts'
import type { GraphConfig } from '../../aggregation/secagg/params.ts'
import { counterAt, importCtrKey, keystream } from '../../aggregation/secagg/_ctr.ts'
import { expandMask } from '../../aggregation/secagg/prg.ts'
import { CORRECTNESS_BITS, PRG_CHUNK_WORDS, PRG_IN_FLIGHT, SECURITY_BITS } from '../../aggregation/secagg/constants.ts'
import { generateSigningKey, type SigningKeyPair } from '../../shared/crypto/sign.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'
import { machine } from './machine.ts'

const CLIENTS = 100
const PARAMETERS = 1_000_000
const DROPOUT = 0.1
const THREAT = { adversarialRate: 0.05, dropoutRate: 0.1 }
const SCALING_N = [25, 50, 100, 200]
const SCALING_PARAMETERS = 100_000
const SCALING_SAMPLES = 16
const RAW_EVERY = 5
/** WebCrypto calls in flight for the raw reference: one per thread of Node's pool. */
const RAW_IN_FLIGHT = 4

const ROUND = 'r_0000000000bench'
const log = (line: string): void => { console.error(`[secagg bench] ${line}`) }
const ms = (x: number): number => +x.toFixed(1)
const ratio = (x: number): number => +x.toFixed(3)
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
const jsonBytes = (m: unknown): number => new TextEncoder().encode(JSON.stringify(m)).length
const wire = (m: unknown): unknown => JSON.parse(JSON.stringify(m))
const stats = (xs: number[]): { median: number, mean: number, max: number } => ({ median: ms(median(xs)), mean: ms(mean(xs)), max: ms(Math.max(...xs)) })

/** Client i's input: seeded words, regenerated on demand so 100 × 4 MB never sit in memory at once. */
function inputOf (i: number, length: number): Uint32Array {
  const next = mulberry32(0x5ecA66 + i)
  return Uint32Array.from({ length }, () => Math.floor(next() * 2 ** 32))
}

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `c${String(i).padStart(3, '0')}`)

/** Chunk sizes (words) tried for the raw reference: the masking pipeline's and the fastest measured here. */
const RAW_CHUNKS = [PRG_CHUNK_WORDS, 1 << 16]

/** The fastest of three ways to make `masks` masks of `length` words with nothing else done: the physical limit. */
async function rawPrgMs (masks: number, length: number): Promise<{ best: number, chunked: number, oneCall: number }> {
  const seeds = (): Uint8Array[] => Array.from({ length: masks }, () => globalThis.crypto.getRandomValues(new Uint8Array(32)))
  const chunkedRuns: number[] = []
  for (const chunk of RAW_CHUNKS) {
    const t = performance.now()
    const keys = await Promise.all(seeds().map(async s => await importCtrKey(s)))
    const jobs: Array<[number, number]> = []
    for (let m = 0; m < masks; m++) for (let o = 0; o < length; o += chunk) jobs.push([m, o])
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < jobs.length) {
        const [m, o] = jobs[next++] as [number, number]
        await keystream(keys[m] as CryptoKey, counterAt(new Uint8Array(16), o / 4), Math.min(chunk, length - o) * 4)
      }
    }
    await Promise.all(Array.from({ length: RAW_IN_FLIGHT }, worker))
    chunkedRuns.push(performance.now() - t)
  }
  const chunked = Math.min(...chunkedRuns)
  const t = performance.now()
  for (const s of seeds()) await expandMask(s, length)
  const oneCall = performance.now() - t
  return { best: Math.min(chunked, oneCall), chunked, oneCall }
}

interface VariantOptions {
  n: number
  length: number
  graph: GraphConfig
  dropout: number
  /** Survivors that run maskedInput: all (and the server finishes) or the first few (no finish). */
  maskers: 'all' | number
}

async function runVariant ({ n, length, graph, dropout, maskers }: VariantOptions): Promise<Record<string, unknown>> {
  const all = ids(n)
  const identities = new Map<string, SigningKeyPair>(all.map(id => [id, generateSigningKey()]))
  const seed = new Uint8Array(32).fill(0x42)
  let serverMs = 0
  const timed = <T>(work: () => T): T => { const t = performance.now(); try { return work() } finally { serverMs += performance.now() - t } }
  const timedAsync = async <T>(work: () => Promise<T>): Promise<T> => { const t = performance.now(); try { return await work() } finally { serverMs += performance.now() - t } }

  const server = createMaskingServer({ roundId: ROUND, participants: all.map(id => ({ id, identityKey: (identities.get(id) as SigningKeyPair).publicKey })), vectorLength: length, graph, seed })
  const clients = new Map<string, MaskingClient>(all.map(id => [id, createMaskingClient({
    roundId: ROUND, id, identity: identities.get(id) as SigningKeyPair, identityKeyOf: v => identities.get(v)?.publicKey, vectorLength: length, graph, seed
  })]))
  const client = (id: string): MaskingClient => clients.get(id) as MaskingClient
  const bytes = { advertise: [] as number[], shares: [] as number[], signature: [] as number[], unmask: [] as number[], roster: [] as number[], inbox: [] as number[], consistency: [] as number[], unmaskRequest: [] as number[] }
  const setupMs: number[] = []

  for (const id of all) {
    const t = performance.now()
    const m = await client(id).advertise()
    setupMs.push(performance.now() - t)
    bytes.advertise.push(jsonBytes(m))
    await timedAsync(async () => { await server.receiveAdvertise(id, wire(m)) })
  }
  timed(() => server.closeAdvertise())
  const params = server.parameters as { degree: number, threshold: number }
  for (const [i, id] of all.entries()) {
    const roster = timed(() => server.rosterFor(id))
    bytes.roster.push(jsonBytes(roster))
    const r = wire(roster)
    const t = performance.now()
    const m = await client(id).shareKeys(r)
    setupMs[i] = (setupMs[i] as number) + performance.now() - t
    bytes.shares.push(jsonBytes(m))
    timed(() => server.receiveShares(id, wire(m)))
  }
  timed(() => server.closeShares())

  const dropped = new Set(all.filter((_, i) => i % Math.round(1 / dropout) === 0).slice(0, Math.round(dropout * n)))
  const survivors = all.filter(id => !dropped.has(id))
  const maskingIds = maskers === 'all' ? survivors : survivors.slice(0, maskers)
  const maskingMs: number[] = []
  const rawSamples: Array<{ masking: number, raw: number, chunked: number, oneCall: number, masks: number }> = []
  const expected = new Uint32Array(length)
  for (const [j, id] of maskingIds.entries()) {
    const i = all.indexOf(id)
    const x = inputOf(i, length)
    if (maskers === 'all') addInto(expected, x)
    const inbox = timed(() => server.inboxFor(id))
    bytes.inbox.push(jsonBytes(inbox))
    const w = wire(inbox)
    const t = performance.now()
    const y = await client(id).maskedInput(x, w)
    const masking = performance.now() - t
    maskingMs.push(masking)
    if (j % (maskers === 'all' ? RAW_EVERY : 1) === 0) {
      const masks = 1 + (inbox as { shares: unknown[] }).shares.length
      const raw = await rawPrgMs(masks, length)
      rawSamples.push({ masking, raw: raw.best, chunked: raw.chunked, oneCall: raw.oneCall, masks })
    }
    if (maskers === 'all') timed(() => server.receiveMasked(id, y))
  }

  const result: Record<string, unknown> = {
    graph: { kind: (server.parameters as { kind: string }).kind, degree: params.degree, threshold: params.threshold },
    clients: n,
    parameters: length,
    dropped: dropped.size
  }
  const ratios = rawSamples.map(s => s.masking / s.raw)
  const clientFigures: Record<string, unknown> = {
    setupMs: stats(setupMs),
    maskingMs: stats(maskingMs),
    maskedClients: maskingMs.length,
    rawPrg: {
      sampledClients: rawSamples.length,
      masksPerClient: stats(rawSamples.map(s => s.masks)),
      maskBytesPerClient: Math.round(mean(rawSamples.map(s => s.masks))) * length * 4,
      bestMs: stats(rawSamples.map(s => s.raw)),
      chunkedPipelineMs: stats(rawSamples.map(s => s.chunked)),
      oneCallPerMaskMs: stats(rawSamples.map(s => s.oneCall))
    },
    // Each sampled client against the raw PRG measured right after it (same background load), and overall.
    maskingVsRawPrg: { median: ratio(median(ratios)), max: ratio(Math.max(...ratios)), ofMedians: ratio(median(maskingMs) / median(rawSamples.map(s => s.raw))) }
  }
  result.client = clientFigures
  if (maskers !== 'all') return result

  timed(() => server.closeMasked())
  const checkMs: number[] = []
  for (const id of survivors) {
    const request = timed(() => server.consistencyRequestFor(id))
    bytes.consistency.push(jsonBytes(request))
    const w = wire(request)
    const t = performance.now()
    const m = client(id).consistencyCheck(w)
    checkMs.push(performance.now() - t)
    bytes.signature.push(jsonBytes(m))
    await timedAsync(async () => { await server.receiveSignature(id, wire(m)) })
  }
  timed(() => server.closeConsistency())
  clientFigures.consistencyCheckMs = stats(checkMs)
  const unmaskMs: number[] = []
  for (const id of survivors) {
    const request = timed(() => server.unmaskRequestFor(id))
    bytes.unmaskRequest.push(jsonBytes(request))
    const w = wire(request)
    const t = performance.now()
    const m = await client(id).unmask(w)
    unmaskMs.push(performance.now() - t)
    bytes.unmask.push(jsonBytes(m))
    timed(() => server.receiveUnmask(id, wire(m)))
  }
  clientFigures.unmaskMs = stats(unmaskMs)
  const beforeFinish = serverMs
  const t = performance.now()
  const sum = await server.finish()
  const finishMs = performance.now() - t
  serverMs += finishMs
  const exact = sum.length === expected.length && sum.every((v, i) => v === expected[i])
  if (!exact) throw new Error('secagg bench: the unmasked sum differs from the plaintext ring sum')

  const float32 = length * 4
  const uploadSetup = mean(bytes.advertise) + mean(bytes.shares) + mean(bytes.signature) + mean(bytes.unmask)
  result.server = { totalMs: ms(serverMs), beforeFinishMs: ms(beforeFinish), finishMs: ms(finishMs), exact }
  result.bytesPerClient = {
    float32Update: float32,
    maskedUpload: float32,
    setupUpload: { advertise: Math.round(mean(bytes.advertise)), shares: Math.round(mean(bytes.shares)), signature: Math.round(mean(bytes.signature)), unmask: Math.round(mean(bytes.unmask)) },
    setupDownload: { roster: Math.round(mean(bytes.roster)), inbox: Math.round(mean(bytes.inbox)), consistency: Math.round(mean(bytes.consistency)), unmaskRequest: Math.round(mean(bytes.unmaskRequest)) },
    uploadVsFloat32: ratio((float32 + uploadSetup) / float32),
    maskedOnlyVsFloat32: 1
  }
  return result
}

/** The PRG choice (prg.ts): WebCrypto AES-256-CTR against @noble/ciphers ChaCha20, 1M words each, median of 9. */
async function prgChoice (): Promise<Record<string, unknown>> {
  const seed = globalThis.crypto.getRandomValues(new Uint8Array(32))
  const aes: number[] = []
  const chacha: number[] = []
  for (let r = 0; r < 9; r++) {
    let t = performance.now()
    await expandMask(seed, PARAMETERS)
    aes.push(performance.now() - t)
    t = performance.now()
    const out = new Uint8Array(PARAMETERS * 4)
    chacha20(seed, new Uint8Array(12), out, out)
    chacha.push(performance.now() - t)
  }
  return { bytes: PARAMETERS * 4, aes256CtrWebCryptoMs: ms(median(aes)), chacha20NobleMs: ms(median(chacha)), chosen: 'aes-256-ctr' }
}

async function plaintextReference (): Promise<Record<string, unknown>> {
  const next = mulberry32(7)
  const deltas = Array.from({ length: CLIENTS }, () => Float32Array.from({ length: PARAMETERS }, () => next() - 0.5))
  const weights = Array.from({ length: CLIENTS }, (_, i) => 100 + i)
  let t = performance.now()
  weightedMean(deltas, weights)
  const fedAvgMs = performance.now() - t
  const ring = deltas.map(d => new Uint32Array(d.buffer))
  t = performance.now()
  ringSum(ring, PARAMETERS)
  const ringSumMs = performance.now() - t
  return { fedAvgServerMs: ms(fedAvgMs), ringSumServerMs: ms(ringSumMs), note: `weightedMean over ${CLIENTS} float32 updates (float64 accumulation); ring sum of ${CLIENTS} Uint32 vectors` }
}

log('PRG choice')
const prg = await prgChoice()
log(`plaintext reference: ${CLIENTS} × ${PARAMETERS}`)
const plaintext = await plaintextReference()
log('sparse graph, full protocol')
const sparse = await runVariant({ n: CLIENTS, length: PARAMETERS, graph: { kind: 'harary', ...THREAT }, dropout: DROPOUT, maskers: 'all' })
log('complete graph, full protocol')
const complete = await runVariant({ n: CLIENTS, length: PARAMETERS, graph: { kind: 'complete', ...THREAT }, dropout: DROPOUT, maskers: 'all' })
const scaling: Array<Record<string, unknown>> = []
for (const n of SCALING_N) {
  log(`scaling n = ${n}`)
  const row: Record<string, unknown> = { n }
  for (const kind of ['harary', 'complete'] as const) {
    const r = await runVariant({ n, length: SCALING_PARAMETERS, graph: { kind, ...THREAT }, dropout: DROPOUT, maskers: SCALING_SAMPLES })
    const c = r.client as { setupMs: { median: number }, maskingMs: { median: number }, rawPrg: { bestMs: { median: number } }, maskingVsRawPrg: { median: number } }
    row[kind === 'harary' ? 'sparse' : 'complete'] = { ...(r.graph as object), setupMs: c.setupMs.median, maskingMs: c.maskingMs.median, rawPrgMs: c.rawPrg.bestMs.median, maskingVsRawPrg: c.maskingVsRawPrg.median }
  }
  scaling.push(row)
}

type Variant = { client: { maskingMs: { median: number }, maskingVsRawPrg: { median: number, max: number } }, server: { totalMs: number, finishMs: number }, bytesPerClient: { uploadVsFloat32: number } }
const s = sparse as unknown as Variant
const c = complete as unknown as Variant
console.log(JSON.stringify({
  bench: 'secagg',
  config: { clients: CLIENTS, parameters: PARAMETERS, dropout: DROPOUT, threatModel: { ...THREAT, securityBits: SECURITY_BITS, correctnessBits: CORRECTNESS_BITS }, prg: 'AES-256-CTR (WebCrypto)', prgChunkWords: PRG_CHUNK_WORDS, prgGroupsInFlight: PRG_IN_FLIGHT },
  prg,
  plaintext,
  sparse,
  complete,
  sparseVsComplete: {
    clientMasking: ratio(s.client.maskingMs.median / c.client.maskingMs.median),
    serverTotal: ratio(s.server.totalMs / c.server.totalMs),
    serverFinish: ratio(s.server.finishMs / c.server.finishMs)
  },
  serverVsPlaintextFedAvg: {
    sparse: ratio(s.server.totalMs / (plaintext.fedAvgServerMs as number)),
    complete: ratio(c.server.totalMs / (plaintext.fedAvgServerMs as number))
  },
  scaling: { parameters: SCALING_PARAMETERS, sampledClientsPerRow: SCALING_SAMPLES, rows: scaling },
  targets: {
    clientMaskingVsRawPrg: { target: 1.5, sparse: s.client.maskingVsRawPrg.median, complete: c.client.maskingVsRawPrg.median, pass: s.client.maskingVsRawPrg.median <= 1.5 && c.client.maskingVsRawPrg.median <= 1.5 },
    uploadVsFloat32: { target: 1.1, sparse: s.bytesPerClient.uploadVsFloat32, complete: c.bytesPerClient.uploadVsFloat32, pass: s.bytesPerClient.uploadVsFloat32 <= 1.1 && c.bytesPerClient.uploadVsFloat32 <= 1.1 }
  },
  // Cross-silo mode: 10 clients × 100K parameters, 2048-bit key (tests/bench/secagg-paillier.ts).
  paillier: await paillierCost({ log: line => console.error(line) }),
  machine: machine()
}, null, 2))
