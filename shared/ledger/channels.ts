/**
 * Release channels, signed (review 42a M2). The ledger proves that a version exists and is the
 * only one of its number, not that the operator released it to a channel: over plain HTTP the
 * channels answer alone decided which anchored version a runtime ran (a fresh install put on v1,
 * a stable runtime moved onto a 1 % canary). So the coordinator signs every answer with its key
 * (the one that signs manifests) over the canonical JSON of
 *   { type: "blockfed.channels/v1", model, seq, logSize, stable, canary }
 * where `seq` grows with every change of the model's channels (a new version, which moves a stable
 * channel that follows the latest, and every channel set or cleared): a runtime keeps the highest
 * `seq` it accepted and refuses an older answer, so a replayed one cannot move it back.
 * Not covered: a runtime that never saw an answer takes any correctly signed one, an old one
 * included (its version is still anchored; `logSize` says how old it is).
 */
import { decodeBase64, toBase64 } from '../crypto/bytes.ts'
import { sign, verify, type SigningKeyPair } from '../crypto/sign.ts'
import { LedgerSecurityError } from '../errors/errors.ts'
import { canonicalBytes } from '../manifest/canonical.ts'
import type { Channels } from './api.ts'

export const CHANNELS_STATEMENT = 'blockfed.channels/v1'

/** What the signature covers: the channels as a runtime acts on them, with their sequence and the log's size. */
type Unsigned = Pick<Channels, 'model' | 'stable' | 'canary'>

function statement (c: Unsigned, seq: number, logSize: number): Uint8Array {
  return canonicalBytes({
    type: CHANNELS_STATEMENT,
    model: c.model,
    seq,
    logSize,
    stable: { version: c.stable.version, followsLatest: c.stable.followsLatest ?? false },
    canary: c.canary === null ? null : { version: c.canary.version, rollout: c.canary.rollout }
  })
}

/** The channels answer, signed by the coordinator. */
export function signChannels (c: Unsigned, seq: number, logSize: number, key: SigningKeyPair): Channels {
  const stable = { version: c.stable.version, followsLatest: c.stable.followsLatest ?? false }
  return { model: c.model, stable, canary: c.canary, seq, logSize, signature: toBase64(sign(statement({ ...c, stable }, seq, logSize), key.secretKey)) }
}

/**
 * The channels answer if the coordinator (`publicKey`) signed it for `model` and it is not older
 * than the newest this runtime accepted (`seenSeq`); LedgerSecurityError otherwise, naming why.
 */
export function verifyChannels (answer: Channels, publicKey: Uint8Array, expected: { model: string, seenSeq: number }): Channels & { seq: number } {
  const refuse = (why: string): never => {
    throw new LedgerSecurityError(`${expected.model}: the channels answer ${why}; staying on the version in use`, { offered: JSON.stringify(answer) })
  }
  if (answer.signature === undefined || answer.seq === undefined || answer.logSize === undefined) return refuse('is not signed (a coordinator before signed channels, or stripped on the way)')
  if (answer.model !== expected.model) return refuse(`names the model ${answer.model}`)
  let signature: Uint8Array
  try {
    signature = decodeBase64(answer.signature, 'channels signature', { bytes: 64 })
  } catch {
    return refuse('has a malformed signature')
  }
  if (!verify(signature, statement(answer, answer.seq, answer.logSize), publicKey)) return refuse('is not signed by the coordinator key this runtime trusts (changed on the way, or the coordinator key is not the one configured or pinned)')
  // The other cause of an older answer is an operator's restore, said in the message (review 42c).
  if (answer.seq < expected.seenSeq) return refuse(`is older (seq ${answer.seq}) than one already accepted here (seq ${expected.seenSeq}): a replay, or the coordinator's database was restored from an older backup (then delete channels-seen.json in this runtime's model folder to take its answers again)`)
  return { ...answer, seq: answer.seq }
}
