/**
 * readModelFiles (the CLI's `ingest PATH`): malformed model.json files get a named error, not a
 * TypeError. writeModelFiles (`pull --out`): every file or none, the model.json last; over an
 * earlier model, that one whole or no model.json at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readModelFiles, writeModelFiles } from '../../node-runtime/model-files.ts'
import { IntegrityError, InvalidInputError, InvalidModelError } from '../../shared/errors/errors.ts'
import { SILERO_PATH } from '../helpers/models.ts'
import { tinyOnnx } from '../shared/formats/fixtures.ts'
import { readOnnx } from '../../shared/formats/onnx.ts'
import type { ModelFile } from '../../shared/model/types.ts'

let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-model-files-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

describe('readModelFiles', () => {
  it.each([
    ['null', 'null', /is not a valid tfjs model\.json/],
    ['a weightsManifest object', '{"modelTopology":{},"weightsManifest":{}}', /weightsManifest: /],
    ['a null weight group', '{"modelTopology":{},"weightsManifest":[null]}', /weightsManifest\.0: /],
    ['no weightsManifest', '{"modelTopology":{}}', /has no weightsManifest/],
    ['not JSON', '{"modelTopology":', /is not JSON/]
  ])('refuses a model.json holding %s with InvalidModelError naming the problem', async (_, text, message) => {
    const path = join(root, `${Math.random().toString(36).slice(2)}.json`)
    await writeFile(path, text)
    const err = await readModelFiles(path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidModelError)
    expect((err as Error).message).toMatch(message)
  })

  it('takes the external-data files an .onnx names, whatever their names, and nothing else beside it', async () => {
    const dir = join(root, 'onnx')
    await mkdir(join(dir, 'vad.onnx_backup'), { recursive: true })
    await copyFile(SILERO_PATH, join(dir, 'vad.onnx'))
    await writeFile(join(dir, 'vad.onnx.data'), new Uint8Array(4)) // named after it, but not by it
    expect((await readModelFiles(join(dir, 'vad.onnx'))).map(f => f.path)).toEqual(['vad.onnx'])
    // Data under another name (onnx.save_model's location is free), in a subfolder too.
    for (const location of ['weights.bin', 'data/w.bin']) {
      const { onnx, external } = tinyOnnx({ location })
      await mkdir(join(dir, location, '..'), { recursive: true })
      await writeFile(join(dir, 'tiny.onnx'), onnx.bytes)
      await writeFile(join(dir, location), external.bytes)
      const files = await readModelFiles(join(dir, 'tiny.onnx'))
      expect(files.map(f => f.path)).toEqual(['tiny.onnx', location])
      expect(readOnnx(files[0] as ModelFile, files).tensors.length).toBeGreaterThan(0)
    }
    // One it names but that is not there, or outside its folder, is named.
    await writeFile(join(dir, 'tiny.onnx'), tinyOnnx({ location: 'gone.bin' }).onnx.bytes)
    await expect(readModelFiles(join(dir, 'tiny.onnx'))).rejects.toThrow(/model file "gone\.bin" not found/)
    await writeFile(join(dir, 'tiny.onnx'), tinyOnnx({ location: '../up.bin' }).onnx.bytes)
    await expect(readModelFiles(join(dir, 'tiny.onnx'))).rejects.toThrow(/not a relative path inside the model folder/)
  })
})

describe('writeModelFiles', () => {
  const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
  const files = [
    { path: 'model.json', bytes: bytes('{"weightsManifest":[{"paths":["w/a.bin","w/b.bin"]}]}') },
    { path: 'w/a.bin', bytes: new Uint8Array([1, 2, 3]) },
    { path: 'w/b.bin', bytes: new Uint8Array([4, 5]) }
  ]

  it('writes every file, model.json and weights, byte for byte', async () => {
    const out = join(root, 'out-ok')
    await writeModelFiles(out, files)
    for (const f of files) expect(new Uint8Array(await readFile(join(out, f.path)))).toEqual(f.bytes)
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['model.json', 'w', 'w/a.bin', 'w/b.bin'])
  })

  it('leaves nothing it wrote, model.json, weights or temporary files, when a weight file cannot be put in place', async () => {
    const out = join(root, 'out-blocked')
    // A folder where the second weight file goes: its rename fails after the first one's.
    await mkdir(join(out, 'w', 'b.bin'), { recursive: true })
    await expect(writeModelFiles(out, files)).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/)
    const left = (await readdir(out, { recursive: true })).sort()
    // Nothing of this model: w/a.bin, put in place before the failure, is taken back.
    expect(left).toEqual(['w', 'w/b.bin'])
  })

  it('over an earlier model, puts it back whole when the first file cannot be replaced', async () => {
    const out = join(root, 'out-earlier-kept')
    await mkdir(join(out, 'w', 'a.bin'), { recursive: true })
    await writeFile(join(out, 'model.json'), 'earlier')
    await writeFile(join(out, 'w', 'b.bin'), 'earlier b')
    await expect(writeModelFiles(out, files)).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/)
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['model.json', 'w', 'w/a.bin', 'w/b.bin'])
    expect(await readFile(join(out, 'model.json'), 'utf8')).toBe('earlier')
    expect(await readFile(join(out, 'w', 'b.bin'), 'utf8')).toBe('earlier b')
  })

  it('over an earlier model, leaves no model.json naming replaced weights when a later file cannot be put in place', async () => {
    const out = join(root, 'out-earlier-gone')
    await mkdir(join(out, 'w', 'b.bin'), { recursive: true })
    await writeFile(join(out, 'model.json'), 'earlier')
    await writeFile(join(out, 'w', 'a.bin'), 'earlier a')
    await expect(writeModelFiles(out, files)).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/)
    // w/a.bin already holds the new bytes: the earlier model.json would name them, so it is gone,
    // and with it any model in the folder; no temporary or set-aside file stays.
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['w', 'w/a.bin', 'w/b.bin'])
    expect(new Uint8Array(await readFile(join(out, 'w', 'a.bin')))).toEqual(files[1]?.bytes)
  })

  it('treats an .ONNX in capitals as the entry: set aside, and put back when its data cannot be replaced', async () => {
    const out = join(root, 'out-onnx-caps')
    await mkdir(join(out, 'tiny.bin'), { recursive: true })
    await writeFile(join(out, 'Tiny.ONNX'), 'earlier')
    const onnx = [{ path: 'Tiny.ONNX', bytes: bytes('new graph') }, { path: 'tiny.bin', bytes: new Uint8Array([7]) }]
    await expect(writeModelFiles(out, onnx)).rejects.toThrow(/EISDIR|ENOTEMPTY|EEXIST/)
    expect(await readFile(join(out, 'Tiny.ONNX'), 'utf8')).toBe('earlier')
    expect((await readdir(out)).sort()).toEqual(['Tiny.ONNX', 'tiny.bin'])
  })

  it('refuses, before writing anything, a folder where model.json goes', async () => {
    const out = join(root, 'out-entry-folder')
    await mkdir(join(out, 'model.json'), { recursive: true })
    await writeFile(join(out, 'model.json', 'notes.txt'), 'mine')
    const err = await writeModelFiles(out, files).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidInputError)
    expect((err as Error).message).toMatch(/model\.json is a folder/)
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['model.json', 'model.json/notes.txt'])
  })

  it('replaces an earlier model whole, leaving no set-aside file', async () => {
    const out = join(root, 'out-earlier-replaced')
    await mkdir(join(out, 'w'), { recursive: true })
    for (const f of files) await writeFile(join(out, f.path), 'earlier')
    await writeModelFiles(out, files)
    for (const f of files) expect(new Uint8Array(await readFile(join(out, f.path)))).toEqual(f.bytes)
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['model.json', 'w', 'w/a.bin', 'w/b.bin'])
  })

  it('writes nothing, and leaves no temporary file, when stopped (Ctrl-C) before the files go into place', async () => {
    const out = join(root, 'out-stopped')
    // Stopped at the last check, once every file is written under its temporary name.
    let checks = 0
    const signal = { throwIfAborted: () => { if (++checks === files.length + 1) throw new Error('interrupted (SIGINT)') } } as unknown as AbortSignal
    await expect(writeModelFiles(out, files, signal)).rejects.toThrow('interrupted (SIGINT)')
    expect(checks).toBe(files.length + 1)
    // The folders it made stay; no file does.
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['w'])
  })

  it('refuses a path leaving the folder before writing anything', async () => {
    const out = join(root, 'out-escape')
    await expect(writeModelFiles(out, [...files, { path: '../escaped.bin', bytes: new Uint8Array([9]) }])).rejects.toThrow(IntegrityError)
    await expect(readdir(out)).rejects.toThrow(/ENOENT/)
  })
})
