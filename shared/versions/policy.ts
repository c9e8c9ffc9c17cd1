/**
 * Which version a runtime should run (issue 4, "Version policy"): a `pin`, else its channel.
 * A canary release reaches a deterministic fraction of clients: a client is in when
 * SHA-256(model ‖ version ‖ client id), read as a fraction of 2^32, is below the rollout — so a
 * client's answer never flips for the same release, and a larger rollout keeps everyone who was
 * already in. Versions this runtime rolled back from are never chosen again.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import type { Channels } from '../ledger/api.ts'

export interface VersionPolicy {
  pin?: number
  channel?: 'stable' | 'canary'
}

/** The client's position in [0, 1) for one release, fixed by the three inputs. */
export function rolloutBucket (clientId: string, model: string, version: number): number {
  const digest = sha256(new TextEncoder().encode(`${model}\n${version}\n${clientId}`))
  return new DataView(digest.buffer, digest.byteOffset, 4).getUint32(0) / 2 ** 32
}

export interface Target {
  version: number
  /** Why this version: `pin`, `stable`, `canary` (in the rollout). */
  reason: 'pin' | 'stable' | 'canary'
}

export function targetVersion (policy: VersionPolicy, channels: Channels, clientId: string, rejected: ReadonlySet<number> = new Set()): Target | undefined {
  // A pinned version rolled back from is not taken again (the runtime stays where it went).
  if (policy.pin !== undefined) return rejected.has(policy.pin) ? undefined : { version: policy.pin, reason: 'pin' }
  const canary = channels.canary
  if (policy.channel === 'canary' && canary !== null && !rejected.has(canary.version) &&
      rolloutBucket(clientId, channels.model, canary.version) < canary.rollout) {
    return { version: canary.version, reason: 'canary' }
  }
  if (rejected.has(channels.stable.version)) return undefined
  return { version: channels.stable.version, reason: 'stable' }
}
