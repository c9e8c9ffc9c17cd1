/**
 * readModelFiles (the CLI's `ingest PATH`): malformed model.json files get a named error, not a
 * TypeError; a folder is read through its one model.json or .onnx, subfolders and symlinks too. writeModelFiles (`pull --out`): every file or none, the model.json last; over an
 * earlier model, that one whole or no model.json at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
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

  /** A tfjs model.json naming `paths`, each of 8 bytes. */
  const modelJson = (paths: string[]): string => JSON.stringify({
    modelTopology: {},
    weightsManifest: [{ paths, weights: [{ name: 'dense/kernel', shape: [2 * paths.length], dtype: 'float32' }] }]
  })

  it('reads a folder as its model.json and the files it names, in subfolders too: what pull writes reads back', async () => {
    const dir = join(root, 'folder-nested')
    await writeModelFiles(dir, [
      { path: 'model.json', bytes: new TextEncoder().encode(modelJson(['w/x.bin'])) },
      { path: 'w/x.bin', bytes: new Uint8Array(8).fill(1) }
    ])
    await writeFile(join(dir, 'README.txt'), 'not part of the model')
    const files = await readModelFiles(dir)
    expect(files.map(f => f.path)).toEqual(['model.json', 'w/x.bin'])
    expect(files[1]?.bytes).toEqual(new Uint8Array(8).fill(1))
    // An .onnx folder the same: its external data in a subfolder.
    const onnxDir = join(root, 'folder-onnx')
    const { onnx, external } = tinyOnnx({ location: 'data/w.bin' })
    await writeModelFiles(onnxDir, [{ path: 'tiny.onnx', bytes: onnx.bytes }, { path: 'data/w.bin', bytes: external.bytes }])
    expect((await readModelFiles(onnxDir)).map(f => f.path)).toEqual(['tiny.onnx', 'data/w.bin'])
  })

  it('follows symlinks out of the folder only when asked: a linked model.json, weight file or weights folder', async () => {
    const store = join(root, 'symlink-store')
    await mkdir(join(store, 'weights'), { recursive: true })
    await writeFile(join(store, 'weights', 'emotion.bin'), new Uint8Array(8).fill(2))
    await writeFile(join(store, 'other.bin'), new Uint8Array(8).fill(3))
    await writeFile(join(store, 'model.json'), modelJson(['w/emotion.bin', 'other.bin']))
    const dir = join(root, 'symlinked')
    await mkdir(dir)
    await symlink(join(store, 'model.json'), join(dir, 'model.json'))
    await symlink(join(store, 'weights'), join(dir, 'w'))
    await symlink(join(store, 'other.bin'), join(dir, 'other.bin'))
    const files = await readModelFiles(dir, { followLinksOut: true })
    expect(files.map(f => f.path)).toEqual(['model.json', 'w/emotion.bin', 'other.bin'])
    expect(files[1]?.bytes).toEqual(new Uint8Array(8).fill(2))
    // By default the folder's model.json, a link leaving the folder, is refused, naming where it
    // leads (review 47e); so is a weight file, when the model.json is the folder's own.
    const err = await readModelFiles(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidModelError)
    expect((err as Error).message).toBe(`${join(dir, 'model.json')} is a link to ${join(store, 'model.json')}, outside the model's folder; links out of it are read only when asked for (blockfed ingest --follow-links), for a folder from a source you trust`)
    // Named directly, the model.json is the user's choice; what it names is held to its folder.
    await expect(readModelFiles(join(dir, 'model.json'))).rejects.toThrow(new RegExp(`model file "(w/emotion|other)\\.bin" in ${dir} is a link to ${store}/(weights/emotion|other)\\.bin, outside the model's folder; .*--follow-links`))
  })

  it('refuses a model file linked to a secret outside the folder (a cloned repository keeps its links), and reads links that stay inside', async () => {
    const secret = join(root, 'id_ed25519')
    await writeFile(secret, 'PRIVATE KEY')
    const dir = join(root, 'cloned')
    await mkdir(join(dir, 'blobs'), { recursive: true })
    const { onnx, external } = tinyOnnx({ location: 'w.bin' })
    await writeFile(join(dir, 'tiny.onnx'), onnx.bytes)
    await symlink(secret, join(dir, 'w.bin'))
    await expect(readModelFiles(dir)).rejects.toThrow(`model file "w.bin" in ${dir} is a link to ${secret}, outside the model's folder`)
    // A relative link climbing out is the same.
    await rm(join(dir, 'w.bin'))
    await symlink('../id_ed25519', join(dir, 'w.bin'))
    await expect(readModelFiles(join(dir, 'tiny.onnx'))).rejects.toThrow(/is a link to .*id_ed25519, outside the model's folder/)
    // Inside the folder, a link is the file it leads to; so is the folder reached through a link.
    await rm(join(dir, 'w.bin'))
    await writeFile(join(dir, 'blobs', 'sha-1'), external.bytes)
    await symlink('blobs/sha-1', join(dir, 'w.bin'))
    expect((await readModelFiles(dir)).map(f => f.path)).toEqual(['tiny.onnx', 'w.bin'])
    const viaLink = join(root, 'cloned-link')
    await symlink(dir, viaLink)
    const files = await readModelFiles(viaLink)
    expect(files.map(f => f.path)).toEqual(['tiny.onnx', 'w.bin'])
    expect(files[1]?.bytes).toEqual(external.bytes)
  })

  it.each([
    ['no model file', [], /no model\.json or \.onnx file in it/],
    ['two .onnx files', ['a.onnx', 'b.onnx'], /several \.onnx files \(a\.onnx, b\.onnx\); give the path of the model's one/],
    ['two .json files, neither model.json', ['a.json', 'b.json'], /several \.json files \(a\.json, b\.json\) and none named model\.json/]
  ])('refuses a folder holding %s, naming what it found', async (_, names, message) => {
    const dir = join(root, `folder-${Math.random().toString(36).slice(2)}`)
    await mkdir(join(dir, 'sub.json'), { recursive: true }) // a folder, not a file: never the entry
    for (const name of names) await writeFile(join(dir, name), '{}')
    await writeFile(join(dir, 'w.bin'), new Uint8Array(8))
    const err = await readModelFiles(dir).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidInputError)
    expect((err as Error).message).toMatch(message)
  })

  it('refuses a folder holding an .onnx beside a model.json, and names a weight file that is a folder or a device (reviews 46a, 46c)', async () => {
    const dir = join(root, 'folder-two-models')
    await mkdir(dir)
    await writeFile(join(dir, 'model.json'), modelJson(['w.bin']))
    await copyFile(SILERO_PATH, join(dir, 'vad.onnx'))
    // It took the .onnx silently.
    await expect(readModelFiles(dir)).rejects.toThrow(`${dir}: both vad.onnx and model.json, two models; give the path of the one to use`)
    await mkdir(join(dir, 'w.bin'))
    await expect(readModelFiles(join(dir, 'model.json'))).rejects.toThrow(`model file "w.bin" in ${dir} is a folder, not a file`)
    // A link to a device (review 46c: /dev/zero was read until the heap gave out).
    await rm(join(dir, 'w.bin'), { recursive: true })
    await symlink('/dev/null', join(dir, 'w.bin'))
    await expect(readModelFiles(join(dir, 'model.json'), { followLinksOut: true })).rejects.toThrow(`model file "w.bin" in ${dir} is not a regular file (a device, pipe or socket)`)
    await expect(readModelFiles(join(dir, 'model.json'))).rejects.toThrow(`model file "w.bin" in ${dir} is a link to /dev/null, outside the model's folder`)
    await rm(join(dir, 'vad.onnx'))
    await expect(readModelFiles(dir, { followLinksOut: true })).rejects.toThrow('is not a regular file')
  })

  it('in a folder, takes model.json among other .json files and refuses a weight path leaving the folder', async () => {
    const dir = join(root, 'folder-escape')
    await mkdir(dir)
    await writeFile(join(dir, 'metadata.json'), '{"labels":[]}')
    await writeFile(join(dir, 'w.bin'), new Uint8Array(8))
    await writeFile(join(dir, 'model.json'), modelJson(['w.bin']))
    expect((await readModelFiles(dir)).map(f => f.path)).toEqual(['model.json', 'w.bin'])
    await writeFile(join(root, 'outside.bin'), new Uint8Array(8))
    await writeFile(join(dir, 'model.json'), modelJson(['../outside.bin']))
    await expect(readModelFiles(dir)).rejects.toThrow(/outside|not a relative path inside the model folder/)
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
  it('refuses, before writing anything, to replace a model whose weight files it would leave behind (review 46a)', async () => {
    const out = join(root, 'out-leftovers')
    const earlier = JSON.stringify({ modelTopology: {}, weightsManifest: [{ paths: ['movenet.bin', 'w/a.bin'], weights: [{ name: 'k', shape: [2], dtype: 'float32' }] }] })
    await mkdir(join(out, 'w'), { recursive: true })
    await writeFile(join(out, 'model.json'), earlier)
    await writeFile(join(out, 'movenet.bin'), 'earlier weights')
    await writeFile(join(out, 'w', 'a.bin'), 'earlier a')
    await expect(writeModelFiles(out, files)).rejects.toThrow(`${out} holds a model whose movenet.bin this one would leave behind, beside its own files; write into an empty folder, or remove that model first`)
    expect(await readFile(join(out, 'model.json'), 'utf8')).toBe(earlier)
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['model.json', 'movenet.bin', 'w', 'w/a.bin'])
    // Gone already, or named by no model that parses: nothing is left behind, the model is replaced.
    await rm(join(out, 'movenet.bin'))
    await writeModelFiles(out, files)
    expect((await readdir(out, { recursive: true })).sort()).toEqual(['model.json', 'w', 'w/a.bin', 'w/b.bin'])
  })

  it('refuses, before writing anything, a folder holding another model, an .onnx or a model.json it would not replace', async () => {
    const onnxOut = join(root, 'out-other-onnx')
    await writeModelFiles(onnxOut, [{ path: 'vad.onnx', bytes: new Uint8Array([7]) }])
    // A tfjs model beside an .onnx would read back as the .onnx.
    await expect(writeModelFiles(onnxOut, files)).rejects.toThrow(`${onnxOut} holds another model (vad.onnx), and a folder holds one model: write into an empty folder, or remove that model first`)
    await expect(writeModelFiles(onnxOut, [{ path: 'other.ONNX', bytes: new Uint8Array([8]) }])).rejects.toThrow(/holds another model \(vad\.onnx\)/)
    expect((await readdir(onnxOut)).sort()).toEqual(['vad.onnx'])
    // The same .onnx again is an update of it; other JSON files (an app's) and dot-files are not models.
    await writeModelFiles(onnxOut, [{ path: 'vad.onnx', bytes: new Uint8Array([9]) }])
    expect(new Uint8Array(await readFile(join(onnxOut, 'vad.onnx')))).toEqual(new Uint8Array([9]))
    const jsonOut = join(root, 'out-other-json')
    await writeModelFiles(jsonOut, files)
    await writeFile(join(jsonOut, 'package.json'), '{}')
    await expect(writeModelFiles(jsonOut, [{ path: 'vad.onnx', bytes: new Uint8Array([7]) }])).rejects.toThrow(/holds another model \(model\.json\)/)
    await writeModelFiles(jsonOut, files)
    expect((await readdir(jsonOut)).sort()).toEqual(['model.json', 'package.json', 'w'])
  })
})
