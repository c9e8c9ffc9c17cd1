/**
 * `blockfed pull`: one model version through the runtime's own load pipeline — signed manifest,
 * ledger checkpoint consistent with the one kept under `<home>/ledger/`, inclusion proof, keys,
 * verified and decrypted blocks, the sealed ones cached under `<home>/pull/@<model>` with the
 * data keys of the versions kept (a model may be named `blocks`, a folder name the runtime
 * keeps for itself) — then written back in its
 * original format by shared/formats.
 */
import { rm, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { writeModel } from '../shared/formats/index.ts'
import type { LoadReport } from '../shared/load/loader.ts'
import type { Manifest } from '../shared/manifest/schema.ts'
import type { ModelFile } from '../shared/model/types.ts'
import { parsePublicKeyHex } from '../shared/crypto/sign.ts'
import { AccessDeniedError } from '../shared/errors/errors.ts'
import { createNodeRuntime } from './runtime.ts'

/**
 * The model folder under `--home` where `pull` and `verify` cache a model's blocks: `@` keeps it
 * apart from the names the runtime keeps for itself (a model may be named `blocks` or `anchors`,
 * which the modelDir schema refuses as a segment).
 */
export const commandModelDir = (command: 'pull' | 'verify', model: string): string => `${command}/@${model}`

/**
 * Runs a command's `work` on its model folder under `home`. When the work fails, a folder this
 * run made is removed: a mistyped model name or a version that does not exist left an empty
 * model behind (its owner file, an empty cache index) for every typo.
 */
export async function inCommandModelDir<T> (home: string, command: 'pull' | 'verify', model: string, work: (modelDir: string) => Promise<T>): Promise<T> {
  const modelDir = commandModelDir(command, model)
  const full = join(resolve(home), modelDir)
  const existed = await stat(full).then(() => true, () => false)
  try {
    return await work(modelDir)
  } catch (err) {
    if (!existed) await rm(full, { recursive: true, force: true }).catch(() => {})
    throw err
  }
}

export interface PullOptions {
  baseUrl: string
  token?: string
  /** Where `token` came from, for a refusal's message (e.g. "--token"). */
  tokenFrom?: string
  model: string
  version: number | 'latest'
  home: string
  coordinatorKey?: string
  onBlock?: (done: number, total: number) => void
  /** Stops the pull (Ctrl-C): the runtime stops, nothing is written. */
  signal?: AbortSignal
}

export async function pullModel (options: PullOptions): Promise<{ manifest: Manifest, files: ModelFile[], report: LoadReport, ledgerIndex: number, keysFetched: boolean }> {
  if (options.coordinatorKey !== undefined) parsePublicKeyHex(options.coordinatorKey, '--coordinator-key')
  if (options.token === undefined) throw new AccessDeniedError('pull needs an API token (--token, BLOCKFED_TOKEN or --data) to fetch the block keys')
  return await inCommandModelDir(options.home, 'pull', options.model, async modelDir => {
    const runtime = await createNodeRuntime({ dataDir: options.home, token: options.token, tokenFrom: options.tokenFrom, onProgress: (_m, done, total) => options.onBlock?.(done, total) })
    try {
      const config = {
        version: '1', tag: 'pull', runtime: 'tfjs', source: 'blockfed', modelDir, modelName: options.model,
        updateURL: options.baseUrl, ...(options.coordinatorKey === undefined ? {} : { coordinatorKey: options.coordinatorKey })
      }
      const fetched = await runtime.fetch(config, options.version, options.signal)
      return {
        manifest: fetched.manifest,
        files: writeModel({ topology: fetched.manifest.topology, tensors: fetched.manifest.tensors, weights: fetched.weights }),
        report: fetched.report,
        ledgerIndex: fetched.ledgerIndex,
        keysFetched: fetched.keysFetched
      }
    } finally {
      await runtime.stop()
    }
  })
}
