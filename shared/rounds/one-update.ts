/**
 * One update per base version: the rule a runtime keeps (node-runtime/fl/given.ts) and the
 * coordinator follows when it picks clients (coordinator/rounds/rounds.ts, `eligible`), so an
 * honest coordinator never offers a round the runtime would decline.
 *
 * Why: secure aggregation hides an upload inside one round's sum, and only there. Two uploads
 * of one client from one base version (training is seeded from it, so they are nearly the same)
 * give a coordinator that chose the rounds' client sets another client's update by subtraction:
 * two secure sums over sets that differ by one client, or one secure sum of {X, Y} and X's plain
 * upload in mode none. Two plain uploads show only what the coordinator already saw, so a plain
 * round may follow a plain one at the same base. Bases only move forward: the coordinator trains
 * from its latest version alone (`roundBase`), so an older base is never offered honestly.
 */
import type { SecureMode } from './config.ts'

/** The newest base version a client uploaded an update from, and whether one of its uploads from that base went into a secure sum. */
export interface GivenUpload {
  base: number
  secure: boolean
}

/** An upload offered: from base version `base`, into a secure sum (masking, Paillier) or not (mode none). */
export interface UploadOffer {
  base: number
  secure: boolean
}

/** The upload a round from `base` in secure mode `mode` asks for ('none' is the only plain mode). */
export function uploadOf (base: number, mode: SecureMode): UploadOffer {
  return { base, secure: mode !== 'none' }
}

/** True when uploading `offer` after `given` could single an update out (see the module header). */
export function repeatsBase (given: GivenUpload | undefined, offer: UploadOffer): boolean {
  if (given === undefined || offer.base > given.base) return false
  if (offer.base < given.base) return true
  return offer.secure || given.secure
}

/** `given` after an upload of `offer` (never moves the base back). */
export function afterUpload (given: GivenUpload | undefined, offer: UploadOffer): GivenUpload {
  if (given === undefined || offer.base > given.base) return { base: offer.base, secure: offer.secure }
  if (offer.base === given.base) return { base: given.base, secure: given.secure || offer.secure }
  return given
}

/**
 * The later of two records of one client (the coordinator's accepted uploads, the runtime's own
 * word): the runtime may have sent an upload the coordinator never took, and only says so itself.
 */
export function newestGiven (a: GivenUpload | undefined, b: GivenUpload | undefined): GivenUpload | undefined {
  return b === undefined ? a : afterUpload(a, b)
}
