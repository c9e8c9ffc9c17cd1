/**
 * The format-independent parts of ModelMetadata: totals over the tensor list and a per-layer
 * summary grouped by `TensorInfo.layer`. `dtypes` counts tensors per dtype.
 */
import type { LayerSummary, ModelMetadata, TensorInfo } from '../model/types.ts'
import { elementCount } from './_dtypes.ts'

export function tensorTotals (tensors: readonly TensorInfo[]): Pick<ModelMetadata, 'parameters' | 'weightBytes' | 'tensorCount' | 'dtypes'> {
  let parameters = 0
  let weightBytes = 0
  const dtypes: Record<string, number> = {}
  for (const t of tensors) {
    parameters += elementCount(t.shape)
    weightBytes += t.byteLength
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1
  }
  return { parameters, weightBytes, tensorCount: tensors.length, dtypes }
}

/** One summary per distinct `layer`, in order of first appearance; `kind` as `kindOf` says. */
export function layersOfTensors (tensors: readonly TensorInfo[], kindOf: (layer: string) => string | undefined): LayerSummary[] {
  const layers = new Map<string, LayerSummary>()
  for (const t of tensors) {
    let layer = layers.get(t.layer)
    if (layer === undefined) {
      const kind = kindOf(t.layer)
      layer = { name: t.layer, ...(kind === undefined ? {} : { kind }), parameters: 0 }
      layers.set(t.layer, layer)
    }
    layer.parameters += elementCount(t.shape)
  }
  return [...layers.values()]
}
