import { describe, expect, it } from 'vitest'
import { InvalidInputError, InvalidModelError, TooLargeError } from '../../../shared/errors/errors.ts'
import { onnxExternalData, onnxModelBytes, readModel, tfjsArtifacts, writeModel } from '../../../shared/formats/index.ts'
import type { ModelFile, OnnxTopology, TfjsTopology } from '../../../shared/model/types.ts'
import protobuf from 'protobufjs/minimal.js'
import { modelFile, movenetFiles, onnxBytes, pseudoRandomBytes, readError, tinyOnnx, VAD_DIR } from './fixtures.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

interface EditableModelJson {
  weightsManifest?: Array<{ paths: string[], weights: Array<Record<string, unknown>> }>
}

/** movenet's model.json, edited. */
function movenetJson (edit: (json: EditableModelJson) => void): ModelFile {
  const json = JSON.parse(new TextDecoder().decode(movenetFiles()[0]!.bytes)) as EditableModelJson
  edit(json)
  return { path: 'model.json', bytes: text(JSON.stringify(json)) }
}

type W = protobuf.Writer

/** m.onnx, a model whose graph `body` writes. */
const onnxFile = (body: (graph: W) => void): ModelFile => ({ path: 'm.onnx', bytes: onnxBytes(body) })

/** A uint8 initializer of `dims` stored at `offset` of external data file `location`. */
function externalTensor (g: W, name: string, dims: number[], location: string, offset: number | string): void {
  g.uint32(5 << 3 | 2).fork()
  for (const d of dims) g.uint32(1 << 3).int64(d)
  g.uint32(2 << 3).int64(2)
  g.uint32(8 << 3 | 2).string(name)
  g.uint32(13 << 3 | 2).fork().uint32(1 << 3 | 2).string('location').uint32(2 << 3 | 2).string(location).ldelim()
  g.uint32(13 << 3 | 2).fork().uint32(1 << 3 | 2).string('offset').uint32(2 << 3 | 2).string(String(offset)).ldelim()
  g.uint32(14 << 3).int64(1) // data_location: EXTERNAL
  g.ldelim()
}

describe('bad model files', () => {
  describe('tfjs', () => {
    it('a truncated .bin names the file and both sizes', async () => {
      const [json, bin] = movenetFiles()
      const e = await readError([json!, { path: bin!.path, bytes: bin!.bytes.subarray(0, bin!.bytes.length - 1000) }])
      expect(e.message).toContain('movenet-lightning.bin is 4649216 bytes')
      expect(e.message).toContain('need 4650216 bytes')
      expect(e.message).toContain('1000 bytes short')
      expect(e.status).toBe(422)
    })

    it('a .bin with extra bytes is refused too', async () => {
      const [json, bin] = movenetFiles()
      const longer = new Uint8Array(bin!.bytes.length + 4)
      longer.set(bin!.bytes)
      const e = await readError([json!, { path: bin!.path, bytes: longer }])
      expect(e.message).toContain('4 bytes too many')
    })

    it('a weight file named in model.json but not given', async () => {
      const e = await readError([movenetFiles()[0]!])
      expect(e.message).toBe('movenet-lightning.json names weight file movenet-lightning.bin which was not provided')
    })

    it('a weight file named twice (its bytes would be copied twice)', async () => {
      const w = new Uint8Array(64 * 1024)
      const modelJson = { format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: ['w.bin', 'w.bin'], weights: [{ name: 'c', shape: [32_768], dtype: 'float32' }] }] }
      const e = await readError([{ path: 'model.json', bytes: text(JSON.stringify(modelJson)) }, { path: 'w.bin', bytes: w }])
      expect(e.message).toBe('model.json names weight file w.bin more than once')
    })

    it('model.json that is not JSON', async () => {
      const e = await readError([{ path: 'model.json', bytes: text('{"modelTopology": {') }, movenetFiles()[1]!])
      expect(e.message).toMatch(/^model\.json is not JSON: /)
    })

    it('model.json without weightsManifest', async () => {
      const e = await readError([movenetJson(j => { delete j.weightsManifest }), movenetFiles()[1]!])
      expect(e.message).toBe('model.json is not a tfjs model.json: it has no weightsManifest')
    })

    it('a weights manifest entry of the wrong shape names the path to it', async () => {
      const e = await readError([movenetJson(j => { j.weightsManifest![0]!.weights[3]!.shape = 'big' }), movenetFiles()[1]!])
      expect(e.message).toContain('weightsManifest.0.weights.3.shape')
    })

    it('string weights are refused as unsupported', async () => {
      const e = await readError([movenetJson(j => { j.weightsManifest![0]!.weights[0]!.dtype = 'string' }), movenetFiles()[1]!])
      expect(e.message).toContain('weight "StatefulPartitionedCall/ExpandDims_2/dim" has dtype string, which is not supported')
    })

    it('a quantized weight must still name a tfjs dtype (its size comes from the quantization)', async () => {
      for (const dtype of ['', 'no-such-dtype', 'constructor', 'string']) {
        const e = await readError([movenetJson(j => { Object.assign(j.weightsManifest![0]!.weights[0]!, { dtype, quantization: { dtype: 'uint8', scale: 1, min: 0 } }) }), movenetFiles()[1]!])
        expect(e.message, dtype).toMatch(/weight "StatefulPartitionedCall\/ExpandDims_2\/dim" has (unknown dtype|dtype string)/)
      }
    })

    it('a model.json nested 20,000 levels deep is refused before its parts reach the manifest', async () => {
      const nested = '['.repeat(20_000) + ']'.repeat(20_000)
      const json = `{"format":"layers-model","modelTopology":{"class_name":"Sequential","config":{"layers":[]}},"trainingConfig":{"loss":${nested}},"weightsManifest":[]}`
      const e = await readError([{ path: 'model.json', bytes: text(json) }])
      expect(e.message).toBe('model.json nests deeper than 256 levels')
    })

    it('numbers the signed manifest could not carry: 1e999 anywhere, or a dim that is not a size, refused with where it is', async () => {
      const layers = (extra: string, after = ''): string => `{"format":"layers-model","modelTopology":{"class_name":"Foo","config":{"layers":[{"config":{"name":"d"${extra}}}]}},"weightsManifest":[{"paths":[],"weights":[{"name":"d/k","shape":[0],"dtype":"float32"}]}]${after}}`
      for (const json of [layers(',"batch_input_shape":[null,1e999]'), layers('', ',"trainingConfig":{"lr":1e999}')]) {
        expect((await readError([{ path: 'model.json', bytes: text(json) }])).message).toBe('model.json holds a number too large for a double (such as 1e999)')
      }
      expect((await readError([{ path: 'model.json', bytes: text(layers(',"batch_input_shape":[null,1.5]')) }])).message)
        .toBe('model.json: input layer "d" has a batch input shape of 1.5, which is not a size (an integer from -1 up)')
      const signature = (size: unknown): ModelFile => movenetJson(j => {
        const input = (j as { signature?: { inputs: Record<string, { tensorShape: { dim: Array<{ size: unknown }> } }> } }).signature!.inputs['input:0']!
        input.tensorShape.dim[1]!.size = size
      })
      for (const size of ['abc', '1e999', '-2', {}]) {
        expect((await readError([signature(size), movenetFiles()[1]!])).message, String(size)).toMatch(/^model\.json: signature tensor "input:0" has a dim of .*, which is not a size \(an integer from -1 up\)$/)
      }
    })

    it('weight paths that leave the model folder', async () => {
      const e = await readError([movenetJson(j => { j.weightsManifest![0]!.paths = ['../secret.bin'] }), movenetFiles()[1]!])
      expect(e.message).toContain('"../secret.bin" is not a relative path inside the model folder')
    })

    it('weight files that could not both be written back: a file and a folder of one name, or names that differ in case', async () => {
      const files = (paths: string[]): ModelFile[] => [
        { path: 'model.json', bytes: text(JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths, weights: [{ name: 'a', shape: [2], dtype: 'float32' }] }] })) },
        ...paths.map(path => ({ path, bytes: new Uint8Array(4) }))
      ]
      expect((await readError(files(['w', 'w/x.bin']))).message).toBe('model.json: "w" and "w/x.bin" cannot both be written: "w" would be a file and a folder')
      expect((await readError(files(['a/B/x.bin', 'a/b']))).message).toBe('model.json: "a/b" and "a/B/x.bin" cannot both be written: "a/b" would be a file and a folder')
      expect((await readError(files(['W.bin', 'w.bin']))).message).toBe('model.json: "W.bin" and "w.bin" differ only in letter case or Unicode form, so they would be one file on macOS or Windows')
      expect((await readError(files(['\u00e9.bin', 'e\u0301.bin']))).message).toContain('differ only in letter case or Unicode form')
      expect((await readError(files(['MODEL.JSON', 'x.bin']))).message).toBe('model.json: "model.json" and "MODEL.JSON" differ only in letter case or Unicode form, so they would be one file on macOS or Windows')
      await expect(readModel(files(['w/x.bin', 'w/y.bin']))).resolves.toBeDefined()
      await expect(readModel(files(['w.bin', 'w.bin.1']))).resolves.toBeDefined()
    })

    it('a dim of 0 makes 0 elements whatever the other dims; 2^53 elements or more are refused naming the weight', async () => {
      const huge = [...new Array<number>(21).fill(2 ** 53 - 1), 0]
      const files = (shape: number[], bytes = 0): ModelFile[] => [
        { path: 'model.json', bytes: text(JSON.stringify({ format: 'graph-model', modelTopology: { node: [] }, weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'w', shape, dtype: 'float32' }] }] })) },
        { path: 'w.bin', bytes: new Uint8Array(bytes) }
      ]
      expect((await readModel(files(huge))).tensors[0]).toMatchObject({ name: 'w', shape: huge, byteLength: 0 })
      expect((await readError(files([2 ** 27, 2 ** 26]))).message)
        .toBe(`model.json: weight "w" has shape [${2 ** 27}, ${2 ** 26}]: 2^53 or more elements, more than any tensor can hold`)
      expect((await readError(files([2 ** 27, 2 ** 26 - 1]))).message).toMatch(/^model\.json: the weights need \d+ bytes but w\.bin is 0 bytes/)
    })

    it('a json file that is not a model, next to nothing else', async () => {
      const e = await readError([{ path: 'notes.json', bytes: text('{"hello": 1}') }])
      expect(e.message).toBe('notes.json is not a tfjs model.json: it has no modelTopology and no weightsManifest')
    })

    it('no model file at all', async () => {
      expect((await readError([{ path: 'weights.bin', bytes: new Uint8Array(4) }])).message)
        .toBe('no .onnx file and no model.json among weights.bin')
      expect((await readError([])).message).toBe('no model files were given')
    })
  })

  describe('ONNX', () => {
    const legacy = modelFile(VAD_DIR, 'silero_vad_legacy.onnx')
    const n = legacy.bytes.length

    for (const cut of [1, 10, 100, 5000, Math.floor(n / 2), n - 100, n - 1]) {
      it(`truncated at byte ${cut}`, async () => {
        const e = await readError([{ path: 'vad.onnx', bytes: legacy.bytes.subarray(0, cut) }])
        expect(e.message).toMatch(new RegExp(`^vad\\.onnx: truncated at byte ${cut}: `))
      })
    }

    it('cut at a field boundary, so that the graph is missing', async () => {
      const e = await readError([{ path: 'vad.onnx', bytes: legacy.bytes.subarray(0, 2) }])
      expect(e.message).toBe('vad.onnx: not an ONNX model: no ModelProto.graph (field 7); the file may be truncated')
    })

    it('random bytes, text and an empty file', async () => {
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const e = await readError([{ path: 'noise.onnx', bytes: pseudoRandomBytes(4096, seed) }])
        expect(e.message).toMatch(/^noise\.onnx: not an ONNX model: /)
      }
      expect((await readError([{ path: 'a.onnx', bytes: text('hello world') }])).message).toMatch(/^a\.onnx: not an ONNX model: invalid wire type/)
      expect((await readError([{ path: 'a.onnx', bytes: new Uint8Array(0) }])).message).toBe('a.onnx: not an ONNX model: the file is empty')
    })

    it('a negative length (a 10-byte varint) is refused, not followed backwards', async () => {
      const bytes = Uint8Array.from([0x08, 0x08, 0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00])
      expect((await readError([{ path: 'neg.onnx', bytes }])).message).toBe('neg.onnx: not an ONNX model: field 7 at byte 2 has a negative length')
    })

    it('damaged bytes give InvalidModelError or a model that writes back exactly, nothing else', async () => {
      const { onnx, external } = tinyOnnx()
      let refused = 0
      for (let i = 0; i < 1500; i++) {
        const noise = pseudoRandomBytes(8, i + 1)
        const bytes = onnx.bytes.slice()
        for (let j = 0; j < 1 + noise[0]! % 3; j++) bytes[(noise[1 + 2 * j]! << 8 | noise[2 + 2 * j]!) % bytes.length] = noise[7]! ^ j
        try {
          const model = await readModel([{ path: 'tiny.onnx', bytes }, external])
          expect(Buffer.from(writeModel(model)[0]!.bytes).equals(Buffer.from(bytes))).toBe(true)
        } catch (e) {
          expect(e).toBeInstanceOf(InvalidModelError)
          refused++
        }
      }
      expect(refused).toBeGreaterThan(100)
    })

    it('a tensor whose raw_data does not match its dims', async () => {
      const { onnx, external } = tinyOnnx({ rawLength: 8 })
      const e = await readError([onnx, external])
      expect(e.message).toBe('tiny.onnx: tensor "B" (float32 [3]) has 8 bytes of raw_data; its dims need 12')
    })

    it('an external data file not given, or too short', async () => {
      const { onnx, external } = tinyOnnx()
      expect((await readError([onnx])).message).toBe('tiny.onnx: tensor "W" (float32 [4, 3]) is stored in external data file tiny.bin which was not provided')
      const short = { path: 'tiny.bin', bytes: external.bytes.subarray(0, 100) }
      expect((await readError([onnx, short])).message).toBe('tiny.onnx: tensor "W" (float32 [4, 3]) needs bytes 64..112 of tiny.bin, which is 100 bytes')
    })

    it('two tensors over the same external bytes (weights many times the upload)', async () => {
      const { onnx, external } = tinyOnnx({ sharedExternal: true })
      expect((await readError([onnx, external])).message).toBe('tiny.onnx: tensors "W" and "W2" share bytes 64..112 of external data file tiny.bin')
    })

    it('16,000 initializers of one name are named apart: a, a#2, … a#16000', async () => {
      const w = protobuf.Writer.create()
      const n = 16_000
      w.uint32(1 << 3).int64(8)
      w.uint32(7 << 3 | 2).fork()
      for (let i = 0; i < n; i++) {
        w.uint32(5 << 3 | 2).fork()
        w.uint32(1 << 3 | 2).fork().int64(1).ldelim()
        w.uint32(2 << 3).int64(1)
        w.uint32(8 << 3 | 2).string('a')
        w.uint32(9 << 3 | 2).bytes(new Uint8Array(4))
        w.ldelim()
      }
      w.ldelim()
      w.uint32(8 << 3 | 2).fork().uint32(2 << 3).int64(17).ldelim() // opset_import { version: 17 }
      const model = await readModel([{ path: 'same.onnx', bytes: w.finish() }])
      expect(model.tensors).toHaveLength(n)
      expect(new Set(model.tensors.map(t => t.name)).size).toBe(n)
      expect(model.tensors.slice(0, 3).map(t => t.name)).toEqual(['a', 'a#2', 'a#3'])
      expect(model.tensors.at(-1)?.name).toBe(`a#${n}`)
    })

    it('a dim of 0 makes 0 elements whatever the other dims; 2^53 elements or more are refused naming the tensor', async () => {
      const huge = [...new Array<number>(21).fill(2 ** 53 - 1), 0]
      const external = (dims: number[]): ModelFile[] => [onnxFile(g => externalTensor(g, 'w', dims, 'd.bin', 0)), { path: 'd.bin', bytes: new Uint8Array(16) }]
      const model = await readModel(external(huge))
      expect(model.tensors.map(t => [t.name, t.byteLength])).toEqual([['w', 0], ['d.bin@0', 16]])
      expect((await readError(external([2 ** 27, 2 ** 26]))).message)
        .toBe(`m.onnx: tensor "w" has shape [${2 ** 27}, ${2 ** 26}]: 2^53 or more elements, more than any tensor can hold`)
    })

    it('an external data offset other than decimal digits is refused, as onnx itself refuses it', async () => {
      const at = (offset: string): ModelFile[] => [onnxFile(g => externalTensor(g, 'w', [4], 'd.bin', offset)), { path: 'd.bin', bytes: new Uint8Array(8) }]
      // Number() read "" as 0, "0x4" as 4 and "4e0" as 4: models onnx cannot load were taken.
      for (const offset of ['', '0x4', '4e0', ' 4', '4.0', '-0']) {
        expect((await readError(at(offset))).message, JSON.stringify(offset)).toBe('m.onnx: tensor "w" (uint8 [4]): bad external data offset (decimal digits expected)')
      }
      expect((await readModel(at('4'))).tensors.map(t => [t.name, t.byteLength])).toContainEqual(['w', 4])
    })

    it('external data files that could not both be written back: names that differ in case, or a file and a folder', async () => {
      const twoFiles = (a: string, b: string): ModelFile[] => [
        onnxFile(g => { externalTensor(g, 'x', [4], a, 0); externalTensor(g, 'y', [4], b, 0) }),
        { path: a, bytes: new Uint8Array(4) }, { path: b, bytes: new Uint8Array(4) }
      ]
      expect((await readError(twoFiles('d.bin', 'D.bin'))).message).toBe('m.onnx: "d.bin" and "D.bin" differ only in letter case or Unicode form, so they would be one file on macOS or Windows')
      expect((await readError(twoFiles('d/e.bin', 'd'))).message).toBe('m.onnx: "d" and "d/e.bin" cannot both be written: "d" would be a file and a folder')
      expect((await readError(twoFiles('M.onnx/x', 'd.bin'))).message).toBe('m.onnx: "m.onnx" and "M.onnx/x" cannot both be written: "m.onnx" would be a file and a folder')
      await expect(readModel(twoFiles('d/e.bin', 'd/f.bin'))).resolves.toBeDefined()
    })

    it('several .onnx files at once', async () => {
      const e = await readError([legacy, { ...legacy, path: 'other.onnx' }])
      expect(e.message).toContain('several .onnx files were given')
    })
  })

  describe('writing back with weights that do not fit the topology', () => {
    it('tfjs', async () => {
      const model = await readModel(movenetFiles())
      const short = model.weights.subarray(1)
      expect(() => writeModel({ ...model, weights: short })).toThrow(InvalidInputError)
      expect(() => tfjsArtifacts(model.topology as TfjsTopology, short)).toThrow('weights: 4650215 bytes, but the topology\'s weight files total 4650216')
    })

    it('ONNX', async () => {
      const model = await readModel([modelFile(VAD_DIR, 'silero_vad_legacy.onnx')])
      const topology = model.topology as OnnxTopology
      expect(() => onnxModelBytes(topology, model.weights.subarray(4), model.tensors)).toThrow(InvalidInputError)
      expect(() => onnxModelBytes(topology, model.weights, model.tensors.slice(0, 10)))
        .toThrow(/weights: 1781176 bytes, but the tensors' byte lengths total/)
    })

    it('ONNX external data at an offset no buffer can hold: TooLargeError naming the file, not a bare RangeError', async () => {
      const { onnx, external } = tinyOnnx()
      const model = await readModel([onnx, external])
      const topology = structuredClone(model.topology) as OnnxTopology
      const w = topology.external[0]!
      w.offset = 2 ** 50
      expect(() => onnxExternalData(topology, model.weights, model.tensors)).toThrow(TooLargeError)
      expect(() => onnxExternalData(topology, model.weights, model.tensors)).toThrow(`topology.external: ${w.location}: ${2 ** 50 + model.tensors[w.tensor]!.byteLength} bytes, more than this runtime can hold in one buffer`)
    })
  })
})
