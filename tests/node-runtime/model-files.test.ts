/** readModelFiles (the CLI's `ingest PATH`): malformed model.json files get a named error, not a TypeError. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readModelFiles } from '../../node-runtime/model-files.ts'
import { InvalidModelError } from '../../shared/errors/errors.ts'
import { SILERO_PATH } from '../helpers/models.ts'

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

  it('takes the files an .onnx is named after, and skips a folder named so', async () => {
    const dir = join(root, 'onnx')
    await mkdir(join(dir, 'vad.onnx_backup'), { recursive: true })
    await copyFile(SILERO_PATH, join(dir, 'vad.onnx'))
    await writeFile(join(dir, 'vad.onnx.data'), new Uint8Array(4))
    const files = await readModelFiles(join(dir, 'vad.onnx'))
    expect(files.map(f => f.path).sort()).toEqual(['vad.onnx', 'vad.onnx.data'])
  })
})
