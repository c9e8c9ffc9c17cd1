import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
// ajv arrives with fastify (not a direct dependency): used here only to prove that the published
// JSON Schema is valid draft 2020-12 and agrees with the zod schema on the examples.
import Ajv2020Module from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import { describe, expect, it } from 'vitest'
import { loadAoeConfig } from '../../../node-runtime/config/load.ts'
import { AOE_SCHEMA_PATH, renderAoeConfigSchema } from '../../../node-runtime/config/write-schema.ts'
import { parseAoeConfig } from '../../../shared/config/aoe.ts'

const examplesDir = fileURLToPath(new URL('../../../config/examples/', import.meta.url))

describe('config/aoe-config.schema.json', () => {
  it('is exactly what the zod schema generates (run: node node-runtime/config/write-schema.ts)', async () => {
    expect(await readFile(AOE_SCHEMA_PATH, 'utf8')).toBe(renderAoeConfigSchema())
  })

  it('is valid JSON Schema 2020-12 and agrees with the zod schema', async () => {
    // CommonJS modules: under NodeNext their class/function is on `.default`.
    const Ajv2020 = Ajv2020Module.default
    const addFormats = addFormatsModule.default
    const ajv = new Ajv2020({ allErrors: true, strict: true })
    addFormats(ajv)
    const validate = ajv.compile(JSON.parse(await readFile(AOE_SCHEMA_PATH, 'utf8')) as object)
    for (const name of await readdir(examplesDir)) {
      const json = JSON.parse(await readFile(join(examplesDir, name), 'utf8')) as unknown
      expect(validate(json), `${name}: ${JSON.stringify(validate.errors)}`).toBe(true)
    }
    const base = JSON.parse(await readFile(join(examplesDir, 'mnist-digits.aoe.json'), 'utf8')) as Record<string, unknown>
    const bad: Array<Record<string, unknown>> = [
      { ...base, modelDir: '../x' },
      { ...base, modelDir: 'a/blocks/b' },
      { ...base, modelName: 'Upper' },
      { ...base, updateURL: 'ftp://x' },
      { ...base, updateURL: 'https://user:pass@coordinator.example' },
      { ...base, updateURL: 'https://coordinator.example/api?x=1' },
      { ...base, updateURL: 'https://coordinator.example/api#x' },
      { ...base, modelDir: 'keys' },
      { ...base, modelDir: 'P2P/x' },
      { ...base, cache: { halfLifeHours: 1e306 } },
      { ...base, extra: 1 },
      { ...base, fetch: { concurrency: 0 } },
      { ...base, runtime: 'ncnn' }
    ]
    for (const config of bad) {
      expect(validate(config), JSON.stringify(config)).toBe(false)
      expect(() => parseAoeConfig(config)).toThrow()
    }
  })
})

describe('config/examples', () => {
  it('has the three documented examples', async () => {
    expect((await readdir(examplesDir)).sort()).toEqual(['mnist-digits.aoe.json', 'movenet.aoe.json', 'silero-vad.aoe.json'])
  })

  it('every example parses', async () => {
    const engines: Record<string, string> = {}
    for (const name of await readdir(examplesDir)) {
      const config = await loadAoeConfig(join(examplesDir, name))
      engines[name] = config.engine
    }
    expect(engines).toEqual({ 'mnist-digits.aoe.json': 'tfjs', 'movenet.aoe.json': 'tfjs', 'silero-vad.aoe.json': 'onnx' })
  })
})
