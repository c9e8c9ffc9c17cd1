/**
 * The manifest's file paths (shared/manifest/schema.ts): `blockfed pull` writes a model back out
 * under them, and a manifest comes from a coordinator a client need not trust, so none may leave
 * the output folder.
 */
import { beforeAll, describe, it, expect } from 'vitest'
import { defaultReedSolomon, erasureCoder } from '../../../shared/blocks/erasure.ts'
import { partition } from '../../../shared/blocks/partition.ts'
import { sealBlocks } from '../../../shared/blocks/seal-blocks.ts'
import { readModel } from '../../../shared/formats/index.ts'
import { manifestSchema, relativeFilePathSchema, topologySchema, type Manifest } from '../../../shared/manifest/schema.ts'
import type { ModelFile } from '../../../shared/model/types.ts'
import { modelFile, tinyOnnx, VAD_DIR } from '../formats/fixtures.ts'
import { denseModelFiles } from '../../helpers/dense-model.ts'
import { testManifest } from '../../helpers/manifest.ts'

describe('manifest file paths', () => {
  it('accept plain and nested relative names', () => {
    for (const p of ['model.json', 'group1-shard1of1.bin', 'weights/part-1.bin', 'silero_vad.onnx', 'a.onnx.data', 'model (1).onnx', 'modèle/poids_1.bin']) {
      expect(relativeFilePathSchema.safeParse(p).success, p).toBe(true)
    }
  })

  it('refuse names that climb out, are absolute, or hide a separator', () => {
    for (const p of ['../x.bin', 'a/../../x', '/etc/passwd', 'a//b', './a', 'a/.', '..', 'c:x', 'a\\\\b', 'a\\u0000b', 'a\tb', 'a*b', 'w?.bin', 'a|b', '<a>', 'a"b', 'CON', 'sub/nul.bin', 'com1.txt', 'trailing.', 'trailing /x', 'c1\u0085.bin', 'rtl\u202egnp.exe', 'zero\u200bwidth', '', 'x'.repeat(256)]) {
      expect(relativeFilePathSchema.safeParse(p).success, JSON.stringify(p)).toBe(false)
    }
  })

  it('are checked in every topology that names files', () => {
    expect(topologySchema.safeParse({ kind: 'tfjs', modelJson: '{}', weightFiles: [{ path: '../../../tmp/pwned.bin', byteLength: 1 }] }).success).toBe(false)
    expect(topologySchema.safeParse({ kind: 'onnx', fileName: '/abs.onnx', skeleton: '', holes: [], external: [] }).success).toBe(false)
    expect(topologySchema.safeParse({ kind: 'onnx', skeleton: '', holes: [], external: [{ tensor: 0, location: '../data', offset: 0 }] }).success).toBe(false)
    expect(topologySchema.safeParse({ kind: 'tfjs', modelJson: '{}', weightFiles: [{ path: 'w/ok.bin', byteLength: 1 }] }).success).toBe(true)
  })
})

/** The manifest ingest makes of `files` (blocks sealed for real, 2+1 shards). */
async function ingested (files: ModelFile[]): Promise<Manifest> {
  const model = await readModel(files)
  const coder = await erasureCoder(defaultReedSolomon, { k: 2, m: 1 })
  const plan = { targetBytes: 4096, maxBytes: 8192 }
  const { blocks } = await sealBlocks(model, partition(model.tensors, plan), { coder, findStored: async () => undefined, access: () => 'public' })
  return testManifest({ format: model.format, topology: model.topology, tensors: model.tensors, partition: plan, blocks })
}

/** The first issue's path and message, as verifySignedManifest reports it; undefined when `m` parses. */
function refusal (m: Manifest): string | undefined {
  const parsed = manifestSchema.safeParse(m)
  if (parsed.success) return undefined
  const issue = parsed.error.issues[0]
  return `${issue?.path.join('.') ?? ''}: ${issue?.message ?? ''}`
}

// A runtime sizes buffers from these numbers (shared/load/loader.ts, shared/formats/onnx_splice.ts):
// a signed manifest that contradicts itself is refused when parsed, before any key, shard or
// cache entry, with the field named.
describe('manifest numbers that contradict each other', () => {
  let onnx: Manifest
  let external: Manifest
  let tfjs: Manifest

  beforeAll(async () => {
    onnx = await ingested([modelFile(VAD_DIR, 'silero_vad_legacy.onnx')])
    const tiny = tinyOnnx()
    external = await ingested([tiny.onnx, tiny.external])
    tfjs = await ingested(await denseModelFiles(8, [['a', 4, 1]]))
  })

  it('are absent from what ingest makes (ONNX with holes, ONNX with external data, tfjs)', () => {
    for (const m of [onnx, external, tfjs]) expect(refusal(m)).toBeUndefined()
    expect(external.topology.kind === 'onnx' && external.topology.external.length).toBeGreaterThan(0)
  })

  it('a sealed length other than the plaintext\'s plus the seal overhead', () => {
    const m = structuredClone(tfjs)
    m.blocks[0]!.plaintextLength += 1000
    expect(refusal(m)).toMatch(/^blocks\.0\.sealedLength: block 0: sealed length \d+, but a plaintext of \d+ bytes seals to \d+$/)
    const n = structuredClone(tfjs)
    n.blocks[0]!.sealedLength = 2 ** 50
    n.blocks[0]!.shards.size = Math.ceil(2 ** 50 / 2)
    expect(refusal(n)).toMatch(/^blocks\.0\.sealedLength: /)
  })

  it('more shards than Reed-Solomon over GF(2^8) has', () => {
    const m = structuredClone(tfjs)
    m.erasure = { scheme: 'reed-solomon-gf8', k: 300, m: 0 }
    for (const b of m.blocks) b.shards = { size: Math.ceil(b.sealedLength / 300), cids: Array.from({ length: 300 }, () => b.cid) }
    expect(refusal(m)).toBe('erasure: k + m at most 256 (Reed-Solomon over GF(2^8))')
  })

  it('an ONNX tensor placed twice (2,000 copies of one hole made a 700 KB manifest cost 5 GB)', () => {
    const m = structuredClone(onnx)
    if (m.topology.kind !== 'onnx') throw new Error('onnx')
    const hole = m.topology.holes[5]!
    m.topology.holes.splice(5, 0, ...Array.from({ length: 2000 }, () => ({ ...hole })))
    expect(refusal(m)).toBe(`topology.holes.6.tensor: tensor ${hole.tensor} (${m.tensors[hole.tensor]!.name}) is placed a second time`)
    // The first few issues say it; 2.5 million of them took 4.8 s and 1 GB to refuse (review).
    const parsed = manifestSchema.safeParse(m)
    expect(parsed.success ? 0 : parsed.error.issues.length).toBe(10)
    const e = structuredClone(external)
    if (e.topology.kind !== 'onnx') throw new Error('onnx')
    const ext = e.topology.external[0]!
    for (let i = 0; i < 3; i++) e.topology.external.push({ ...ext, location: `copy${i}.data` })
    expect(refusal(e)).toMatch(/^topology\.external\.\d+\.tensor: tensor \d+ \(W\) is placed a second time$/)
  })

  it('ONNX external ranges that leave more zeros between tensors than padding allows (a runtime allocates each file to its last byte)', () => {
    const e = structuredClone(external)
    if (e.topology.kind !== 'onnx') throw new Error('onnx')
    const total = e.tensors.reduce((n, t) => n + t.byteLength, 0)
    e.topology.external[0]!.offset = 2 ** 40
    expect(refusal(e)).toBe(`topology.external: the external files leave ${2 ** 40} bytes between tensors, more than the ${1 << 20} of padding the tensors' ${total} bytes allow`)
    // Alignment-sized padding passes.
    e.topology.external[0]!.offset = 64 << 10
    expect(refusal(e)).toBeUndefined()
    // 250,000 empty tensors in one external file: checked in a loop (a spread of their ends
    // overflowed the stack, so the parse threw instead of answering; found by the final read).
    const many = structuredClone(external)
    if (many.topology.kind !== 'onnx') throw new Error('onnx')
    const at = many.tensors.length
    for (let i = 0; i < 250_000; i++) {
      many.tensors.push({ name: `z${i}`, dtype: 'float32', shape: [0], byteLength: 0, layer: 'z' })
      many.topology.external.push({ tensor: at + i, location: 'tiny.bin', offset: 0 })
    }
    expect(() => manifestSchema.safeParse(many)).not.toThrow()
  })

  it('an ONNX tensor placed nowhere, or a hole or external range naming a tensor that does not exist', () => {
    const m = structuredClone(onnx)
    if (m.topology.kind !== 'onnx') throw new Error('onnx')
    const last = m.topology.holes.pop()!
    expect(refusal(m)).toBe(`tensors.${last.tensor}: tensor ${last.tensor} (${m.tensors[last.tensor]!.name}) is placed nowhere in the topology (neither a hole nor external data)`)
    m.topology.holes.push({ ...last, tensor: m.tensors.length })
    expect(refusal(m)).toBe(`topology.holes.${m.topology.holes.length - 1}.tensor: tensor ${m.tensors.length} does not exist (there are ${m.tensors.length})`)
  })

  it('ONNX holes out of file order, and external ranges of one file that overlap', () => {
    const m = structuredClone(onnx)
    if (m.topology.kind !== 'onnx') throw new Error('onnx')
    const h = m.topology.holes
    ;[h[3], h[4]] = [h[4]!, h[3]!]
    expect(refusal(m)).toMatch(/^topology\.holes\.4\.offset: offset \d+ comes before the previous hole's \d+$/)
    const e = structuredClone(external)
    if (e.topology.kind !== 'onnx') throw new Error('onnx')
    const w = e.topology.external[0]!
    const other = e.topology.holes.pop()!
    e.topology.external.push({ tensor: other.tensor, location: w.location, offset: w.offset + 4 })
    expect(refusal(e)).toMatch(new RegExp(`^topology\\.external\\.\\d+\\.offset: bytes ${w.offset + 4}\\.\\.\\d+ of ${w.location} are given to two tensors$`))
  })

  it('tfjs weight files whose sizes do not add up to the tensors, and a format its topology does not fit', () => {
    const m = structuredClone(tfjs)
    if (m.topology.kind !== 'tfjs') throw new Error('tfjs')
    m.topology.weightFiles[0]!.byteLength = 2 ** 40
    expect(refusal(m)).toMatch(/^topology\.weightFiles: the weight files total 1099511627776 bytes, the tensors \d+$/)
    expect(refusal({ ...tfjs, format: 'onnx' })).toBe('topology.kind: format onnx with topology kind tfjs')
    expect(refusal({ ...onnx, format: 'tfjs-graph' })).toBe('topology.kind: format tfjs-graph with topology kind onnx')
  })
})
