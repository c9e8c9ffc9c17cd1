/**
 * FedAvg server step (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks
 * from Decentralized Data", Alg. 1): the new global model is the base plus the weighted mean of
 * the clients' deltas — server SGD with learning rate 1 in the terms of Reddi et al. 2021.
 * FedProx (Li et al. 2020) shares this server step: its proximal term lives in client training.
 */

/** weights = base + meanDelta, in a new array. Lengths are checked by the caller (strategy.ts). */
export function fedAvgStep (base: Float32Array, meanDelta: Float32Array): Float32Array {
  const out = new Float32Array(base.length)
  for (let i = 0; i < out.length; i++) out[i] = (base[i] as number) + (meanDelta[i] as number)
  return out
}
