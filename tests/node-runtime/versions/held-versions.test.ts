/**
 * What an operation of this process holds (local-store.ts `holding`) is kept by every save of
 * keys (obtain.ts `pruneKept`), however old: a fetch or a rollback of an old version anchors it
 * before its move is recorded, and a prune from another operation in between must not take the
 * anchor away. Holds are counted: two operations holding one version keep it until both end.
 * Real local store on a temporary folder; the anchors are signed test manifests.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { localVersions, type LocalVersions } from '../../../node-runtime/versions/local-store.ts'
import { pruneKept } from '../../../node-runtime/versions/obtain.ts'
import { canonicalBytes } from '../../../shared/manifest/canonical.ts'
import { jsonCid } from '../../../shared/crypto/cid.ts'
import { toBase64 } from '../../../shared/crypto/bytes.ts'
import { generateSigningKey, keyId, sign } from '../../../shared/crypto/sign.ts'
import { signedManifestSchema } from '../../../shared/manifest/schema.ts'
import { testManifest } from '../../helpers/manifest.ts'

const signer = generateSigningKey()
let dir: string
let local: LocalVersions

/** Keeps an anchor of version `v` (a signed manifest of it; the anchor's proof is not read here). */
async function anchor (v: number): Promise<void> {
  const manifest = testManifest({ version: v })
  const bytes = canonicalBytes(manifest)
  const signed = signedManifestSchema.parse({ manifest, cid: await jsonCid(bytes), signature: { alg: 'Ed25519', keyId: await keyId(signer.publicKey), value: toBase64(sign(bytes, signer.secretKey)) } })
  await local.saveAnchor(signed, { index: v, leaf: '', proof: [], checkpoint: '' })
}
const anchors = async (): Promise<number[]> => (await readdir(join(dir, 'anchors'))).map(n => Number(n.replace('.json', ''))).sort((a, b) => a - b)

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'blockfed-held-versions-'))
  local = localVersions(dir)
  for (const v of [1, 2, 3, 4, 5, 6]) await anchor(v)
})
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('versions an operation holds', () => {
  it('are counted per folder: two holds of one version keep it held until both end, seen by every handle of the folder', async () => {
    let endFirst: () => void = () => {}
    const first = local.holding(2, async () => await new Promise<void>(resolve => { endFirst = resolve }))
    let endSecond: () => void = () => {}
    const second = localVersions(dir).holding(2, async () => await new Promise<void>(resolve => { endSecond = resolve }))
    expect([...localVersions(dir).held()]).toEqual([2])
    endFirst()
    await first
    expect([...local.held()]).toEqual([2])
    endSecond()
    await second
    expect([...local.held()]).toEqual([])
    // A hold ends when its task fails, too.
    await expect(local.holding(3, async () => { throw new Error('failed') })).rejects.toThrow('failed')
    expect([...local.held()]).toEqual([])
  })

  it('keep an old version\'s anchor through a prune, which drops it once nothing holds it', async () => {
    await local.saveState({ current: 5, previous: 4, rejected: [6] })
    await local.holding(2, async () => {
      await pruneKept(local)
      expect(await anchors()).toEqual([2, 4, 5])
    })
    await pruneKept(local)
    expect(await anchors()).toEqual([4, 5])
  })

  it('a prune keeps a newer version not refused (on its way in), and before any version is in use keeps all but the refused', async () => {
    await local.saveState({ current: null, previous: null, rejected: [3] })
    await pruneKept(local)
    expect(await anchors()).toEqual([1, 2, 4, 5, 6])
    await local.saveState({ current: 4, previous: null, rejected: [3, 6] })
    await pruneKept(local)
    expect(await anchors()).toEqual([4, 5])
  })
})
