/**
 * RFC 8785 JSON Canonicalization Scheme, via the `canonicalize` package (by one of the RFC's
 * authors): the bytes that are hashed into a manifest's CID and signed.
 */
import canonicalizeJson from 'canonicalize'
import { InvalidInputError } from '../errors/errors.ts'

export function canonicalBytes (value: unknown): Uint8Array {
  const text = canonicalizeJson(value)
  if (text === undefined) throw new InvalidInputError('canonical JSON: value is not serialisable')
  return new TextEncoder().encode(text)
}
