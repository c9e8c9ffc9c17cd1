/**
 * t-of-n Shamir secret sharing (Shamir 1979, "How to Share a Secret") of 32-byte secrets, as
 * Bonawitz et al. 2017 (§3, §4 round 1) use it for the self-mask seed b_u and the mask key s_u^SK.
 *
 * Field: GF(p) with p = 2^521 − 1, the Mersenne prime M521 (Robinson 1952; the field of NIST
 * P-521, FIPS 186-4 §D.1.2.5; the tests prove it prime with the Lucas–Lehmer test). It is larger
 * than 2^256, so every 32-byte secret is one field element and nothing has to be split; a share
 * costs 66 bytes. After reconstruction a value ≥ 2^256 cannot be a secret and is refused: a share
 * replaced by a random value is caught so, except with probability 2^−265. Shares carry no MAC,
 * so a deliberately small offset is not caught here (the semi-honest model of Bonawitz et al.).
 *
 * Shares sit at x = the holder's 1-based index; coefficients are uniform in GF(p) from
 * `crypto.getRandomValues`; reconstruction is Lagrange interpolation at 0.
 */
import { IntegrityError, InvalidInputError } from '../../shared/errors/errors.ts'

/** p = 2^521 − 1. */
export const FIELD_PRIME = (1n << 521n) - 1n
/** Big-endian bytes of one field element (⌈521 / 8⌉). */
export const SHARE_BYTES = 66
/** Secrets are exactly this long. */
export const SECRET_BYTES = 32
/** Largest x-coordinate: indices are client positions, far below this. */
const MAX_X = 2 ** 31 - 1

export interface Share {
  /** The holder's 1-based index. */
  x: number
  /** f(x), big-endian, SHARE_BYTES long. */
  y: Uint8Array
}

/** a mod p in [0, p). */
export function mod (a: bigint): bigint {
  const r = a % FIELD_PRIME
  return r < 0n ? r + FIELD_PRIME : r
}

/** a^−1 mod p by the extended Euclidean algorithm; throws for a ≡ 0. */
export function inverse (a: bigint): bigint {
  let r0 = mod(a)
  if (r0 === 0n) throw new InvalidInputError('field inverse: 0 has no inverse')
  let r1 = FIELD_PRIME
  let s0 = 1n
  let s1 = 0n
  while (r1 !== 0n) {
    const q = r0 / r1
    ;[r0, r1] = [r1, r0 - q * r1]
    ;[s0, s1] = [s1, s0 - q * s1]
  }
  return mod(s0)
}

/** Big-endian bytes → integer. */
export function bytesToBigInt (bytes: Uint8Array): bigint {
  let v = 0n
  for (const b of bytes) v = (v << 8n) | BigInt(b)
  return v
}

/** Integer in [0, 256^length) → big-endian bytes of `length`. */
export function bigIntToBytes (v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn)
    v >>= 8n
  }
  if (v !== 0n) throw new InvalidInputError(`bigIntToBytes: value does not fit in ${length} bytes`)
  return out
}

/** A uniform element of GF(p): 521 random bits, redrawn in the one case (2^521 − 1 itself) that is not below p. */
function randomElement (): bigint {
  const bytes = new Uint8Array(SHARE_BYTES)
  for (;;) {
    globalThis.crypto.getRandomValues(bytes)
    bytes[0] = (bytes[0] as number) & 0x01
    const v = bytesToBigInt(bytes)
    bytes.fill(0)
    if (v < FIELD_PRIME) return v
  }
}

function checkXs (xs: readonly number[], what: string): void {
  const seen = new Set<number>()
  for (const x of xs) {
    if (!Number.isInteger(x) || x < 1 || x > MAX_X) throw new InvalidInputError(`${what}: x-coordinate ${x} is not an integer in [1, ${MAX_X}]`)
    if (seen.has(x)) throw new InvalidInputError(`${what}: x-coordinate ${x} appears twice`)
    seen.add(x)
  }
}

/**
 * Shares of a 32-byte `secret`, one per x in `xs`, any `threshold` of which reconstruct it and
 * fewer of which reveal nothing.
 *
 * @example const shares = split(secret, 3, [1, 2, 3, 4, 5])
 */
export function split (secret: Uint8Array, threshold: number, xs: readonly number[]): Share[] {
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_BYTES) throw new InvalidInputError(`shamir split secret: expected ${SECRET_BYTES} bytes`)
  checkXs(xs, 'shamir split xs')
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > xs.length) {
    throw new InvalidInputError(`shamir split threshold: expected an integer in [1, ${xs.length}], got ${threshold}`)
  }
  const coefficients = [bytesToBigInt(secret)]
  for (let i = 1; i < threshold; i++) coefficients.push(randomElement())
  const shares = xs.map(x => {
    const bx = BigInt(x)
    let y = 0n
    for (let i = coefficients.length - 1; i >= 0; i--) y = (y * bx + (coefficients[i] as bigint)) % FIELD_PRIME
    return { x, y: bigIntToBytes(y, SHARE_BYTES) }
  })
  coefficients.fill(0n)
  return shares
}

/** The field element a share carries, checked to be below p. */
export function shareValue (share: Share, what = 'share'): bigint {
  if (!(share.y instanceof Uint8Array) || share.y.length !== SHARE_BYTES) throw new InvalidInputError(`${what}: expected ${SHARE_BYTES} bytes`)
  const y = bytesToBigInt(share.y)
  if (y >= FIELD_PRIME) throw new InvalidInputError(`${what}: value is not below the field prime`)
  return y
}

/** The inverses of all of `values` (none ≡ 0) with one field inversion: Montgomery's batch trick. */
function inverses (values: readonly bigint[]): bigint[] {
  const prefix: bigint[] = new Array(values.length)
  let acc = 1n
  for (let i = 0; i < values.length; i++) {
    prefix[i] = acc
    acc = (acc * (values[i] as bigint)) % FIELD_PRIME
  }
  let inv = inverse(acc)
  const out: bigint[] = new Array(values.length)
  for (let i = values.length - 1; i >= 0; i--) {
    out[i] = (inv * (prefix[i] as bigint)) % FIELD_PRIME
    inv = (inv * (values[i] as bigint)) % FIELD_PRIME
  }
  return out
}

/**
 * The Lagrange basis of the points at `xs` (distinct, none 0): `at(x)[i]` = L_i(x) =
 * Π_{j≠i} (x − x_j)/(x_i − x_j), so f(x) = Σ f(x_i)·L_i(x) for f of degree < xs.length, and
 * `atZero` = L_i(0), what reconstruction needs. The denominators are inverted once, together
 * (review 47a: t inversions per secret, each an extended Euclid over 521 bits, made a round's
 * finish() block its coordinator 785 ms at 120 clients); the x's are small integers, so the
 * products are of a field element by a machine-sized number.
 */
export interface LagrangeBasis {
  readonly xs: readonly number[]
  readonly atZero: readonly bigint[]
  at: (x: number) => bigint[]
}

export function lagrangeBasis (xs: readonly number[]): LagrangeBasis {
  const denominators = xs.map((xi, i) => {
    let d = 1n
    for (let j = 0; j < xs.length; j++) if (j !== i) d = (d * BigInt(xi - (xs[j] as number))) % FIELD_PRIME
    return mod(d)
  })
  const invDenominators = inverses(denominators)
  // Not memoised per x: a table per spare x of every basis held a complete graph's whole cube of
  // weights (review 47f: 1.4 GiB at 500 clients).
  const at = (x: number): bigint[] => {
    const own = xs.indexOf(x)
    if (own >= 0) return xs.map((_, i) => i === own ? 1n : 0n)
    const differences = xs.map(xj => mod(BigInt(x - xj)))
    let all = 1n
    for (const d of differences) all = (all * d) % FIELD_PRIME
    const invDifferences = inverses(differences)
    return xs.map((_, i) => (((all * (invDifferences[i] as bigint)) % FIELD_PRIME) * (invDenominators[i] as bigint)) % FIELD_PRIME)
  }
  return { xs, atZero: at(0), at }
}

/** Σ y_i·w_i mod p. */
function weighted (ys: readonly bigint[], weights: readonly bigint[]): bigint {
  let acc = 0n
  for (let i = 0; i < ys.length; i++) acc += (ys[i] as bigint) * (weights[i] as bigint)
  return acc % FIELD_PRIME
}

/** f(0) of the polynomial of degree < points.length through the given points (Lagrange). */
export function interpolateAtZero (points: ReadonlyArray<{ x: number, y: bigint }>): bigint {
  return weighted(points.map(p => p.y), lagrangeBasis(points.map(p => p.x)).atZero)
}

export interface CombineOptions {
  /**
   * Shares past the first `threshold` to check against the polynomial the first ones make
   * (default all). With all checked, shares that all agree are the secret's whenever
   * `threshold` of them are right; checking fewer lets colluders fit theirs to the ones checked.
   */
  check?: number
  /** Where the bases come from (a cache: holders' x's repeat across owners). */
  basis?: (xs: readonly number[]) => LagrangeBasis
}

/**
 * The secret from at least `threshold` shares: interpolated from the first `threshold`, and every
 * further share (up to `options.check`) checked to lie on the same polynomial. Throws
 * InvalidInputError for too few or malformed shares, and IntegrityError when the shares disagree
 * or the result cannot be a 32-byte secret, i.e. some share was wrong. Shamir shares carry no MAC:
 * with exactly `threshold` shares a deliberate offset is not caught (review 47a: one crafted share
 * gave a wrong sum silently), so callers wait for spares where they can.
 *
 * @example const secret = combine(shares.slice(2), 3)
 */
export function combine (shares: readonly Share[], threshold: number, options: CombineOptions = {}): Uint8Array {
  if (!Number.isInteger(threshold) || threshold < 1) throw new InvalidInputError(`shamir combine threshold: expected a positive integer, got ${threshold}`)
  if (shares.length < threshold) throw new InvalidInputError(`shamir combine shares: ${shares.length} shares, the threshold is ${threshold}`)
  const checked = shares.slice(0, threshold + Math.max(0, options.check ?? shares.length))
  checkXs(checked.map(s => s.x), 'shamir combine shares')
  const ys = checked.map((s, i) => shareValue(s, `shamir combine shares[${i}]`))
  const used = checked.slice(0, threshold).map(s => s.x)
  const basis = options.basis?.(used) ?? lagrangeBasis(used)
  const base = ys.slice(0, threshold)
  for (let k = threshold; k < checked.length; k++) {
    if (weighted(base, basis.at((checked[k] as Share).x)) !== ys[k]) {
      throw new IntegrityError(`shamir combine: the shares disagree (share at x = ${(checked[k] as Share).x} is not on the polynomial of the first ${threshold}): a share is wrong`)
    }
  }
  const secret = weighted(base, basis.atZero)
  if (secret >> BigInt(SECRET_BYTES * 8) !== 0n) throw new IntegrityError('shamir combine: the shares do not interpolate to a 32-byte secret (a share is wrong)')
  return bigIntToBytes(secret, SECRET_BYTES)
}
