/**
 * fetchModel (shared/load/fetch-model.ts, exported by blockfed's shared entry) on its own, over
 * blocks sealed by the real ingest stages: the signed manifest must be the one asked for, the
 * caller's `verify` runs before any key or block is asked for, and the data keys are wiped once
 * the load ends, whether it succeeded or failed.
 */
import { describe, it, expect, beforeAll } from 'vitest'
import { defaultReedSolomon, erasureCoder } from '../../../shared/blocks/erasure.ts'
import { partition } from '../../../shared/blocks/partition.ts'
import { sealBlocks } from '../../../shared/blocks/seal-blocks.ts'
import { fetchModel } from '../../../shared/load/fetch-model.ts'
import { canonicalBytes } from '../../../shared/manifest/canonical.ts'
import { jsonCid } from '../../../shared/crypto/cid.ts'
import { toBase64 } from '../../../shared/crypto/bytes.ts'
import { generateSigningKey, keyId, sign } from '../../../shared/crypto/sign.ts'
import { AccessDeniedError, NotFoundError } from '../../../shared/errors/errors.ts'
import type { BlockSource } from '../../../shared/load/source.ts'
import { manifestSchema, type Manifest } from '../../../shared/manifest/schema.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'
import { testManifest } from '../../helpers/manifest.ts'

const PARTITION = { targetBytes: 2048, maxBytes: 4096 }
const tensors: TensorInfo[] = [
  { name: 'a/kernel', dtype: 'float32', shape: [40, 50], byteLength: 8000, layer: 'a' },
  { name: 'b/kernel', dtype: 'float32', shape: [50, 10], byteLength: 2000, layer: 'b' }
]
const weights = new Uint8Array(10_000).map((_, i) => (i * 31 + 7) & 0xff)
const signer = generateSigningKey()
const store = new Map<string, Uint8Array>()
const keys = new Map<string, Uint8Array>()
let manifest: Manifest

const signed = async (m: Manifest): Promise<unknown> => {
  const bytes = canonicalBytes(m)
  return { manifest: m, cid: await jsonCid(bytes), signature: { alg: 'Ed25519', keyId: await keyId(signer.publicKey), value: toBase64(sign(bytes, signer.secretKey)) } }
}

/** A load of version 1 served `served`, recording in `asked` what it asked for, in order. */
async function load (served: unknown, asked: string[], given: Map<string, Uint8Array>, verify?: () => Promise<void>): Promise<unknown> {
  const source: BlockSource = {
    name: 'memory',
    async get (cid) {
      asked.push('block')
      const bytes = store.get(cid)
      if (bytes === undefined) throw new NotFoundError(cid)
      return bytes
    }
  }
  return await fetchModel({
    client: {} as never,
    coordinatorKey: signer.publicKey,
    model: 'm',
    version: 1,
    signedManifest: served,
    verify: async () => { asked.push('verify'); await verify?.() },
    keys: async () => { asked.push('keys'); return given },
    source
  }).then(fetched => fetched, (err: unknown) => err)
}
const copyOfKeys = (): Map<string, Uint8Array> => new Map([...keys].map(([id, k]) => [id, k.slice()]))

beforeAll(async () => {
  const coder = await erasureCoder(defaultReedSolomon, { k: 2, m: 1 })
  const { blocks, created } = await sealBlocks({ tensors, weights }, partition(tensors, PARTITION), { coder, findStored: async () => undefined, access: () => 'public' })
  for (const c of created) {
    keys.set(c.keyId, c.key)
    for (const s of c.shards) store.set(s.cid, s.bytes)
  }
  manifest = manifestSchema.parse(testManifest({ tensors, erasure: { scheme: 'reed-solomon-gf8', k: 2, m: 1 }, partition: PARTITION, blocks }))
})

describe('fetchModel', () => {
  it('loads the version asked for, verify first, then keys, then blocks; the keys are wiped afterwards', async () => {
    const asked: string[] = []
    const given = copyOfKeys()
    const fetched = await load(await signed(manifest), asked, given) as { weights: Uint8Array }
    expect(Buffer.compare(fetched.weights, weights)).toBe(0)
    expect(asked.slice(0, 2)).toEqual(['verify', 'keys'])
    expect(asked.slice(2).every(a => a === 'block')).toBe(true)
    for (const key of given.values()) expect(key.every(b => b === 0)).toBe(true)
  })

  it('refuses a signed manifest of another version or model before verify, keys or blocks', async () => {
    for (const other of [{ ...manifest, version: 2, parent: null }, { ...manifest, model: 'n' }]) {
      const asked: string[] = []
      const error = await load(await signed(other), asked, copyOfKeys())
      expect(error).toBeInstanceOf(AccessDeniedError)
      expect((error as Error).message).toBe(`asked for m@1, coordinator answered ${other.model}@${other.version}`)
      expect(asked).toEqual([])
    }
  })

  it('asks for no key and no block when verify refuses', async () => {
    const asked: string[] = []
    const error = await load(await signed(manifest), asked, copyOfKeys(), async () => { throw new Error('not in the ledger') })
    expect(error).toMatchObject({ message: 'not in the ledger' })
    expect(asked).toEqual(['verify'])
  })

  it('wipes the keys when the load fails', async () => {
    const given = copyOfKeys()
    // The first block's key is wrong: the load fails once that block is opened.
    const first = manifest.blocks[0]?.keyId as string
    given.set(first, new Uint8Array(32).fill(7))
    const error = await load(await signed(manifest), [], given)
    expect(error).toBeInstanceOf(Error)
    for (const key of given.values()) expect(key.every(b => b === 0)).toBe(true)
  })
})
