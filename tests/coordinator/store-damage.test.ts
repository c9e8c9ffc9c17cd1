/**
 * A coordinator data dir damaged under it (review 36b): a block file whose bytes changed, block
 * files lost (a partial restore), a database of a newer blockfed or of another program. Each is
 * refused with an error naming what to restore, nothing is served or stored from it, and the
 * coordinator keeps serving the rest. Real coordinator, real files, real SQLite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { DatabaseSync } from 'node:sqlite'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { signedManifestOf, type VersionRow } from '../../coordinator/store/repository.ts'
import { IntegrityError, InvalidConfigError } from '../../shared/errors/errors.ts'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'
import { httpBlockSource } from '../../shared/load/http-source.ts'
import { retrying } from '../../shared/load/retry.ts'
import { nodeHttpBlockSource } from '../../node-runtime/sources/http.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-store-damage-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

const pathOf = (dataDir: string, cid: string): string => join(dataDir, 'blocks', cid.slice(-2), cid)

describe('a damaged data dir', () => {
  it('answers a block file that no longer hashes to its CID with 502 and no cache headers, and serves the others', async () => {
    const dataDir = join(root, 'flipped')
    const first = await createCoordinator({ dataDir, port: 0 })
    await first.ingest('m', await denseModelFiles(16, [['a', 8, 1]]))
    const [block] = signedManifestOf(first.repo.latest('m') as VersionRow).manifest.blocks
    await first.stop()
    const cid = block?.shards.cids[1] as string
    const bytes = await readFile(pathOf(dataDir, cid))
    bytes[0] = (bytes[0] as number) ^ 0xff
    await writeFile(pathOf(dataDir, cid), bytes)

    const c = await createCoordinator({ dataDir, port: 0 })
    const url = await c.start()
    try {
      const res = await fetch(`${url}/v1/blocks/${cid}`)
      expect(res.status).toBe(502)
      // Named inside the data dir only: the route answers without a token.
      const { message } = await res.json() as { message: string }
      expect(message).toContain(`blocks/${cid.slice(-2)}/${cid} is damaged on the coordinator's disk (it does not hash to its CID)`)
      expect(message).not.toContain(dataDir)
      // Before, a 200 under `immutable` for a year, the flipped bytes in its body.
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(res.headers.get('etag')).toBeNull()
      const other = await fetch(`${url}/v1/blocks/${block?.shards.cids[0] ?? ''}`)
      expect(other.status).toBe(200)
      // A revalidation looks only for the file (the ETag is the CID): a cache holding this CID got
      // its bytes while they hashed to it. Before, the file was read and hashed, and 502 answered.
      expect((await fetch(`${url}/v1/blocks/${cid}`, { headers: { 'if-none-match': `"${cid}"` } })).status).toBe(304)

      // Both runtime sources read the answer as the damage it is: final (asking again re-reads the
      // same file), with the coordinator's reason. Before, "HTTP 502" unavailable, retried.
      const node = nodeHttpBlockSource({ baseUrl: url })
      for (const source of [httpBlockSource({ baseUrl: url }), node]) {
        const asked = retrying(source, 3, 1)
        const err = await asked.get(cid, { signal: AbortSignal.timeout(10_000) }).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(IntegrityError)
        expect((err as Error).message).toContain('HTTP 502: blocks/')
        expect(source.requests).toBe(1)
      }
      node.close()
    } finally {
      await c.stop()
    }
  })

  it('refuses an ingest that would reuse a stored block whose files are gone, and stores nothing of it', async () => {
    const dataDir = join(root, 'lost')
    const c = await createCoordinator({ dataDir, port: 0 })
    try {
      const files = await denseModelFiles(16, [['a', 8, 2]])
      await c.ingest('m', files)
      const [block] = signedManifestOf(c.repo.latest('m') as VersionRow).manifest.blocks
      for (const cid of [block?.cid as string, ...block?.shards.cids ?? []]) await rm(pathOf(dataDir, cid))
      // The same weights under another name reuse the block: before, version 1 of `again` was
      // published on it, 0 bytes stored, and no runtime could load it.
      await expect(c.ingest('again', files)).rejects.toThrow(`block ${block?.cid ?? ''}, stored already and reused by this model, has 7 of its 7 files missing`)
      expect(c.repo.latest('again')).toBeUndefined()
      // Over HTTP the client reads it as what it is, not as the coordinator being unreachable.
      const url = await c.start()
      const client = coordinatorClient({ baseUrl: url, token: c.adminToken })
      const err = await client.ingest('again', files).then(() => undefined, (e: unknown) => e)
      expect(err).toBeInstanceOf(IntegrityError)
      expect((err as Error).message).toContain('has 7 of its 7 files missing')
      expect(c.repo.latest('again')).toBeUndefined()
    } finally {
      await c.stop()
    }
  })

  it('refuses a database of a newer blockfed, or of another program, and changes neither', async () => {
    const newer = join(root, 'newer')
    await (await createCoordinator({ dataDir: newer, port: 0 })).stop()
    const path = join(newer, 'coordinator.sqlite')
    const db = new DatabaseSync(path)
    db.exec('PRAGMA user_version = 99')
    db.close()
    const starting = createCoordinator({ dataDir: newer, port: 0 })
    await expect(starting).rejects.toThrow(InvalidConfigError)
    await expect(starting).rejects.toThrow(`${path}: written by a newer blockfed (schema 99;`)

    const foreign = join(root, 'foreign')
    await mkdir(foreign)
    const other = new DatabaseSync(join(foreign, 'coordinator.sqlite'))
    other.exec('CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)')
    other.close()
    await expect(createCoordinator({ dataDir: foreign, port: 0 })).rejects.toThrow(/an SQLite file of another program \(1 tables, no blockfed schema\)/)
    const after = new DatabaseSync(join(foreign, 'coordinator.sqlite'))
    expect(after.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all().map(r => r.name)).toEqual(['photos'])
    expect(after.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'delete' })
    after.close()

    // And a file that is not SQLite at all.
    const junk = join(root, 'junk')
    await mkdir(junk)
    await writeFile(join(junk, 'coordinator.sqlite'), 'not a database, just text that is long enough to have a header '.repeat(4))
    await expect(createCoordinator({ dataDir: junk, port: 0 })).rejects.toThrow(/coordinator\.sqlite: not a blockfed coordinator database/)
  })
})
