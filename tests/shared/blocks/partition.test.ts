import { describe, it, expect } from 'vitest'
import { MAX_BLOCK_BYTES, partition, unitNames, unitOf, tensorOffsets } from '../../../shared/blocks/partition.ts'
import type { TensorInfo } from '../../../shared/model/types.ts'

const t = (name: string, byteLength: number, shape: number[] = [byteLength / 4], layer = name.slice(0, name.lastIndexOf('/'))): TensorInfo =>
  ({ name, dtype: 'float32', shape, byteLength, layer })

describe('unitOf', () => {
  it.each([
    ['encoder.layers.3.attn.q_proj', 'encoder.layers.3'],
    ['block_2_expand', 'block_2'],
    ['block_2_project_BN', 'block_2'],
    ['MobilenetV2/expanded_conv_4/depthwise', 'MobilenetV2/expanded_conv_4'],
    ['dense_1', 'dense_1'],
    ['conv2d', 'conv2d'],
    ['1072', '1072'],
    ['features.1.conv.0.0', 'features.1']
  ])('%s → %s', (layer, unit) => expect(unitOf(layer)).toBe(unit))
})

describe('unitNames (the model\'s other layers tell a repeated unit from a wrapper; review 48c)', () => {
  it('cuts at the repeated blocks under a wrapper that occurs once, and leaves the wrapper\'s other layers alone', () => {
    // movenet's backbone: every layer under model_1, which cut there made one 4.6 MB unit.
    const root = 'StatefulPartitionedCall/center_net/model_1/model'
    const layers = [`${root}/Conv1`, `${root}/bn_Conv1`, `${root}/block_1_expand`, `${root}/block_1_project_BN`, `${root}/block_2_expand`, `${root}/block_2_depthwise`, `${root}/Conv_1`, 'StatefulPartitionedCall/center_net/head_0/conv', 'StatefulPartitionedCall/center_net/head_1/conv']
    expect(Object.fromEntries(unitNames(layers))).toEqual({
      [`${root}/Conv1`]: `${root}/Conv1`,
      [`${root}/bn_Conv1`]: `${root}/bn_Conv1`,
      [`${root}/block_1_expand`]: `${root}/block_1`,
      [`${root}/block_1_project_BN`]: `${root}/block_1`,
      [`${root}/block_2_expand`]: `${root}/block_2`,
      [`${root}/block_2_depthwise`]: `${root}/block_2`,
      [`${root}/Conv_1`]: `${root}/Conv_1`,
      'StatefulPartitionedCall/center_net/head_0/conv': 'StatefulPartitionedCall/center_net/head_0',
      'StatefulPartitionedCall/center_net/head_1/conv': 'StatefulPartitionedCall/center_net/head_1'
    })
  })

  it('sees through an ONNX If branch to the encoder layers under it', () => {
    const branch = 'If_0_then_branch__Inline_0__'
    const layers = [`${branch}/stft/conv`, `${branch}/encoder/0/reparam_conv`, `${branch}/encoder/1/reparam_conv`, `${branch}/decoder/rnn/LSTM`]
    const units = unitNames(layers)
    expect(units.get(`${branch}/encoder/0/reparam_conv`)).toBe(`${branch}/encoder/0`)
    expect(units.get(`${branch}/encoder/1/reparam_conv`)).toBe(`${branch}/encoder/1`)
    // The branch holds repeated units: not a unit itself, so its other layers stand alone.
    expect(units.get(`${branch}/stft/conv`)).toBe(`${branch}/stft/conv`)
    expect(units.get(`${branch}/decoder/rnn/LSTM`)).toBe(`${branch}/decoder/rnn/LSTM`)
  })

  it('takes the outermost repeated prefix: an attention block, not one of its heads', () => {
    const layers = [0, 1].flatMap(l => [0, 1].map(h => `encoder.layers.${l}.attn.heads.${h}.q`))
    expect([...new Set(unitNames(layers).values())]).toEqual(['encoder.layers.0', 'encoder.layers.1'])
  })

  it('looks for indices in a name\'s first 1,024 characters only (hostile names cost no more; review 48e)', () => {
    const long = 'x'.repeat(2000)
    const units = unitNames([`${long}_1/a`, `${long}_2/a`, `m_1/${long}`, `m_2/${long}`])
    expect(units.get(`${long}_1/a`)).toBe(`${long}_1/a`)
    expect(units.get(`m_1/${long}`)).toBe('m_1')
  })

  it('without repeats, keeps the first indexed prefix, as one layer seen alone', () => {
    expect(Object.fromEntries(unitNames(['block_2_expand', 'block_2_project_BN', 'head']))).toEqual({ block_2_expand: 'block_2', block_2_project_BN: 'block_2', head: 'head' })
  })
})

describe('partition', () => {
  const opts = { targetBytes: 1000, maxBytes: 2000 }

  it('keeps a layer\'s tensors together and packs small units toward the target', () => {
    const tensors = [t('dense_1/kernel', 400), t('dense_1/bias', 40), t('dense_2/kernel', 400), t('dense_2/bias', 40), t('dense_3/kernel', 800), t('dense_3/bias', 40)]
    const plans = partition(tensors, opts)
    expect(plans.map(p => p.parts.map(x => tensors[x.tensor]!.name))).toEqual([
      ['dense_1/kernel', 'dense_1/bias', 'dense_2/kernel', 'dense_2/bias'],
      ['dense_3/kernel', 'dense_3/bias']
    ])
    expect(plans[0]!.unit).toBe('dense_1..dense_2')
  })

  it('never splits a unit unless it exceeds the cap, and splits oversize tensors at row boundaries', () => {
    const tensors = [t('big/kernel', 4800, [12, 100]), t('big/bias', 400), t('small/w', 100)]
    const plans = partition(tensors, opts)
    const kernelPieces = plans.filter(p => p.parts.some(x => x.tensor === 0))
    expect(kernelPieces.map(p => p.parts[0]!.rows)).toEqual([[0, 5], [5, 10], [10, 12]])
    for (const p of plans) expect(p.byteLength).toBeLessThanOrEqual(opts.maxBytes)
    expect(plans.reduce((n, p) => n + p.byteLength, 0)).toBe(5300)
  })

  it('splits over more leading dimensions when one row of the first is over the cap (1×1 and 3×3 convolutions, [1, N] embeddings)', () => {
    // [1, 1, 20, 50] float32 = 4000 bytes: shape[0] = 1 would leave one 4000-byte piece, so rows are the 20 of [1·1·20, 50].
    const tensors = [t('conv1x1/kernel', 4000, [1, 1, 20, 50]), t('conv3x3/kernel', 3 * 3 * 10 * 10 * 4, [3, 3, 10, 10]), t('emb/table', 6000, [1, 1500])]
    const plans = partition(tensors, opts)
    for (const p of plans) expect(p.byteLength).toBeLessThanOrEqual(opts.maxBytes)
    const rowsOf = (tensor: number): Array<[number, number] | undefined> => plans.flatMap(p => p.parts.filter(x => x.tensor === tensor).map(x => x.rows))
    expect(rowsOf(0)).toEqual([[0, 10], [10, 20]]) // rows of 200 bytes, 10 per piece
    expect(rowsOf(1)).toEqual([[0, 1], [1, 2], [2, 3]]) // shape[0] is enough here: 3 rows of 1200 bytes
    expect(rowsOf(2)).toEqual([[0, 500], [500, 1000], [1000, 1500]]) // [1, 1500]: rows are the 1500 elements
  })

  it('cuts 4-bit tensors on whole bytes, and strings into plain byte ranges', () => {
    const int4 = (name: string, shape: number[]): TensorInfo => ({ name, dtype: 'int4', shape, byteLength: Math.ceil(shape.reduce((a, b) => a * b, 1) / 2), layer: name })
    const tensors = [
      int4('odd/rows', [9, 601]), // rows of 300.5 bytes: cut every second row, 6 rows (1803 bytes) a piece
      int4('wide/rows', [3, 4001]), // two rows (4001 bytes) would pass the cap: rows are the 12,003 elements
      { name: 'names', dtype: 'string', shape: [3], byteLength: 4500, layer: 'names' }
    ]
    const plans = partition(tensors, opts)
    const piecesOf = (tensor: number) => plans.flatMap(p => p.parts.filter(x => x.tensor === tensor))
    expect(piecesOf(0).map(x => [x.offset, x.length, x.rows])).toEqual([[0, 1803, [0, 6]], [1803, 902, [6, 9]]])
    expect(piecesOf(1).map(x => x.rows)).toEqual([[0, 4000], [4000, 8000], [8000, 12000], [12000, 12003]])
    expect(piecesOf(2).map(x => [x.offset, x.length, x.rows])).toEqual([[0, 2000, undefined], [2000, 2000, undefined], [4000, 500, undefined]])
    for (const [i, info] of tensors.entries()) {
      const pieces = piecesOf(i)
      expect(pieces.reduce((at, x) => { expect(x.offset).toBe(at); return at + x.length }, 0)).toBe(info.byteLength)
    }
    for (const p of plans) expect(p.byteLength).toBeLessThanOrEqual(opts.maxBytes)
    // Bytes that cannot hold the shape are refused, not cut anywhere.
    expect(() => partition([{ ...int4('bad', [9, 601]), byteLength: 2800 }], opts)).toThrow(/2800 bytes do not hold 5409 int4 elements/)
  })

  it('covers every weight byte exactly once and is deterministic', () => {
    let seed = 7
    const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
    const tensors = Array.from({ length: 200 }, (_, i) => t(`net.layers.${Math.floor(i / 4)}.p${i % 4}/w`, 4 * Math.ceil(rand() * 700), undefined))
    for (const x of tensors) x.shape = [x.byteLength / 4]
    const a = partition(tensors, opts)
    expect(partition(tensors, opts)).toEqual(a)
    const covered = tensors.map(x => new Uint8Array(x.byteLength))
    for (const p of a) for (const part of p.parts) covered[part.tensor]!.fill(1, part.offset, part.offset + part.length).length
    const counts = tensors.map(() => 0)
    for (const p of a) for (const part of p.parts) counts[part.tensor]! += part.length
    expect(counts).toEqual(tensors.map(x => x.byteLength))
    expect(covered.every(c => c.every(b => b === 1))).toBe(true)
    expect(tensorOffsets(tensors).at(-1)).toBe(tensors.slice(0, -1).reduce((n, x) => n + x.byteLength, 0))
  })

  it('packs a unit over the cap layer by layer: a layer\'s tensors stay in one block (review 48c)', () => {
    // One unit (lstm_1) of two layers, 1800 bytes over a 1000-byte cap: tensor by tensor, the
    // second layer's weight went with the first layer and its bias to the next block.
    const tensors = [t('lstm_1/cell/kernel', 800), t('lstm_1/cell/recurrent', 400), t('lstm_1/out/kernel', 400), t('lstm_1/out/bias', 200)]
    const plans = partition(tensors, { targetBytes: 800, maxBytes: 1000 })
    expect(plans.map(p => p.parts.map(x => tensors[x.tensor]!.name))).toEqual([
      ['lstm_1/cell/kernel'], ['lstm_1/cell/recurrent'], ['lstm_1/out/kernel', 'lstm_1/out/bias']
    ])
  })

  it('packs one unit of 200,000 tensors without overflowing the stack', () => {
    // Its parts were spread into one push() call: a RangeError, an HTTP 500 at ingest.
    const tensors = Array.from({ length: 200_000 }, (_, i) => t(`u_1/w${i}`, 4, [1], `u_1/w${i}`))
    const plans = partition(tensors, { targetBytes: 1 << 20, maxBytes: 2 << 20 })
    expect(plans.map(p => [p.unit, p.parts.length, p.byteLength])).toEqual([['u_1', 200_000, 800_000]])
  })

  it('rejects nonsensical options', () => {
    expect(() => partition([], { targetBytes: 0, maxBytes: 1 })).toThrow(/targetBytes/)
    expect(() => partition([], { targetBytes: 2, maxBytes: 1 })).toThrow(/targetBytes <= maxBytes/)
    // A manifest refuses blocks above MAX_BLOCK_BYTES, so ingest must never make one.
    expect(() => partition([], { targetBytes: 1 << 20, maxBytes: MAX_BLOCK_BYTES + 1 })).toThrow(`maxBytes <= ${MAX_BLOCK_BYTES}`)
    expect(partition([], { targetBytes: 1 << 20, maxBytes: MAX_BLOCK_BYTES })).toEqual([])
  })
})

describe('partition with access levels (review 50a M2)', () => {
  const tensors = [t('a/kernel', 400), t('b/kernel', 400), t('c/kernel', 400), t('d/kernel', 400)]
  const options = { targetBytes: 4096, maxBytes: 8192 }

  it('never puts units of two levels in one block, and gives each block its units\' level', () => {
    const level = (unit: string): string => unit === 'b' || unit === 'c' ? 'premium' : 'default'
    expect(partition(tensors, options, level).map(p => [p.unit, p.access])).toEqual([['a', 'default'], ['b..c', 'premium'], ['d', 'default']])
  })

  it('cuts only the block that holds a level change: the others stay as they were (review 51b)', () => {
    const six = ['a', 'b', 'c', 'd', 'e', 'f'].map(n => t(`${n}/kernel`, 1000))
    const plain = partition(six, { targetBytes: 2048, maxBytes: 4096 })
    expect(plain.map(p => p.unit)).toEqual(['a..b', 'c..d', 'e..f'])
    const cut = partition(six, { targetBytes: 2048, maxBytes: 4096 }, unit => unit === 'c' ? 'premium' : 'default')
    expect(cut.map(p => [p.unit, p.access])).toEqual([['a..b', 'default'], ['c', 'premium'], ['d', 'default'], ['e..f', 'default']])
    expect([cut[0], cut[3]].map(p => p?.parts)).toEqual([plain[0], plain[2]].map(p => p?.parts))
    expect(cut.map(p => p.byteLength)).toEqual([2000, 1000, 1000, 2000])
  })

  it('packs as before when every unit has one level', () => {
    const plain = partition(tensors, options)
    expect(plain.map(p => p.unit)).toEqual(['a..d'])
    expect(partition(tensors, options, () => 'default').map(({ access, ...p }) => p)).toEqual(plain)
  })
})
