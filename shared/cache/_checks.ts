/** Argument checks shared by the cache tiers; messages name the tier and the argument. */
import { InvalidInputError } from '../errors/errors.ts'

export function checkCapacity (where: string, capacityBytes: unknown): void {
  if (typeof capacityBytes !== 'number' || !Number.isSafeInteger(capacityBytes) || capacityBytes < 0) {
    throw new InvalidInputError(`${where}: capacityBytes must be a non-negative safe integer, got ${String(capacityBytes)}`)
  }
}

export function checkKey (tier: string, key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidInputError(`cache tier "${tier}": key must be a non-empty string, got ${typeof key === 'string' ? '""' : typeof key}`)
  }
}

export function checkBytes (tier: string, bytes: unknown): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidInputError(`cache tier "${tier}": value must be a Uint8Array, got ${bytes === null ? 'null' : typeof bytes}`)
  }
}
