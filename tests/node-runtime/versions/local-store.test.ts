import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtemp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { localVersions, MAX_UNSENT_VERDICTS } from '../../../node-runtime/versions/local-store.ts'
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
    await local.saveKeys(new Map([['ka', a], ['kb', b]]), async () => ({ keyIds: new Set(['ka', 'kb']), dropAnchors: [] }))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['ka', a], ['kb', b]]))
    await local.saveKeys(new Map(), async () => ({ keyIds: new Set(['kb']), dropAnchors: [] }))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['kb', b]]))
    expect((await stat(join(dir, 'keys.json'))).mode & 0o777).toBe(0o600)
  })

  it('changes of one folder made through separate instances (two handles) all land: none overwrites another', async () => {
    const [a, b] = [localVersions(dir), localVersions(dir)]
    await a.saveState({ current: 3, previous: 2, rejected: [] })
    // Before, each instance read, changed and wrote on its own: the later write lost the other's version.
    await Promise.all([1, 2, 4, 5, 6].map(async (v, i) => await (i % 2 === 0 ? a : b).updateState(s => ({ ...s, rejected: [...s.rejected, v].sort((x, y) => x - y) }))))
    expect(await localVersions(dir).state()).toEqual({ current: 3, previous: 2, rejected: [1, 2, 4, 5, 6] })
  })

  it('never replaces a kept key', async () => {
    const local = localVersions(dir)
    const good = new Uint8Array(32).fill(1)
    const other = new Uint8Array(32).fill(2)
    await local.saveKeys(new Map([['ka', good]]), async () => ({ keyIds: new Set(['ka']), dropAnchors: [] }))
    await local.saveKeys(new Map([['ka', other], ['kb', other]]), async () => ({ keyIds: new Set(['ka', 'kb']), dropAnchors: [] }))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['ka', good], ['kb', other]]))
  })

  it('a damaged versions.json stops loads with an integrity error naming the file, what is wrong and how to reset', async () => {
    const local = localVersions(dir)
    await writeFile(join(dir, 'versions.json'), '{"current": 1,')
    await expect(local.state()).rejects.toThrow(IntegrityError)
    await expect(local.state()).rejects.toThrow(/versions\.json: not JSON.*remove the file/)
    await writeFile(join(dir, 'versions.json'), '{"current": -1, "previous": null, "rejected": []}')
    await expect(local.state()).rejects.toThrow(/versions\.json: current: /)
  })

  it('a damaged keys.json or anchor is moved aside, reported, and reads as absent, so the next load rewrites it', async () => {
    const damaged: string[] = []
    const local = localVersions(dir, { onDamaged: (path, err) => { damaged.push(`${path.slice(dir.length + 1)}: ${err.message.slice(dir.length + 1)}`) } })
    await writeFile(join(dir, 'keys.json'), '{"ka": 7}')
    expect(await local.keptKeys(['ka'])).toEqual(new Map())
    await mkdir(join(dir, 'anchors'))
    await writeFile(join(dir, 'anchors', '2.json'), '{"signed": {}}')
    expect(await local.anchor(2)).toBeUndefined()
    expect(damaged).toEqual([expect.stringMatching(/^keys\.json: keys\.json: ka: /), expect.stringMatching(/^anchors\/2\.json: anchors\/2\.json: signed/)])
    expect(await readFile(join(dir, 'keys.json.damaged'), 'utf8')).toBe('{"ka": 7}')
    expect(await readFile(join(dir, 'anchors', '2.json.damaged'), 'utf8')).toBe('{"signed": {}}')
    // Saving keys works again, from an empty set.
    const key = new Uint8Array(32).fill(3)
    await local.saveKeys(new Map([['kb', key]]), async () => ({ keyIds: new Set(['kb']), dropAnchors: [] }))
    expect(await local.keptKeys(['ka', 'kb'])).toEqual(new Map([['kb', key]]))
  })

  it('keeps unsent verdicts, one per version (the later replaces), the oldest dropped past the bound, and forgets only the one sent', async () => {
    const local = localVersions(join(dir, 'model'))
    expect(await local.unsentVerdicts()).toEqual([])
    await local.keepVerdict({ version: 2, verdict: 'rejected' })
    await local.keepVerdict({ version: 3, verdict: 'rejected' })
    await local.keepVerdict({ version: 2, verdict: 'rolled-back' })
    expect(await local.unsentVerdicts()).toEqual([{ version: 3, verdict: 'rejected' }, { version: 2, verdict: 'rolled-back' }])
    // Another instance (another handle, a restarted runtime) reads what was kept.
    expect(await localVersions(join(dir, 'model')).unsentVerdicts()).toHaveLength(2)
    // A verdict sent while a newer one on its version was kept does not take the newer one with it.
    await local.verdictSent({ version: 2, verdict: 'rejected' })
    expect(await local.unsentVerdicts()).toEqual([{ version: 3, verdict: 'rejected' }, { version: 2, verdict: 'rolled-back' }])
    await local.verdictSent({ version: 3, verdict: 'rejected' })
    await local.verdictSent({ version: 2, verdict: 'rolled-back' })
    expect(await local.unsentVerdicts()).toEqual([])
    await expect(readFile(join(dir, 'model', 'verdicts-unsent.json'))).rejects.toThrow(/ENOENT/)
    for (let v = 1; v <= MAX_UNSENT_VERDICTS + 3; v++) await local.keepVerdict({ version: v, verdict: 'rejected' })
    const kept = await local.unsentVerdicts()
    expect(kept).toHaveLength(MAX_UNSENT_VERDICTS)
    expect(kept[0]).toEqual({ version: 4, verdict: 'rejected' })
  })

  it('a damaged file of unsent verdicts is moved aside, reported, and reads as none', async () => {
    const damaged: string[] = []
    const local = localVersions(dir, { onDamaged: path => damaged.push(path) })
    await writeFile(join(dir, 'verdicts-unsent.json'), '[{"version":2,"verdict":"maybe"}]')
    expect(await local.unsentVerdicts()).toEqual([])
    expect(damaged).toEqual([join(dir, 'verdicts-unsent.json')])
    expect(await readFile(join(dir, 'verdicts-unsent.json.damaged'), 'utf8')).toContain('maybe')
    await local.keepVerdict({ version: 5, verdict: 'rolled-back' })
    expect(await local.unsentVerdicts()).toEqual([{ version: 5, verdict: 'rolled-back' }])
  })
})
