/** blockfed/node: the edge runtime for Node and serverless workers. */
export { createNodeRuntime, type NodeRuntime, type NodeRuntimeOptions, type ModelHandle } from './runtime.ts'
export { pullModel } from './pull.ts'
export { loadAoeConfig } from './config/load.ts'
export { diskCache } from './cache/disk-tier.ts'
export { nodeHttpBlockSource } from './sources/http.ts'
export { readModelFiles } from './model-files.ts'
export { tfjsBackend } from './engines/tfjs.ts'
