/**
 * The tfjs model.json (tfjs-core io/types.ts `ModelJSON`; the "tfjs model format" of
 * https://www.tensorflow.org/js/guide/save_load): parsed by a schema before use, with the
 * sizes of the weights it lists (a quantized weight is stored as its quantization dtype).
 */
import { z } from 'zod'
import { InvalidModelError, TooLargeError } from '../errors/errors.ts'
import { MAX_MANIFEST_BYTES } from '../manifest/sign.ts'
import type { ModelFile } from '../model/types.ts'
import { checkTensorCount, elementCount, MAX_TENSOR_RANK, MAX_TENSORS, TFJS_DTYPE_BYTES, TFJS_QUANTIZED_BYTES } from './_dtypes.ts'

const jsonObject = z.record(z.string(), z.unknown())

const weightEntrySchema = z.looseObject({
  name: z.string().min(1),
  shape: z.array(z.int().nonnegative()).max(MAX_TENSOR_RANK),
  dtype: z.string(),
  /** tfjs-layers marks optimizer state saved with `includeOptimizer` as group "optimizer". */
  group: z.string().optional(),
  quantization: z.looseObject({
    dtype: z.enum(['uint8', 'uint16', 'float16']),
    scale: z.number().optional(),
    min: z.number().optional()
  }).optional()
})

const modelJsonSchema = z.looseObject({
  format: z.string().nullish(),
  generatedBy: z.string().nullish(),
  convertedBy: z.string().nullish(),
  modelTopology: jsonObject,
  // Bounded so a bad list is refused as one issue: zod keeps one per bad entry (review 46c).
  weightsManifest: z.array(z.looseObject({
    paths: z.array(z.string()).max(MAX_TENSORS),
    weights: z.array(weightEntrySchema).max(MAX_TENSORS)
  })).max(MAX_TENSORS),
  trainingConfig: jsonObject.nullish(),
  signature: jsonObject.nullish(),
  userDefinedMetadata: jsonObject.nullish(),
  modelInitializer: jsonObject.nullish(),
  initializerSignature: jsonObject.nullish()
})

export type ModelJson = z.infer<typeof modelJsonSchema>
export type WeightEntry = z.infer<typeof weightEntrySchema>

/** The text of a JSON file, kept exactly (a BOM stays in the string, so it is written back). */
export function decodeJsonText (bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch (cause) {
    throw new InvalidModelError(`${file} is not UTF-8 text`, { cause })
  }
}

/**
 * The text of a model.json, refused before it is decoded when the manifest, which carries the
 * text, could not hold it: parsing first cost gigabytes (a 114 MiB array of zeros killed the
 * coordinator with out-of-memory).
 */
export function modelJsonText (file: ModelFile): string {
  if (file.bytes.length > MAX_MANIFEST_BYTES) {
    throw new TooLargeError(`${file.path} is ${file.bytes.length} bytes, more than the ${MAX_MANIFEST_BYTES} a manifest may hold (it carries the model.json)`)
  }
  return decodeJsonText(file.bytes, file.path)
}

/** JSON.parse that names the file and ignores a leading BOM. */
export function parseJsonText (text: string, file: string): unknown {
  try {
    return JSON.parse(text.startsWith('\uFEFF') ? text.slice(1) : text)
  } catch (cause) {
    throw new InvalidModelError(`${file} is not JSON: ${(cause as Error).message}`, { cause })
  }
}

/**
 * Deepest nesting a model.json may have. Keras topologies nest a few levels per wrapped model;
 * parts of the file (trainingConfig) go into the signed manifest, whose canonical JSON is
 * written recursively: 20,000 nested arrays overflowed its stack (an HTTP 500).
 */
const MAX_JSON_DEPTH = 256

/**
 * Throws InvalidModelError if `value` nests deeper than MAX_JSON_DEPTH, or holds a number JSON.parse
 * made infinite (1e999): canonical JSON (RFC 8785 §3.2.2.3) has no such number, so the manifest
 * could not carry it. Walked without recursion, keeping only the open containers and how far each
 * is read: a stack entry per element took gigabytes for one array of 60 million zeros.
 */
function checkDepth (value: unknown, file: string): void {
  const open: Array<{ items: readonly unknown[], next: number }> = []
  let v = value
  for (;;) {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new InvalidModelError(`${file} holds a number too large for a double (such as 1e999)`)
    if (typeof v === 'object' && v !== null) {
      if (open.length === MAX_JSON_DEPTH) throw new InvalidModelError(`${file} nests deeper than ${MAX_JSON_DEPTH} levels`)
      open.push({ items: Array.isArray(v) ? v : Object.values(v), next: 0 })
    }
    let top = open.at(-1)
    while (top !== undefined && top.next === top.items.length) {
      open.pop()
      top = open.at(-1)
    }
    if (top === undefined) return
    v = top.items[top.next++]
  }
}

/** Problems named in an error: the first few say what is wrong, thousands more would not. */
const MAX_PROBLEMS = 5

const problemsText = (issues: readonly z.core.$ZodIssue[], prefix: ReadonlyArray<string | number> = []): string[] =>
  issues.slice(0, MAX_PROBLEMS).map(i => {
    const path = [...prefix, ...i.path.map(String)]
    return `${path.length === 0 ? '(top level)' : path.join('.')}: ${i.message}`
  })

/**
 * Checks the weights manifest's entries one by one before the schema sees the whole, stopping at
 * a few problems, and refuses more weights than a model may have: zod keeps an issue per bad
 * entry, and 200,000 of them overflowed its stack (an HTTP 500), millions took gigabytes (review
 * 46c).
 */
function checkWeightEntries (value: unknown, file: string): void {
  const groups = typeof value === 'object' && value !== null ? (value as { weightsManifest?: unknown }).weightsManifest : undefined
  if (!Array.isArray(groups)) return
  let weights = 0
  for (const g of groups) {
    const list = typeof g === 'object' && g !== null ? (g as { weights?: unknown }).weights : undefined
    if (Array.isArray(list)) weights += list.length
  }
  if (groups.length > MAX_TENSORS) throw new InvalidModelError(`${file}: its weights manifest has ${groups.length} groups, more than a model has tensors (limit ${MAX_TENSORS})`)
  checkTensorCount(weights, file)
  const problems: string[] = []
  for (const [i, g] of groups.entries()) {
    const group = typeof g === 'object' && g !== null ? g as { paths?: unknown, weights?: unknown } : {}
    const entries: Array<[string, unknown[] | undefined, z.ZodType]> = [['paths', Array.isArray(group.paths) ? group.paths : undefined, z.string()], ['weights', Array.isArray(group.weights) ? group.weights : undefined, weightEntrySchema]]
    for (const [key, list, schema] of entries) {
      for (const [j, entry] of (list ?? []).entries()) {
        const parsed = schema.safeParse(entry)
        if (!parsed.success) problems.push(...problemsText(parsed.error.issues, ['weightsManifest', i, key, j]))
        if (problems.length >= MAX_PROBLEMS) throw new InvalidModelError(`${file} is not a valid tfjs model.json: ${problems.slice(0, MAX_PROBLEMS).join('; ')}`)
      }
    }
  }
}

/** Checks a parsed model.json against the schema; the error lists each problem with its path. */
export function modelJsonOf (value: unknown, file: string): ModelJson {
  checkDepth(value, file)
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const missing = ['modelTopology', 'weightsManifest'].filter(k => !(k in value))
    if (missing.length > 0) {
      throw new InvalidModelError(`${file} is not a tfjs model.json: it has no ${missing.join(' and no ')}`)
    }
  }
  checkWeightEntries(value, file)
  const parsed = modelJsonSchema.safeParse(value)
  if (!parsed.success) throw new InvalidModelError(`${file} is not a valid tfjs model.json: ${problemsText(parsed.error.issues).join('; ')}`)
  return parsed.data
}

export type TfjsKind = 'tfjs-layers' | 'tfjs-graph'

/** layers or graph, from `format`, else from the topology's shape. */
export function tfjsKind (json: ModelJson, file: string): TfjsKind {
  if (json.format === 'layers-model') return 'tfjs-layers'
  if (json.format === 'graph-model') return 'tfjs-graph'
  if (json.format != null) {
    throw new InvalidModelError(`${file} has format "${json.format}"; expected "layers-model" or "graph-model"`)
  }
  const t = json.modelTopology
  if (Array.isArray(t.node)) return 'tfjs-graph'
  if (('class_name' in t && 'config' in t) || 'model_config' in t) return 'tfjs-layers'
  throw new InvalidModelError(`${file} has no format and its modelTopology is neither a Keras model (class_name/config) nor a graph (node)`)
}

/** Bytes a weight occupies in the weight files; InvalidModelError for dtypes without a fixed size. */
export function weightByteLength (w: WeightEntry, file: string): number {
  // A quantized weight's size comes from its stored dtype, but its own dtype is what tfjs
  // restores it to, so it must be one tfjs knows too.
  const own = Object.hasOwn(TFJS_DTYPE_BYTES, w.dtype) ? TFJS_DTYPE_BYTES[w.dtype] : undefined
  const per = own === undefined ? undefined : w.quantization !== undefined ? TFJS_QUANTIZED_BYTES[w.quantization.dtype] : own
  if (per === undefined) {
    throw new InvalidModelError(w.dtype === 'string'
      ? `${file}: weight "${w.name}" has dtype string, which is not supported (string weights have no fixed byte size)`
      : `${file}: weight "${w.name}" has unknown dtype "${w.dtype}"`)
  }
  return elementCount(w.shape, `${file}: weight "${w.name}"`) * per
}
