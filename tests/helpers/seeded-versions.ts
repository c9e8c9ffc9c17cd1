/** Model files of a small MNIST MLP with seeded weights: a different seed is a different version, in every block. */
import { mnistMlp, modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'
import type { ModelFile } from '../../shared/model/types.ts'

export async function seededVersionFiles (seed: number, hidden = 8): Promise<ModelFile[]> {
  const model = mnistMlp({ hidden: [hidden], seed })
  const files = await modelFiles(model)
  model.dispose()
  return files
}
