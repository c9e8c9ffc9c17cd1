/**
 * A manifest for tests of what carries one (the swarm, the ledger, the loader) rather than of
 * its content: fixed defaults (model `m`, version 1, no tensors, no blocks, RS 2+1), with
 * `fields` laid over them. The default topology is a tfjs one whose single weight file holds
 * the tensors given, as the schema wants.
 */
import type { Manifest } from '../../shared/manifest/schema.ts'

export function testManifest (fields: Partial<Manifest> = {}): Manifest {
  const weightBytes = (fields.tensors ?? []).reduce((n, t) => n + t.byteLength, 0)
  return {
    schema: 'blockfed/manifest@1',
    model: 'm',
    version: 1,
    parent: null,
    createdAt: '2026-01-01T00:00:00.000Z',
    format: 'tfjs-layers',
    topology: { kind: 'tfjs', modelJson: '{}', weightFiles: weightBytes === 0 ? [] : [{ path: 'weights.bin', byteLength: weightBytes }] },
    metadata: {},
    tensors: [],
    erasure: { scheme: 'reed-solomon-gf8', k: 2, m: 1 },
    partition: { targetBytes: 1 << 20, maxBytes: 4 << 20 },
    blocks: [],
    round: null,
    metrics: null,
    ...fields
  }
}
