/**
 * The coordinator reads a version it published back into a normalised model: its own sealed
 * blocks, opened with its own data keys (unwrapped from the master key), checked against the
 * manifest's CIDs and plaintext hashes, placed into one weight buffer. Rounds start from it and
 * publish the next version with the same block layout.
 */
import type { SignedManifest, Manifest } from '../../shared/manifest/schema.ts'
import type { NormalisedModel, ModelMetadata } from '../../shared/model/types.ts'
import type { BlockPlan } from '../../shared/blocks/partition.ts'
import { weightAssembler } from '../../shared/blocks/assemble.ts'
import { open } from '../../shared/crypto/seal.ts'
import { sha256Hex } from '../../shared/crypto/hash.ts'
import { IntegrityError, NotFoundError } from '../../shared/errors/errors.ts'
import { signedManifestOf, type Repository } from '../store/repository.ts'
import type { BlockFiles } from '../store/block-files.ts'
import type { Identity } from '../keys/identity.ts'

export interface BaseModel {
  signed: SignedManifest
  model: NormalisedModel
  plans: BlockPlan[]
}

export interface BaseModelDeps {
  repo: Repository
  files: BlockFiles
  identity: Identity
}

export function plansOf (manifest: Manifest): BlockPlan[] {
  // The levels too: a round's version keeps each block's access level (review 50a M2).
  return manifest.blocks.map(b => ({ unit: b.unit, parts: b.parts, byteLength: b.plaintextLength, access: b.access }))
}

export async function readBaseModel (deps: BaseModelDeps, name: string, version: number): Promise<BaseModel> {
  const row = deps.repo.version(name, version)
  if (row === undefined) throw new NotFoundError(`model ${name} has no version ${version}`)
  const signed = signedManifestOf(row)
  const { manifest } = signed
  const keys = deps.repo.dataKeys(manifest.blocks.map(b => b.keyId))
  const assembler = weightAssembler(manifest)
  for (const [i, block] of manifest.blocks.entries()) {
    const wrapped = keys.get(block.keyId)
    if (wrapped === undefined) throw new IntegrityError(`${name}@${version}: data key ${block.keyId} is missing`)
    const sealed = await deps.files.get(block.cid) // checked against its CID there
    const key = deps.identity.unwrapDataKey(block.keyId, wrapped)
    try {
      const plaintext = await open(sealed, key, `block ${block.cid}`)
      if (await sha256Hex(plaintext) !== block.plaintextSha256) throw new IntegrityError(`${name}@${version}: block ${i} plaintext hash mismatch`)
      assembler.place(i, plaintext)
    } finally {
      key.fill(0)
    }
  }
  return {
    signed,
    plans: plansOf(manifest),
    model: {
      format: manifest.format,
      topology: manifest.topology,
      tensors: manifest.tensors,
      weights: assembler.weights,
      metadata: manifest.metadata as unknown as ModelMetadata
    }
  }
}
