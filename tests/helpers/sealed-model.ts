/**
 * A model sealed by the real ingest stages (partition, seal, Reed-Solomon) into memory, as the
 * loader tests read it: every sealed block and shard in `store` by CID, every data key in `keys`
 * by key id, and the manifest (created at the epoch) that names them; `created` counts the
 * distinct sealed blocks (equal plaintexts are sealed once).
 */
import { defaultReedSolomon, erasureCoder, type ErasureCoder } from '../../shared/blocks/erasure.ts'
import { partition, type PartitionOptions } from '../../shared/blocks/partition.ts'
import { sealBlocks } from '../../shared/blocks/seal-blocks.ts'
import { manifestSchema, type Manifest } from '../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../shared/model/types.ts'
import { testManifest } from './manifest.ts'

export async function sealIntoMemory (
  model: { tensors: TensorInfo[], weights: Uint8Array, partition: PartitionOptions, erasure: { k: number, m: number } },
  store: Map<string, Uint8Array>,
  keys: Map<string, Uint8Array>
): Promise<{ coder: ErasureCoder, manifest: Manifest, created: number }> {
  const { tensors, weights, erasure } = model
  const coder = await erasureCoder(defaultReedSolomon, erasure)
  const { blocks, created } = await sealBlocks({ tensors, weights }, partition(tensors, model.partition), { coder, findStored: async () => undefined, access: () => 'public' })
  for (const c of created) {
    store.set(c.cid, c.sealed)
    keys.set(c.keyId, c.key)
    for (const s of c.shards) store.set(s.cid, s.bytes)
  }
  const manifest = manifestSchema.parse(testManifest({ createdAt: new Date(0).toISOString(), tensors, erasure: { scheme: 'reed-solomon-gf8', ...erasure }, partition: model.partition, blocks }))
  return { coder, manifest, created: created.length }
}
