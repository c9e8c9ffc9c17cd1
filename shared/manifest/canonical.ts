/**
 * RFC 8785 JSON Canonicalization Scheme, via the `canonicalize` package (by one of the RFC's
 * authors): the bytes that are hashed into a manifest's CID and signed.
 */
import canonicalizeJson from 'canonicalize'
import { InvalidInputError } from '../errors/errors.ts'

/**
 * The canonical bytes of `value`; InvalidInputError naming the first value JCS cannot write.
 * JSON text may hold a lone UTF-16 surrogate ("\ud800"), which RFC 8785 §3.2.2.2 refuses: such a
 * string in a model.json was a 500 at ingest, not a refusal naming the field.
 */
export function canonicalBytes (value: unknown): Uint8Array {
  let text: string | undefined
  try {
    text = canonicalizeJson(value)
  } catch (err) {
    // The package's refusals of a value (not of a bug of ours, such as a cycle or a BigInt).
    if (!/^(Lone surrogate|NaN|Infinity) is not allowed$/.test((err as Error).message)) throw err
    throw new InvalidInputError(`canonical JSON: ${(err as Error).message}${at(unwritable(value))}`, { cause: err })
  }
  if (text === undefined) throw new InvalidInputError('canonical JSON: value is not serialisable')
  return new TextEncoder().encode(text)
}

/** With the `u` flag a surrogate pair is one code point, so this matches lone surrogates only. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u

const at = (path: string | undefined): string => path === undefined ? '' : ` (at ${path === '' ? 'the top' : path})`

/** The path of the first string (key or value) that is not well-formed UTF-16, or number that is not finite. */
function unwritable (value: unknown): string | undefined {
  // Iterative: a caller's depth limit is not ours to assume. Each object once (the package has
  // refused cycles by now, but a value shared twice is walked once).
  const seen = new WeakSet<object>()
  const stack: Array<[unknown, string]> = [[value, '']]
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string]
    if (typeof v === 'string' && LONE_SURROGATE.test(v)) return path
    if (typeof v === 'number' && !Number.isFinite(v)) return path
    if (typeof v !== 'object' || v === null || seen.has(v)) continue
    seen.add(v)
    const entries = Array.isArray(v) ? v.map((item, i) => [String(i), item] as const) : Object.entries(v)
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, item] = entries[i] as readonly [string, unknown]
      const child = path === '' ? key : `${path}.${key}`
      if (LONE_SURROGATE.test(key)) return child
      stack.push([item, child])
    }
  }
  return undefined
}
