/**
 * The runtime's client identity (node-runtime/fl/identity.ts) when two runtimes share a data dir
 * and start at once. The key file used to be created and then written in two steps: the runtime
 * that lost the race to create it read it in between, found it empty and failed to start. Here
 * the winner is held between creating its file and writing it until the other start has settled,
 * the interleaving two processes can hit; a crash at the same point is the torn file.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest'
import type { WriteFileOptions } from 'node:fs'
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { clientIdentity } from '../../../node-runtime/fl/identity.ts'
import { toHex } from '../../../shared/crypto/bytes.ts'

/**
 * Set, the next file write awaits it after its file is created and before its data is written
 * (one that throws: the process died there).
 */
let held: (() => Promise<void>) | undefined
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const hold = (): (() => Promise<void>) | undefined => { const h = held; held = undefined; return h }
  return {
    ...fs,
    async writeFile (path: string, data: string | Uint8Array, options?: WriteFileOptions) {
      const h = hold()
      if (h === undefined) return await fs.writeFile(path, data, options)
      await fs.writeFile(path, '', options)
      await h()
      await fs.writeFile(path, data)
    },
    async open (path: string, flags?: string, mode?: number) {
      const handle = await fs.open(path, flags, mode)
      const h = hold()
      if (h !== undefined) {
        const write = handle.writeFile.bind(handle)
        handle.writeFile = async (data: string | Uint8Array) => { await h(); await write(data) }
      }
      return handle
    }
  }
})

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-client-identity-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

it('two starts on one fresh data dir, one held between creating and writing its key: both get the same whole key', async () => {
  const dataDir = join(root, 'race')
  let release = (): void => {}
  const gate = new Promise<void>(resolve => { release = resolve })
  held = async () => { await gate }
  const starts = [clientIdentity(dataDir), clientIdentity(dataDir)] as const
  // The held start cannot finish before the release, so the other one settles first.
  await Promise.race(starts.map(async start => await start.catch(() => undefined)))
  release()
  const [a, b] = await Promise.all(starts)
  expect(toHex(a.publicKey)).toBe(toHex(b.publicKey))
  const path = join(dataDir, 'keys', 'client.ed25519')
  expect(toHex(new Uint8Array(await readFile(path)))).toBe(toHex(a.secretKey))
  expect((await stat(path)).mode & 0o777).toBe(0o600)
  expect(toHex((await clientIdentity(dataDir)).publicKey)).toBe(toHex(a.publicKey))
})

it('a start killed between creating and writing its key leaves no torn file: the next start makes a whole one', async () => {
  const dataDir = join(root, 'killed')
  held = async () => { throw new Error('killed between create and write') }
  await expect(clientIdentity(dataDir)).rejects.toThrow(/killed between create and write/)
  const identity = await clientIdentity(dataDir)
  expect(toHex(new Uint8Array(await readFile(join(dataDir, 'keys', 'client.ed25519'))))).toBe(toHex(identity.secretKey))
})

it('refuses a client key open to group or others, as the coordinator\'s', async () => {
  const dataDir = join(root, 'open')
  await clientIdentity(dataDir)
  const path = join(dataDir, 'keys', 'client.ed25519')
  await chmod(path, 0o644)
  await expect(clientIdentity(dataDir)).rejects.toThrow(`${path}: the key is open to group or others (mode 644); chmod 600 it`)
})
