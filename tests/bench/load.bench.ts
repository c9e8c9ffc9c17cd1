/**
 * Load pipeline throughput vs raw AES-256-GCM decryption, in one run.
 *
 * A 59 MB tfjs layers model (dense 1024-4096-2048-1024, random weights) is ingested into a
 * local coordinator running in its own process (`blockfed coordinator`), as a deployment has it. Figure: the load pipeline from that coordinator over loopback HTTP —
 * fetch shards + rebuild + verify shard/block CIDs + decrypt + verify plaintext hash + assemble
 * the weight buffer — with no cache. Reference: WebCrypto AES-256-GCM decryption of the very
 * same sealed blocks with the same keys, the same concurrency, nothing else. Target: ≥ 0.5.
 *
 * Two more figures locate the gap, measured in the same run at the same concurrency:
 * - `fromMemory`: the same pipeline with the shards already in memory (no HTTP);
 * - `requiredSteps`: only what the pipeline must do to each block whatever its code — hash the
 *   sealed block (CID), decrypt, hash the plaintext, copy it into a fresh weight buffer — with
 *   the same primitives. Its ratio to the reference is the most any pipeline could reach here.
 * Each figure also gives `cpuMs`, this process's CPU time (every thread) per run, and the
 * pipeline `coordinatorCpuMs`, the coordinator process's while it served that run's shards
 * (Linux clock ticks: to 10 ms).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pLimit from 'p-limit'
import { spawnCoordinator } from '../helpers/coordinator-process.ts'
import { readFile } from 'node:fs/promises'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { nodeHttpBlockSource } from '../../node-runtime/sources/http.ts'
import { loadModelWeights, openBlock } from '../../shared/load/loader.ts'
import { verifySignedManifest } from '../../shared/manifest/sign.ts'
import { defaultReedSolomon, erasureCoder } from '../../shared/blocks/erasure.ts'
import { generateWrapKey } from '../../shared/crypto/wrap.ts'
import { fromHex } from '../../shared/crypto/bytes.ts'
import { open } from '../../shared/crypto/seal.ts'
import { verifyCid } from '../../shared/crypto/cid.ts'
import { weightAssembler } from '../../shared/blocks/assemble.ts'
import type { BlockSource } from '../../shared/load/source.ts'
import { wideModelFiles } from './wide-model.ts'
import { machine, processCpuMs } from './machine.ts'

const RUNS = 5
const CONCURRENCY = 8
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

const files = await wideModelFiles()

const dir = await mkdtemp(join(tmpdir(), 'blockfed-bench-load-'))
const coordinatorProcess = await spawnCoordinator(dir)
const url = coordinatorProcess.url
try {
  const client = coordinatorClient({ baseUrl: url, token: (await readFile(join(dir, 'admin.token'), 'utf8')).trim() })
  await client.ingest('bench-load', files)
  const info = await client.info()
  const { manifest } = await verifySignedManifest(await client.manifest('bench-load', 1), fromHex(info.publicKey))
  const { keys } = await client.keys('bench-load', 1, generateWrapKey())
  const coder = await erasureCoder(defaultReedSolomon, manifest.erasure)
  const weightBytes = manifest.tensors.reduce((n, t) => n + t.byteLength, 0)

  // Set-up fetches, outside every timing: the sealed blocks for the reference and `requiredSteps`,
  // the data shards the pipeline fetches for `fromMemory`.
  const http = nodeHttpBlockSource({ baseUrl: url })
  const fetchOne = async (cid: string): Promise<Uint8Array> => await http.get(cid, { signal: AbortSignal.timeout(30_000) })
  const sealed = await Promise.all(manifest.blocks.map(async b => await fetchOne(b.cid)))
  const sealedBytes = sealed.reduce((n, s) => n + s.length, 0)
  const shards = new Map<string, Uint8Array>()
  for (const b of manifest.blocks) {
    for (const cid of b.shards.cids.slice(0, manifest.erasure.k)) shards.set(cid, await fetchOne(cid))
  }
  http.close()
  const memory: BlockSource = {
    name: 'memory',
    get: async cid => { const bytes = shards.get(cid); if (bytes === undefined) throw new Error(`bench: shard ${cid} not held`); return bytes }
  }

  /** Wall time and this process's CPU time (every thread: WebCrypto's pool included) of each run of one step. */
  const measured = (): { wallMs: number[], cpuMs: number[], time: <T>(step: () => Promise<T>) => Promise<T> } => {
    const wallMs: number[] = []
    const cpuMs: number[] = []
    return {
      wallMs,
      cpuMs,
      async time (step) {
        const cpu = process.cpuUsage()
        const t = performance.now()
        const result = await step()
        wallMs.push(performance.now() - t)
        const used = process.cpuUsage(cpu)
        cpuMs.push((used.user + used.system) / 1000)
        return result
      }
    }
  }
  const pipeline = measured()
  const raw = measured()
  const fromMemory = measured()
  const required = measured()
  // The coordinator's CPU while it serves the pipeline's shards: the two processes share the cores.
  const coordinatorCpuMs: number[] = []
  const coordinatorPid = coordinatorProcess.child.pid as number
  for (let run = 0; run < RUNS; run++) {
    const source = nodeHttpBlockSource({ baseUrl: url }) // fresh connections every run
    const servedBefore = processCpuMs(coordinatorPid)
    const { weights } = await pipeline.time(async () => await loadModelWeights(manifest, { source, coder, keys, concurrency: CONCURRENCY }))
    const servedAfter = processCpuMs(coordinatorPid)
    if (servedBefore !== null && servedAfter !== null) coordinatorCpuMs.push(servedAfter - servedBefore)
    source.close()
    if (weights.length !== weightBytes) throw new Error('pipeline produced the wrong number of bytes')

    const limit = pLimit(CONCURRENCY)
    await raw.time(async () => await Promise.all(manifest.blocks.map(async (b, i) => await limit(async () => await open(sealed[i] as Uint8Array, keys.get(b.keyId) as Uint8Array)))))

    await fromMemory.time(async () => await loadModelWeights(manifest, { source: memory, coder, keys, concurrency: CONCURRENCY }))

    await required.time(async () => {
      const assembler = weightAssembler(manifest)
      await Promise.all(manifest.blocks.map(async (b, i) => await limit(async () => {
        const bytes = sealed[i] as Uint8Array
        await verifyCid(b.cid, bytes)
        assembler.place(i, await openBlock(b, bytes, keys))
      })))
    })
  }
  const rate = (ms: number[]): number => sealedBytes / 1e6 / (median(ms) / 1000)
  const pipelineMBps = rate(pipeline.wallMs)
  const rawMBps = rate(raw.wallMs)
  const figure = (step: ReturnType<typeof measured>): { medianMs: number, MBps: number, ratio: number, cpuMs: number } =>
    ({ medianMs: +median(step.wallMs).toFixed(1), MBps: +rate(step.wallMs).toFixed(1), ratio: +(rate(step.wallMs) / rawMBps).toFixed(3), cpuMs: Math.round(median(step.cpuMs)) })
  console.log(JSON.stringify({
    bench: 'load',
    model: { weightBytes, sealedBytes, blocks: manifest.blocks.length, shardsPerBlock: manifest.erasure.k + manifest.erasure.m },
    runs: RUNS,
    concurrency: CONCURRENCY,
    pipeline: {
      medianMs: +median(pipeline.wallMs).toFixed(1),
      MBps: +pipelineMBps.toFixed(1),
      cpuMs: Math.round(median(pipeline.cpuMs)),
      coordinatorCpuMs: coordinatorCpuMs.length === 0 ? null : median(coordinatorCpuMs)
    },
    rawDecrypt: { medianMs: +median(raw.wallMs).toFixed(1), MBps: +rawMBps.toFixed(1), cpuMs: Math.round(median(raw.cpuMs)) },
    ratio: +(pipelineMBps / rawMBps).toFixed(3),
    target: 0.5,
    fromMemory: figure(fromMemory),
    requiredSteps: figure(required),
    machine: machine()
  }, null, 2))
} finally {
  await coordinatorProcess.kill('SIGTERM')
  await rm(dir, { recursive: true, force: true })
}
