/** AoE's own documented config example (github.com/didi/AoE, README "model.config"), plus the updateURL blockfed needs. */
export const aoeExample = {
  version: '1.0.0',
  tag: 'tag_mnist',
  runtime: 'tensorflow',
  source: 'installed',
  modelDir: 'mnist',
  modelName: 'mnist_cnn_keras',
  updateURL: 'https://coordinator.example/api'
}
