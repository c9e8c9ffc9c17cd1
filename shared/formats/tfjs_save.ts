/**
 * tfjs ModelArtifacts → the files tfjs's own file saver writes (`model.json` + one weights
 * file), so a model trained in memory can be ingested exactly like one read from disk.
 */
import type { io } from '@tensorflow/tfjs-core'
import type { ModelFile } from '../model/types.ts'

export function tfjsFilesFromArtifacts (artifacts: io.ModelArtifacts, weightsPath = 'weights.bin'): ModelFile[] {
  const data = artifacts.weightData
  const parts = data === undefined ? [] : Array.isArray(data) ? data : [data]
  const total = parts.reduce((n, b) => n + b.byteLength, 0)
  const weights = new Uint8Array(total)
  let at = 0
  for (const b of parts) { weights.set(new Uint8Array(b), at); at += b.byteLength }
  const modelJson: Record<string, unknown> = {
    modelTopology: artifacts.modelTopology,
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy ?? null,
    weightsManifest: [{ paths: [weightsPath], weights: artifacts.weightSpecs ?? [] }]
  }
  if (artifacts.trainingConfig !== undefined) modelJson.trainingConfig = artifacts.trainingConfig
  if (artifacts.signature !== undefined) modelJson.signature = artifacts.signature
  if (artifacts.userDefinedMetadata !== undefined) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata
  return [
    { path: 'model.json', bytes: new TextEncoder().encode(JSON.stringify(modelJson)) },
    { path: weightsPath, bytes: weights }
  ]
}
