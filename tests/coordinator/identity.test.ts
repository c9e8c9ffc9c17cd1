/**
 * The coordinator's key files (coordinator/keys/identity.ts). A crash while they were first
 * written used to leave an empty key file that stopped every later start; a lost master.key was
 * silently replaced beside data keys it cannot unwrap (every key request then failed, and new
 * ingests split the database across two master keys). The crash is emulated by failing the data
 * write after the file is created, as a process killed at that point would.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { WriteFileOptions } from 'node:fs'
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadIdentity } from '../../coordinator/keys/identity.ts'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { InvalidConfigError } from '../../shared/errors/errors.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

/** While true, every file write dies after its file is created and before a byte is written. */
let killedBeforeWrite = false
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>()
  const killed = (): Error => new Error('killed between create and write')
  return {
    ...fs,
    async writeFile (path: string, data: string | Uint8Array, options?: WriteFileOptions) {
      if (!killedBeforeWrite) return await fs.writeFile(path, data, options)
      await fs.writeFile(path, '', options)
      throw killed()
    },
    async open (path: string, flags?: string, mode?: number) {
      const handle = await fs.open(path, flags, mode)
      if (killedBeforeWrite) handle.writeFile = async () => { throw killed() }
      return handle
    }
  }
})

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-identity-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

describe('coordinator key files', () => {
  it('a start killed while creating the keys leaves none torn: the next start creates them whole', async () => {
    const dataDir = join(root, 'killed')
    killedBeforeWrite = true
    try {
      await expect(loadIdentity(dataDir)).rejects.toThrow(/killed between create and write/)
    } finally {
      killedBeforeWrite = false
    }
    const identity = await loadIdentity(dataDir)
    for (const name of ['coordinator.ed25519', 'master.key']) {
      const { size, mode } = await stat(join(dataDir, 'keys', name))
      expect([name, size, mode & 0o777]).toEqual([name, 32, 0o600])
    }
    expect((await loadIdentity(dataDir)).publicKeyHex).toBe(identity.publicKeyHex)
  })

  it.each(['coordinator.ed25519', 'master.key'])('refuses %s when group or others may read it, saying how to fix it', async (name) => {
    const dataDir = join(root, `mode-${name}`)
    await loadIdentity(dataDir)
    const path = join(dataDir, 'keys', name)
    await chmod(path, 0o640)
    const loading = loadIdentity(dataDir)
    await expect(loading).rejects.toThrow(InvalidConfigError)
    await expect(loading).rejects.toThrow(`${path}: the key is open to group or others (mode 640); chmod 600 it`)
    await chmod(path, 0o600)
    await loadIdentity(dataDir)
  })
})

describe('master key and the data keys it wraps', () => {
  const files = denseModelFiles(16, [['a', 8, 1]])

  /** A data dir whose database holds data keys wrapped under its master.key. */
  async function ingested (name: string): Promise<string> {
    const dataDir = join(root, name)
    const coordinator = await createCoordinator({ dataDir, port: 0 })
    await coordinator.ingest('m', await files)
    await coordinator.stop()
    return dataDir
  }

  it('refuses to start without master.key when the database holds data keys, and makes none', async () => {
    const dataDir = await ingested('lost')
    const path = join(dataDir, 'keys', 'master.key')
    const kept = await readFile(path)
    await rm(path)
    const starting = createCoordinator({ dataDir, port: 0 })
    await expect(starting).rejects.toThrow(InvalidConfigError)
    await expect(starting).rejects.toThrow(`${path} is missing, but the database holds data keys wrapped under it`)
    expect((await readdir(join(dataDir, 'keys'))).sort()).toEqual(['coordinator.ed25519'])
    // The restored file starts it again, and its data keys unwrap.
    await writeFile(path, kept, { mode: 0o600 })
    const coordinator = await createCoordinator({ dataDir, port: 0 })
    const version = coordinator.repo.latest('m')
    expect(version?.blocks).toBeGreaterThan(0)
    await coordinator.stop()
  })

  it('refuses to start with a master.key that does not unwrap the stored data keys', async () => {
    const dataDir = await ingested('wrong')
    const path = join(dataDir, 'keys', 'master.key')
    await writeFile(path, globalThis.crypto.getRandomValues(new Uint8Array(32)), { mode: 0o600 })
    const starting = createCoordinator({ dataDir, port: 0 })
    await expect(starting).rejects.toThrow(InvalidConfigError)
    await expect(starting).rejects.toThrow(new RegExp(`${path} does not unwrap the data keys the database holds \\(data key [0-9a-f]+\\)`))
  })

  it('refuses to start without keys/ when the database holds versions, and writes no key of its own meanwhile', async () => {
    const dataDir = await ingested('restored')
    const keys = join(dataDir, 'keys')
    const kept = { signing: await readFile(join(keys, 'coordinator.ed25519')), master: await readFile(join(keys, 'master.key')) }
    // A backup restored without keys/: before, the refused start left a new signing key, and
    // restoring master.key alone then started with it, refused by every runtime.
    await rm(keys, { recursive: true })
    await expect(createCoordinator({ dataDir, port: 0 })).rejects.toThrow(/coordinator\.ed25519 is missing, but the database holds versions it signed/)
    expect(await readdir(keys)).toEqual([])
    await writeFile(join(keys, 'master.key'), kept.master, { mode: 0o600 })
    await expect(createCoordinator({ dataDir, port: 0 })).rejects.toThrow(/coordinator\.ed25519 is missing/)
    expect(await readdir(keys)).toEqual(['master.key'])
    await writeFile(join(keys, 'coordinator.ed25519'), kept.signing, { mode: 0o600 })
    await (await createCoordinator({ dataDir, port: 0 })).stop()
  })

  it('makes a new master.key when the database holds no data keys yet', async () => {
    const dataDir = join(root, 'empty')
    await (await createCoordinator({ dataDir, port: 0 })).stop()
    await rm(join(dataDir, 'keys', 'master.key'))
    await (await createCoordinator({ dataDir, port: 0 })).stop()
    expect((await stat(join(dataDir, 'keys', 'master.key'))).size).toBe(32)
  })
})
