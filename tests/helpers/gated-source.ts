/**
 * A runtime's block source for tests that order two operations without timing one against the
 * other: the coordinator's HTTP API, holding back the shards of the blocks a gate names until the
 * gate is opened.
 */
import { nodeHttpBlockSource } from '../../node-runtime/sources/http.ts'
import type { BlockSource } from '../../shared/load/source.ts'

export interface GatedSource {
  /** What a runtime takes as `source`; called once the coordinator's URL is known. */
  source: () => BlockSource
  /** Holds back the shards of `blocks` (block CIDs): `asked` resolves at the first request for one, `open` lets them through. */
  gate: (blocks: Iterable<string>) => { asked: Promise<void>, open: () => void }
  close: () => void
}

export function gatedSource (baseUrl: () => string): GatedSource {
  let http: ReturnType<typeof nodeHttpBlockSource> | undefined
  let gated = new Set<string>()
  let reached: () => void = () => {}
  let release: Promise<void> = Promise.resolve()
  return {
    source () {
      http ??= nodeHttpBlockSource({ baseUrl: baseUrl(), timeoutMs: 30_000 })
      const inner = http
      return {
        name: 'gated',
        async get (cid, options) {
          if (options.block !== undefined && gated.has(options.block)) {
            reached()
            await release
          }
          return await inner.get(cid, options)
        }
      }
    },
    gate (blocks) {
      gated = new Set(blocks)
      const asked = new Promise<void>(resolve => { reached = resolve })
      let open: () => void = () => {}
      release = new Promise<void>(resolve => { open = resolve })
      return { asked, open }
    },
    close: () => http?.close()
  }
}
