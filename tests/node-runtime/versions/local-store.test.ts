import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, mkdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { localVersions } from '../../../node-runtime/versions/local-store.ts'
import { IntegrityError } from '../../../shared/errors/errors.ts'

let dir: string
beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-local-versions-')) })
afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

describe('a runtime\'s kept version state', () => {
  it('round-trips state and keys, keeps only the listed keys, and writes keys with mode 0600', async () => {
    const local = localVersions(dir)
    expect(await local.state()).toEqual({ current: null, previous: null, rejected: [] })
    await local.saveState({ current: 3, previous: 2, rejected: [4] })
    expect(await local.state()).toEqual({ current: 3, previous: 2, rejected: [4] })
    const a = Uint8Array.from({ length: 32 }, (_, i) => i)
    const b = Uint8Array.from({ length: 32 }, (_, i) => 255 - i)
    await local.saveKeys(new Map([['ka', a], ['kb', b]]), new Set(['ka', 'kb']))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['ka', a], ['kb', b]]))
    await local.saveKeys(new Map(), new Set(['kb']))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['kb', b]]))
    expect((await stat(join(dir, 'keys.json'))).mode & 0o777).toBe(0o600)
  })

  it('never replaces a kept key', async () => {
    const local = localVersions(dir)
    const good = new Uint8Array(32).fill(1)
    const other = new Uint8Array(32).fill(2)
    await local.saveKeys(new Map([['ka', good]]), new Set(['ka']))
    await local.saveKeys(new Map([['ka', other], ['kb', other]]), new Set(['ka', 'kb']))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['ka', good], ['kb', other]]))
  })

  it('damaged files are reported as integrity errors naming the file and what is wrong', async () => {
    const local = localVersions(dir)
    await writeFile(join(dir, 'versions.json'), '{"current": 1,')
    await expect(local.state()).rejects.toThrow(IntegrityError)
    await expect(local.state()).rejects.toThrow(/versions\.json: not JSON/)
    await writeFile(join(dir, 'versions.json'), '{"current": -1, "previous": null, "rejected": []}')
    await expect(local.state()).rejects.toThrow(/versions\.json: current: /)
    await writeFile(join(dir, 'keys.json'), '{"ka": 7}')
    await expect(local.keptKeys(['ka'])).rejects.toThrow(/keys\.json: ka: /)
    await mkdir(join(dir, 'anchors'))
    await writeFile(join(dir, 'anchors', '2.json'), '{"signed": {}}')
    await expect(local.anchor(2)).rejects.toThrow(/anchors\/2\.json: signed/)
  })
})
