/**
 * Arithmetic in the ring Z/2^32 over `Uint32Array`s: the space where fixed-point updates,
 * masks and their sums live (Bonawitz et al. 2017, §3: inputs and masks in Z_R, R = 2^32).
 * Uint32Array stores reduce mod 2^32 by themselves, so `a + b` needs no explicit `% 2^32`.
 */

function checkLengths (a: Uint32Array, b: Uint32Array, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${what}: length ${b.length} does not match ${a.length}`)
}

/** acc ← acc + x (mod 2^32), in place; returns acc. */
export function addInto (acc: Uint32Array, x: Uint32Array): Uint32Array {
  checkLengths(acc, x, 'addInto')
  for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) + (x[i] as number)
  return acc
}

/** acc ← acc − x (mod 2^32), in place; returns acc. */
export function subInto (acc: Uint32Array, x: Uint32Array): Uint32Array {
  checkLengths(acc, x, 'subInto')
  for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) - (x[i] as number)
  return acc
}

/** Σ xs (mod 2^32) into a fresh array of the given length. */
export function ringSum (xs: Iterable<Uint32Array>, length: number): Uint32Array {
  const acc = new Uint32Array(length)
  for (const x of xs) addInto(acc, x)
  return acc
}
