/**
 * Sealed blocks and shards as files under `<data>/blocks/<2-char fan-out>/<cid>`. Writes go to a
 * temporary name and are renamed into place, so a reader never sees half a file. Files land
 * before the database commit that records them: a crash mid-ingest leaves `.tmp` files and
 * complete files no row names, both removed by the next start's sweep. Recently served objects
 * stay in a bounded in-memory LRU, so a wave of runtimes loading the same model reads each file
 * once.
 */
import { mkdir, readFile, rename, rm, writeFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseCid } from '../../shared/crypto/cid.ts'
import { NotFoundError } from '../../shared/errors/errors.ts'
import { memoryCache } from '../../shared/cache/memory-lru.ts'

export interface BlockFiles {
  put: (cid: string, bytes: Uint8Array) => Promise<void>
  get: (cid: string) => Promise<Uint8Array>
  remove: (cid: string) => Promise<void>
  /** Removes temporaries left by a crash and, given `isStored`, every file whose CID it denies. */
  sweep: (isStored?: (cid: string) => boolean) => Promise<number>
}

export function blockFiles (dir: string, hotBytes = 256 << 20): BlockFiles {
  const hot = memoryCache({ capacityBytes: hotBytes, name: 'coordinator-hot' })
  const pathOf = (cid: string): string => {
    parseCid(cid) // the name is a validated CID: no path tricks can reach the file system
    return join(dir, cid.slice(-2), cid)
  }
  return {
    async put (cid, bytes) {
      const path = pathOf(cid)
      await mkdir(join(dir, cid.slice(-2)), { recursive: true })
      const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
      try {
        await writeFile(tmp, bytes)
        await rename(tmp, path)
      } catch (err) {
        await rm(tmp, { force: true })
        throw err
      }
    },
    async get (cid) {
      const cached = await hot.get(cid)
      if (cached !== undefined) return cached
      try {
        const bytes = new Uint8Array(await readFile(pathOf(cid)))
        await hot.put(cid, bytes)
        return bytes
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no block or shard ${cid}`)
        throw err
      }
    },
    async remove (cid) {
      await hot.delete(cid)
      await rm(pathOf(cid), { force: true })
    },
    async sweep (isStored) {
      let removed = 0
      await mkdir(dir, { recursive: true })
      for (const fan of await readdir(dir)) {
        for (const name of await readdir(join(dir, fan)).catch(() => [] as string[])) {
          if (name.endsWith('.tmp') || (isStored !== undefined && !isStored(name))) {
            await rm(join(dir, fan, name), { force: true })
            removed++
          }
        }
      }
      return removed
    }
  }
}
