/**
 * Sealed blocks and shards as files under `<data>/blocks/<2-char fan-out>/<cid>`. Writes go to a
 * temporary name and are renamed into place, so a reader never sees half a file and a crash
 * leaves at most a `.tmp` that the next start removes.
 */
import { mkdir, readFile, rename, rm, writeFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseCid } from '../../shared/crypto/cid.ts'
import { NotFoundError } from '../../shared/errors/errors.ts'

export interface BlockFiles {
  put: (cid: string, bytes: Uint8Array) => Promise<void>
  get: (cid: string) => Promise<Uint8Array>
  remove: (cid: string) => Promise<void>
  /** Removes temporaries left by a crash. */
  sweep: () => Promise<number>
}

export function blockFiles (dir: string): BlockFiles {
  const pathOf = (cid: string): string => {
    parseCid(cid) // the name is a validated CID: no path tricks can reach the file system
    return join(dir, cid.slice(-2), cid)
  }
  return {
    async put (cid, bytes) {
      const path = pathOf(cid)
      await mkdir(join(dir, cid.slice(-2)), { recursive: true })
      const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
      await writeFile(tmp, bytes)
      await rename(tmp, path)
    },
    async get (cid) {
      try {
        return new Uint8Array(await readFile(pathOf(cid)))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no block or shard ${cid}`)
        throw err
      }
    },
    async remove (cid) {
      await rm(pathOf(cid), { force: true })
    },
    async sweep () {
      let removed = 0
      await mkdir(dir, { recursive: true })
      for (const fan of await readdir(dir)) {
        for (const name of await readdir(join(dir, fan)).catch(() => [] as string[])) {
          if (name.endsWith('.tmp')) {
            await rm(join(dir, fan, name), { force: true })
            removed++
          }
        }
      }
      return removed
    }
  }
}
