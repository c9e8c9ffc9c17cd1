/**
 * Sealed blocks and shards as files under `<data>/blocks/<2-char fan-out>/<cid>`. Writes go to a
 * temporary name and are renamed into place, so a reader never sees half a file. Files land
 * before the database commit that records them: a crash mid-ingest leaves `.tmp` files and
 * complete files no row names, both removed by the next start's sweep. Recently served objects
 * stay in a bounded in-memory LRU, so a wave of runtimes loading the same model reads each file
 * once. `sync` makes a batch of puts durable before the commit that records them. A file read
 * from disk is checked against its CID before it is served or kept in memory: a damaged one
 * was served under a year-long immutable cache header, and shared caches kept its bytes.
 */
import { access, mkdir, readFile, rename, rm, writeFile, readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { parseCid, verifyCid } from '../../shared/crypto/cid.ts'
import { IntegrityError, NotFoundError } from '../../shared/errors/errors.ts'
import { memoryCache } from '../../shared/cache/memory-lru.ts'
import { fsyncPath } from '../../node-runtime/atomic-file.ts'

export interface BlockFiles {
  put: (cid: string, bytes: Uint8Array) => Promise<void>
  /** The bytes of `cid`; NotFoundError when there is no file, IntegrityError when the file does not hash to its CID. */
  get: (cid: string) => Promise<Uint8Array>
  /** Whether a file for `cid` is on disk (its bytes are not read). */
  has: (cid: string) => Promise<boolean>
  remove: (cid: string) => Promise<void>
  /**
   * Makes the files of `cids` durable: each file and the directories naming it are fsynced.
   * Called once for a batch of puts before the database commit that records them, so a row
   * never outlives its file in a power cut (one parallel pass: ≈ 90 ms for a 59 MB model here,
   * where an fsync inside every put cost ≈ 140 ms more, sequentially).
   */
  sync: (cids: Iterable<string>) => Promise<void>
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
      const path = pathOf(cid)
      let bytes: Uint8Array
      try {
        bytes = new Uint8Array(await readFile(path))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no block or shard ${cid}`)
        throw err
      }
      await verifyCid(cid, bytes, 'stored object').catch((err: unknown) => {
        // Named inside the data dir: the block route answers without a token.
        throw new IntegrityError(`blocks/${cid.slice(-2)}/${cid} is damaged on the coordinator's disk (it does not hash to its CID); its operator must restore the data dir's blocks folder from a backup`, { cause: err })
      })
      await hot.put(cid, bytes)
      return bytes
    },
    async has (cid) {
      // The file, not the memory copy: one lost while the coordinator runs is lost at its restart.
      return await access(pathOf(cid)).then(() => true, () => false)
    },
    async remove (cid) {
      await hot.delete(cid)
      await rm(pathOf(cid), { force: true })
    },
    async sync (cids) {
      const paths = [...new Set(cids)].map(pathOf)
      await Promise.all(paths.map(fsyncPath))
      // The renames live in the fan-out directories, and new fan-out directories in `dir`.
      await Promise.all([...new Set(paths.map(p => dirname(p)))].map(fsyncPath))
      await fsyncPath(dir)
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
