/**
 * An ingest killed (SIGKILL) after some of its blocks and shards reached the block store but
 * before the database commit: the next start removes those files (no row names them), lists no
 * half version, and the same ingest then completes. Real coordinator, real SQLite, a child
 * process that kills itself from the ingest's progress callback.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn } from 'node:child_process'
import { readdirSync, rmSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import type { ModelFile } from '../../shared/model/types.ts'
import { mulberry32 } from '../../shared/random/seeded.ts'

const COORDINATOR = fileURLToPath(new URL('../../coordinator/coordinator.ts', import.meta.url))
let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-ingest-crash-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

/** A graph model of 8 tensors of 512 KiB each (4 blocks at the default 1 MiB), seeded weights. */
function model (): ModelFile[] {
  const next = mulberry32(3)
  const weights = new Float32Array(8 * 131_072).map(() => next() - 0.5)
  const modelJson = { format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: ['w.bin'], weights: Array.from({ length: 8 }, (_, i) => ({ name: `c${i}`, shape: [131_072], dtype: 'float32' })) }] }
  return [{ path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(modelJson)) }, { path: 'w.bin', bytes: new Uint8Array(weights.buffer) }]
}

async function filesUnder (dir: string): Promise<number> {
  let n = 0
  for (const fan of await readdir(dir).catch(() => [] as string[])) n += (await readdir(join(dir, fan))).length
  return n
}

describe('an ingest killed before its commit', () => {
  it('leaves nothing behind after the next start, and the same ingest then completes', async () => {
    const dataDir = join(root, 'data')
    const modelDir = join(root, 'model')
    await mkdir(modelDir)
    for (const f of model()) await writeFile(join(modelDir, f.path), f.bytes)
    const script = `
      import { readFile } from 'node:fs/promises'
      import { createCoordinator } from ${JSON.stringify(COORDINATOR)}
      const files = await Promise.all(['model.json', 'w.bin'].map(async path => ({ path, bytes: new Uint8Array(await readFile(${JSON.stringify(modelDir)} + '/' + path)) })))
      const c = await createCoordinator({ dataDir: ${JSON.stringify(dataDir)}, port: 0 })
      await c.ingest('m', files, { onProgress: (stage, done) => { if (stage === 'store' && done === 3) process.kill(process.pid, 'SIGKILL') } })
      console.log('not killed')`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('the ingest child did not end within 60 s')) }, 60_000)
      child.once('exit', (_code, sig) => { clearTimeout(timer); resolve(sig) })
    })
    expect(signal).toBe('SIGKILL')
    expect(out).not.toContain('not killed')
    // What the killed ingest left: complete block and shard files that no row names.
    expect(await filesUnder(join(dataDir, 'blocks'))).toBeGreaterThan(0)

    const c = await createCoordinator({ dataDir, port: 0 })
    try {
      expect(await filesUnder(join(dataDir, 'blocks'))).toBe(0)
      expect(c.repo.models()).toEqual([])
      const result = await c.ingest('m', model())
      expect(result.version).toBe(1)
      // 4 blocks, each sealed block plus its 4+2 shards.
      expect(await filesUnder(join(dataDir, 'blocks'))).toBe(4 * 7)
    } finally {
      await c.stop()
    }
  }, 120_000)

  it('removes the blocks it wrote as it sealed when it fails part-way, recording nothing', async () => {
    const dataDir = join(root, 'part-way')
    const c = await createCoordinator({ dataDir, port: 0 })
    try {
      let written = 0
      const ingest = c.ingest('m', model(), {
        onProgress: (stage, done) => {
          if (stage !== 'store') return
          written = done
          if (done === 2) throw new Error('stopped after two blocks')
        }
      })
      await expect(ingest).rejects.toThrow(/stopped after two blocks/)
      expect(written).toBe(2)
      expect(c.repo.models()).toEqual([])
      expect(await filesUnder(join(dataDir, 'blocks'))).toBe(0)
      expect((await c.ingest('m', model())).version).toBe(1)
      expect(await filesUnder(join(dataDir, 'blocks'))).toBe(4 * 7)
    } finally {
      await c.stop()
    }
  })

  it('records nothing, and leaves no file, when its caller is no longer allowed at the commit (a token revoked while the upload waited; review 49e)', async () => {
    const dataDir = join(root, 'authorize')
    const c = await createCoordinator({ dataDir, port: 0 })
    try {
      let asked = 0
      const ingest = c.ingest('m', model(), { authorize: () => { asked++; throw new Error('this API token was revoked') } })
      await expect(ingest).rejects.toThrow('this API token was revoked')
      expect(asked).toBe(1)
      expect(c.repo.models()).toEqual([])
      expect(await filesUnder(join(dataDir, 'blocks'))).toBe(0)
      expect((await c.ingest('m', model(), { authorize: () => {} })).version).toBe(1)
    } finally {
      await c.stop()
    }
  })

  it('makes the files durable before the commit: a file that cannot be synced fails the ingest, with nothing recorded or left', async () => {
    const dataDir = join(root, 'sync')
    const c = await createCoordinator({ dataDir, port: 0 })
    try {
      // After the last put, one stored file goes missing: its fsync fails (ENOENT), as a failing disk's would.
      const ingest = c.ingest('m', model(), {
        onProgress: (stage, done, total) => {
          if (stage !== 'store' || done !== total) return
          const fan = readdirSync(join(dataDir, 'blocks'))[0] as string
          rmSync(join(dataDir, 'blocks', fan, readdirSync(join(dataDir, 'blocks', fan))[0] as string))
        }
      })
      await expect(ingest).rejects.toThrow(/ENOENT/)
      expect(c.repo.models()).toEqual([])
      expect(await filesUnder(join(dataDir, 'blocks'))).toBe(0)
      expect((await c.ingest('m', model())).version).toBe(1)
    } finally {
      await c.stop()
    }
  })
})
