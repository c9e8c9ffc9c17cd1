/**
 * The AoE five-stage model contract (init, preProcess, run, postProcess, release): model code
 * implements it once and runs on tfjs or onnxruntime, in Node or a browser, because the runtime
 * owns loading and hands `init` a ready engine.
 */
import type { GraphModel } from '@tensorflow/tfjs-converter'
import type { LayersModel } from '@tensorflow/tfjs-layers'
import type { Manifest } from '../manifest/schema.ts'
import type { AoeConfig } from '../config/aoe.ts'

/** Minimal structural view of an onnxruntime session (node or web), so shared code needs neither package. */
export interface OnnxSessionLike {
  readonly inputNames: readonly string[]
  readonly outputNames: readonly string[]
  run (feeds: Record<string, unknown>): Promise<Record<string, unknown>>
  release (): Promise<void>
}

export type LoadedEngine =
  | { kind: 'tfjs-layers', model: LayersModel }
  | { kind: 'tfjs-graph', model: GraphModel }
  | { kind: 'onnx', session: OnnxSessionLike }

export interface ModelContext {
  config: AoeConfig
  manifest: Manifest
  engine: LoadedEngine
}

/** What model code implements. Input → preProcess → run → postProcess → output. */
export interface ModelCode<Input = unknown, Prepared = unknown, Raw = unknown, Output = unknown> {
  init: (context: ModelContext) => Promise<void> | void
  preProcess: (input: Input) => Promise<Prepared> | Prepared
  run: (prepared: Prepared) => Promise<Raw>
  postProcess: (raw: Raw) => Promise<Output> | Output
  /**
   * Optional: the model's quality on data this runtime holds back (higher is better, e.g.
   * accuracy in [0, 1]). The version policy uses it to validate an upgrade before taking it and
   * to roll back when it drops below the configured bound.
   */
  evaluate?: () => Promise<number>
  /** Frees whatever init and run held (tensors, sessions). The runtime disposes the engine after. */
  release: () => Promise<void> | void
}

/** Runs the three per-request stages in order. */
export async function infer<I, P, R, O> (code: ModelCode<I, P, R, O>, input: I): Promise<O> {
  return await code.postProcess(await code.run(await code.preProcess(input)))
}
