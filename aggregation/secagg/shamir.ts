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

/** f(0) of the polynomial of degree < shares.length through the given points (Lagrange). */
export function interpolateAtZero (points: ReadonlyArray<{ x: number, y: bigint }>): bigint {
  let acc = 0n
  for (let i = 0; i < points.length; i++) {
    const xi = BigInt((points[i] as { x: number }).x)
    let num = 1n
    let den = 1n
    for (let j = 0; j < points.length; j++) {
      if (j === i) continue
      const xj = BigInt((points[j] as { x: number }).x)
      num = (num * xj) % FIELD_PRIME
      den = (den * mod(xj - xi)) % FIELD_PRIME
    }
    acc = (acc + (points[i] as { y: bigint }).y * ((num * inverse(den)) % FIELD_PRIME)) % FIELD_PRIME
  }
  return acc
}

/**
 * The secret from at least `threshold` shares (the first `threshold` are used). Throws
 * InvalidInputError for too few or malformed shares, and IntegrityError when the result cannot be
 * a 32-byte secret, i.e. some share was wrong.
 *
 * @example const secret = combine(shares.slice(2), 3)
 */
export function combine (shares: readonly Share[], threshold: number): Uint8Array {
  if (!Number.isInteger(threshold) || threshold < 1) throw new InvalidInputError(`shamir combine threshold: expected a positive integer, got ${threshold}`)
  if (shares.length < threshold) throw new InvalidInputError(`shamir combine shares: ${shares.length} shares, the threshold is ${threshold}`)
  const used = shares.slice(0, threshold)
  checkXs(used.map(s => s.x), 'shamir combine shares')
  const secret = interpolateAtZero(used.map((s, i) => ({ x: s.x, y: shareValue(s, `shamir combine shares[${i}]`) })))
  if (secret >> BigInt(SECRET_BYTES * 8) !== 0n) throw new IntegrityError('shamir combine: the shares do not interpolate to a 32-byte secret (a share is wrong)')
  return bigIntToBytes(secret, SECRET_BYTES)
}
