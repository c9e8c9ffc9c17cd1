/**
 * The manifest's file paths (shared/manifest/schema.ts): `blockfed pull` writes a model back out
 * under them, and a manifest comes from a coordinator a client need not trust, so none may leave
 * the output folder.
 */
import { describe, it, expect } from 'vitest'
import { relativeFilePathSchema, topologySchema } from '../../../shared/manifest/schema.ts'

describe('manifest file paths', () => {
  it('accept plain and nested relative names', () => {
    for (const p of ['model.json', 'group1-shard1of1.bin', 'weights/part-1.bin', 'silero_vad.onnx', 'a.onnx.data', 'model (1).onnx', 'modèle/poids_1.bin']) {
      expect(relativeFilePathSchema.safeParse(p).success, p).toBe(true)
    }
  })

  it('refuse names that climb out, are absolute, or hide a separator', () => {
    for (const p of ['../x.bin', 'a/../../x', '/etc/passwd', 'a//b', './a', 'a/.', '..', 'c:x', 'a\\\\b', 'a\\u0000b', 'a\tb', 'a*b', 'w?.bin', 'a|b', '<a>', 'a"b', 'CON', 'sub/nul.bin', 'com1.txt', 'trailing.', 'trailing /x', 'c1\u0085.bin', 'rtl\u202egnp.exe', 'zero\u200bwidth', '', 'x'.repeat(256)]) {
      expect(relativeFilePathSchema.safeParse(p).success, JSON.stringify(p)).toBe(false)
    }
  })

  it('are checked in every topology that names files', () => {
    expect(topologySchema.safeParse({ kind: 'tfjs', modelJson: '{}', weightFiles: [{ path: '../../../tmp/pwned.bin', byteLength: 1 }] }).success).toBe(false)
    expect(topologySchema.safeParse({ kind: 'onnx', fileName: '/abs.onnx', skeleton: '', holes: [], external: [] }).success).toBe(false)
    expect(topologySchema.safeParse({ kind: 'onnx', skeleton: '', holes: [], external: [{ tensor: 0, location: '../data', offset: 0 }] }).success).toBe(false)
    expect(topologySchema.safeParse({ kind: 'tfjs', modelJson: '{}', weightFiles: [{ path: 'w/ok.bin', byteLength: 1 }] }).success).toBe(true)
  })
})
