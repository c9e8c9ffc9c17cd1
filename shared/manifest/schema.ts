/**
 * The manifest of one model version (DESIGN.md, "Data model"): everything a runtime needs to
 * fetch, verify, decrypt and reassemble the model, and nothing secret (data keys are served
 * separately, to authenticated clients only). Serialised as RFC 8785 canonical JSON; its CID is
 * CIDv1(json, sha2-256) of those bytes and the coordinator signs the same bytes with Ed25519.
 */
import { z } from 'zod'
import { shardLayoutError } from '../blocks/erasure.ts'
import { MAX_BLOCK_BYTES } from '../blocks/partition.ts'
import { SEAL_OVERHEAD } from '../crypto/seal.ts'
import { manifestTensorBytes } from '../formats/_dtypes.ts'
import { onnxPaddingBudget } from '../formats/onnx_splice.ts'

export const MANIFEST_SCHEMA = 'blockfed/manifest@1'

const cidString = z.string().regex(/^b[a-z2-7]{20,120}$/, 'a base32 CIDv1')
const hex = (bytes: number): z.ZodString => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `${bytes * 2} lowercase hex characters`)
const count = z.number().int().nonnegative()
/**
 * A file path relative to the model's folder: `blockfed pull` writes the model back out under
 * these names, so none may climb out of the folder or name an absolute place (a signed manifest
 * comes from a coordinator a runtime need not trust). Spaces, brackets and non-ASCII letters are
 * fine (`model (1).onnx`). Refused, so a pulled model can be written out on any platform and
 * read as it is: control characters (C0 and C1), bidirectional and zero-width format characters
 * (which make `gpj.exe` look like `exe.jpg`), the characters Windows keeps for itself
 * (`\ : * ? " < > |`), its device names (`CON`, `nul.bin`…) and segments ending in a dot or space.
 */
const UNSAFE_CHARACTER = /[\\:*?"<>|\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$/i
export const relativeFilePathSchema = z.string().min(1).max(255).refine(
  p => !p.startsWith('/') && !UNSAFE_CHARACTER.test(p) && p.split('/').every(segment =>
    segment !== '' && segment !== '.' && segment !== '..' && !/[. ]$/.test(segment) && !WINDOWS_DEVICE.test(segment)),
  'a relative file path (no leading "/", no "..", "." or empty segment, none ending in "." or a space, no Windows device name, no control or format character or any of \\ : * ? " < > |)'
)
export const modelNameSchema = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'lowercase letters, digits, ".", "_" or "-", starting with a letter or digit, at most 64 characters')

export const tensorSchema = z.object({
  name: z.string().min(1),
  dtype: z.string().min(1),
  shape: z.array(count),
  byteLength: count,
  layer: z.string(),
  quantization: z.object({ dtype: z.enum(['uint8', 'uint16', 'float16']), scale: z.number().optional(), min: z.number().optional() }).strict().optional()
}).strict()

export const blockPartSchema = z.object({
  tensor: count,
  offset: count,
  length: count,
  rows: z.tuple([count, count]).optional()
}).strict()

export const blockSchema = z.object({
  index: count,
  unit: z.string(),
  parts: z.array(blockPartSchema).min(1),
  plaintextLength: count,
  plaintextSha256: hex(32),
  cid: cidString,
  sealedLength: count,
  keyId: hex(16),
  /** Access level; a role grants a set of levels (DESIGN.md, "Keys and access"). */
  access: z.string().min(1),
  shards: z.object({
    size: z.number().int().positive(),
    cids: z.array(cidString).min(1)
  }).strict()
}).strict()

export const topologySchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('tfjs'),
    modelJson: z.string(),
    weightFiles: z.array(z.object({ path: relativeFilePathSchema, byteLength: count }).strict())
  }).strict(),
  z.object({
    kind: z.literal('onnx'),
    fileName: relativeFilePathSchema.optional(),
    skeleton: z.string(),
    holes: z.array(z.object({ offset: count, tensor: count }).strict()),
    external: z.array(z.object({ tensor: count, location: relativeFilePathSchema, offset: count }).strict())
  }).strict()
])

export const manifestSchema = z.object({
  schema: z.literal(MANIFEST_SCHEMA),
  model: modelNameSchema,
  version: z.number().int().positive(),
  parent: z.number().int().positive().nullable(),
  createdAt: z.string().datetime(),
  format: z.enum(['tfjs-layers', 'tfjs-graph', 'onnx']),
  topology: topologySchema,
  metadata: z.record(z.string(), z.unknown()),
  tensors: z.array(tensorSchema),
  erasure: z.object({ scheme: z.literal('reed-solomon-gf8'), k: z.number().int().positive(), m: count }).strict()
    .refine(e => e.k + e.m <= 256, 'k + m at most 256 (Reed-Solomon over GF(2^8))'),
  partition: z.object({ targetBytes: z.number().int().positive(), maxBytes: z.number().int().positive().max(MAX_BLOCK_BYTES) }).strict(),
  blocks: z.array(blockSchema),
  /** The training round that produced this version (null for an ingest). */
  round: z.string().nullable(),
  metrics: z.record(z.string(), z.number()).nullable()
}).strict().superRefine((manifest, ctx) => {
  // Shape and dtype say how many bytes a tensor holds; a byteLength that disagrees would make
  // training or a pulled model read the tensor with the wrong length.
  let tensorIssues = 0
  manifest.tensors.forEach((t, i) => {
    const bytes = manifestTensorBytes(t)
    if (bytes === t.byteLength || tensorIssues >= MAX_TOPOLOGY_ISSUES) return
    tensorIssues++
    ctx.addIssue({
      code: 'custom',
      path: ['tensors', i, bytes === undefined ? 'dtype' : 'byteLength'],
      message: bytes === undefined
        ? `tensor ${t.name}: unknown dtype ${t.dtype}`
        : `tensor ${t.name}: ${t.byteLength} bytes, but ${t.quantization?.dtype ?? t.dtype} of shape [${t.shape.join(', ')}] holds ${Number.isFinite(bytes) ? bytes : 'more than 2^53 elements'}`
    })
  })
  manifest.blocks.forEach((block, i) => {
    if (block.plaintextLength > manifest.partition.maxBytes) {
      ctx.addIssue({ code: 'custom', path: ['blocks', i, 'plaintextLength'], message: `block ${block.index}: ${block.plaintextLength} bytes, above the partition's maxBytes ${manifest.partition.maxBytes}` })
    }
    // A sealed block is its plaintext plus a fixed overhead (crypto/seal.ts): claimed apart, the
    // loader would size its buffers by one number and meet the other only after fetching.
    if (block.sealedLength !== block.plaintextLength + SEAL_OVERHEAD) {
      ctx.addIssue({ code: 'custom', path: ['blocks', i, 'sealedLength'], message: `block ${block.index}: sealed length ${block.sealedLength}, but a plaintext of ${block.plaintextLength} bytes seals to ${block.plaintextLength + SEAL_OVERHEAD}` })
    }
    const error = shardLayoutError(manifest.erasure, block.sealedLength, block.shards)
    if (error !== undefined) ctx.addIssue({ code: 'custom', path: ['blocks', i, 'shards'], message: `block ${block.index}: ${error}` })
  })
  for (const issue of topologyIssues(manifest)) ctx.addIssue({ code: 'custom', ...issue })
})

/**
 * Where the topology disagrees with the tensor list. The runtime sizes what it rebuilds (the
 * .onnx, its external-data files, the tfjs weight files) from these numbers, so each is held
 * to what ingest produces: every ONNX tensor placed exactly once (a hole or an external range;
 * a tensor named 2,000 times in `holes` made a 700 KB manifest cost 5 GB of memory), holes in
 * file order, external ranges of one file apart, tfjs weight files as long as the tensors.
 */
/** Issues reported per manifest: the first few say what is wrong; millions cost gigabytes (found by review). */
const MAX_TOPOLOGY_ISSUES = 10

function topologyIssues (manifest: Pick<Manifest, 'format' | 'topology' | 'tensors'>): Array<{ path: Array<string | number>, message: string }> {
  const { topology, tensors } = manifest
  if ((manifest.format === 'onnx') !== (topology.kind === 'onnx')) {
    return [{ path: ['topology', 'kind'], message: `format ${manifest.format} with topology kind ${topology.kind}` }]
  }
  const total = tensors.reduce((n, t) => n + t.byteLength, 0)
  if (topology.kind === 'tfjs') {
    const files = topology.weightFiles.reduce((n, f) => n + f.byteLength, 0)
    return files === total ? [] : [{ path: ['topology', 'weightFiles'], message: `the weight files total ${files} bytes, the tensors ${total}` }]
  }
  const issues: Array<{ path: Array<string | number>, message: string }> = []
  const report = (issue: { path: Array<string | number>, message: string }): void => { if (issues.length < MAX_TOPOLOGY_ISSUES) issues.push(issue) }
  const placed = new Array<boolean>(tensors.length).fill(false)
  const place = (list: 'holes' | 'external', i: number, tensor: number): boolean => {
    if (tensor >= tensors.length) {
      report({ path: ['topology', list, i, 'tensor'], message: `tensor ${tensor} does not exist (there are ${tensors.length})` })
      return false
    }
    if (placed[tensor] === true) {
      report({ path: ['topology', list, i, 'tensor'], message: `tensor ${tensor} (${tensors[tensor]?.name ?? ''}) is placed a second time` })
      return false
    }
    placed[tensor] = true
    return true
  }
  let previous = 0
  topology.holes.forEach((hole, i) => {
    place('holes', i, hole.tensor)
    if (hole.offset < previous) report({ path: ['topology', 'holes', i, 'offset'], message: `offset ${hole.offset} comes before the previous hole's ${previous}` })
    previous = Math.max(previous, hole.offset)
  })
  const ranges = new Map<string, Array<{ start: number, end: number, i: number }>>()
  topology.external.forEach((e, i) => {
    if (!place('external', i, e.tensor)) return
    const list = ranges.get(e.location) ?? []
    list.push({ start: e.offset, end: e.offset + (tensors[e.tensor]?.byteLength ?? 0), i })
    ranges.set(e.location, list)
  })
  let padding = 0
  for (const [location, list] of ranges) {
    const nonEmpty = list.filter(r => r.end > r.start).sort((a, b) => a.start - b.start)
    // A loop, not Math.max(...ends): a crafted file with a million ranges would overflow the stack.
    padding += list.reduce((m, r) => Math.max(m, r.end), 0) - nonEmpty.reduce((n, r) => n + r.end - r.start, 0)
    for (let j = 1; j < nonEmpty.length; j++) {
      const [a, b] = [nonEmpty[j - 1], nonEmpty[j]] as [typeof list[number], typeof list[number]]
      if (b.start < a.end) report({ path: ['topology', 'external', b.i, 'offset'], message: `bytes ${b.start}..${Math.min(a.end, b.end)} of ${location} are given to two tensors` })
    }
  }
  // The runtime allocates each external file to its last byte: uncovered zeros must stay padding.
  if (padding > onnxPaddingBudget(total)) report({ path: ['topology', 'external'], message: `the external files leave ${padding} bytes between tensors, more than the ${onnxPaddingBudget(total)} of padding the tensors' ${total} bytes allow` })
  const missing = placed.indexOf(false)
  if (missing >= 0) report({ path: ['tensors', missing], message: `tensor ${missing} (${tensors[missing]?.name ?? ''}) is placed nowhere in the topology (neither a hole nor external data)` })
  return issues
}

export type Manifest = z.infer<typeof manifestSchema>
export type ManifestBlock = z.infer<typeof blockSchema>

/** What the coordinator serves and a runtime caches: the manifest, its CID and its signature. */
export const signedManifestSchema = z.object({
  manifest: manifestSchema,
  cid: cidString,
  signature: z.object({
    alg: z.literal('Ed25519'),
    keyId: hex(8),
    /** base64 of the 64-byte signature over the manifest's canonical JSON bytes. */
    value: z.string().regex(/^[A-Za-z0-9+/]+=*$/)
  }).strict()
}).strict()

export type SignedManifest = z.infer<typeof signedManifestSchema>
