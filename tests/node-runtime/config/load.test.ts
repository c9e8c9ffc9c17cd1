import { execFileSync } from 'node:child_process'
import { constants } from 'node:fs'
import { mkdtemp, mkdir, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadAoeConfig } from '../../../node-runtime/config/load.ts'
import { MAX_CONFIG_FILE_BYTES } from '../../../shared/config/constants.ts'
import { InvalidConfigError } from '../../../shared/errors/errors.ts'
import { aoeExample } from '../../helpers/aoe.ts'

const good = aoeExample

let dir: string
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'blockfed-config-')) })
afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

async function file (name: string, content: string | Uint8Array): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, content)
  return path
}

/** The InvalidConfigError message loading `path` gives. */
async function problem (path: string): Promise<string> {
  const err = await loadAoeConfig(path).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(InvalidConfigError)
  return (err as Error).message
}

describe('loadAoeConfig', () => {
  it('loads a config file, with a byte order mark or without', async () => {
    const c = await loadAoeConfig(await file('ok.json', JSON.stringify(good, null, 2)))
    expect(c).toMatchObject({ ...good, engine: 'tfjs' })
    const bom = await loadAoeConfig(await file('bom.json', `\ufeff${JSON.stringify(good)}`))
    expect(bom.modelName).toBe('mnist_cnn_keras')
  })

  it('names the file and the field for a value of the wrong type', async () => {
    const path = await file('mnist.json', JSON.stringify({ ...good, cache: { memoryBytes: -1 } }))
    expect(await problem(path)).toBe(`aoe config ${path}: "cache.memoryBytes": expected a positive integer (bytes), got -1`)
    const path2 = await file('type.json', JSON.stringify({ ...good, tag: ['a'] }))
    expect(await problem(path2)).toBe(`aoe config ${path2}: "tag": expected a non-empty tag naming the feature, such as "tag_mnist", got an array`)
  })

  it('names an unknown key', async () => {
    const path = await file('unknown.json', JSON.stringify({ ...good, modelDri: 'x' }))
    expect(await problem(path)).toBe(`aoe config ${path}: "modelDri": unknown key (did you mean "modelDir"?)`)
  })

  it('names a missing modelName', async () => {
    const { modelName: _, ...rest } = good
    const path = await file('missing.json', JSON.stringify(rest))
    expect(await problem(path)).toMatch(/: "modelName": missing, expected a model name/)
  })

  it('names a bad URL', async () => {
    const path = await file('url.json', JSON.stringify({ ...good, updateURL: 'ftp://coordinator.example' }))
    expect(await problem(path)).toMatch(/: "updateURL": expected an http:\/\/ or https:\/\/ URL of the coordinator, got "ftp:\/\/coordinator.example"$/)
  })

  it('names a modelDir with ".."', async () => {
    const path = await file('dir.json', JSON.stringify({ ...good, modelDir: '../../etc' }))
    expect(await problem(path)).toMatch(/: "modelDir": expected a relative folder path .* got "..\/..\/etc"$/)
  })

  it('gives the position of a JSON syntax error', async () => {
    const path = await file('syntax.json', '{\n  "version": "1.0.0",\n  "tag": "t"\n  "runtime": "onnx"\n}\n')
    expect(await problem(path)).toBe(`aoe config ${path}: not valid JSON at line 4, column 3: expected ',' or '}' after a property value, found '"'`)
  })

  it('says when the file is not JSON at all', async () => {
    const path = await file('yaml.json', 'version: 1.0.0\ntag: t\n')
    expect(await problem(path)).toBe(`aoe config ${path}: not valid JSON at line 1, column 1: expected a JSON value (object, array, string, number, true, false or null), found 'v'`)
  })

  it('says when the file is empty', async () => {
    const path = await file('empty.json', '')
    expect(await problem(path)).toBe(`aoe config ${path}: empty file, expected a JSON object`)
  })

  it('says when the JSON is not an object', async () => {
    const path = await file('array.json', '[]')
    expect(await problem(path)).toBe(`aoe config ${path}: expected a JSON object (an AoE model config), got an array`)
  })

  it('says when the file is not UTF-8', async () => {
    const path = await file('latin1.json', new Uint8Array([0x7b, 0x22, 0xe9, 0x22, 0x7d]))
    expect(await problem(path)).toBe(`aoe config ${path}: not UTF-8 text`)
  })

  it('says when the file cannot be read, is a folder, or is far too large', async () => {
    const missing = join(dir, 'nope.json')
    expect(await problem(missing)).toBe(`aoe config ${missing}: cannot read the file (ENOENT)`)
    const folder = join(dir, 'folder.json')
    await mkdir(folder)
    expect(await problem(folder)).toBe(`aoe config ${folder}: not a regular file (it is a folder)`)
    const big = await file('big.json', new Uint8Array(MAX_CONFIG_FILE_BYTES + 1))
    expect(await problem(big)).toMatch(/larger than a config can be/)
  })

  it('refuses a named pipe without opening it (an open would wait for a writer, holding a threadpool thread)', async () => {
    const fifo = join(dir, 'pipe.aoe.json')
    execFileSync('mkfifo', [fifo])
    const refused = problem(fifo)
    const outcome = await Promise.race([refused, new Promise(resolve => setTimeout(resolve, 2_000, 'still waiting'))])
    // Were it waiting for a writer, one comes and goes, so that the open ends and frees its thread.
    if (outcome === 'still waiting') await (await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK)).close()
    expect(outcome).toBe(`aoe config ${fifo}: not a regular file (it is a named pipe)`)
    await refused
  })
})
