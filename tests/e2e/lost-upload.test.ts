/**
 * An upload lost to a coordinator's stop: the runtime recorded it as given and sent it, but the
 * coordinator stopped before reading it (here a proxy holds the frame back until the stop; a
 * coordinator stopping also refuses one that arrives after the round left memory). The round is
 * kept for the next start, whose welcome names it as still awaiting that runtime's upload, and
 * the runtime sends the same frame again (round protocol 8). Before, the runtime waited for a
 * result that never came, and the resumed round failed at its training deadline with one upload
 * short. A real coordinator stopped and started again on its data dir and port, real runtimes
 * and tfjs training, over loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { createCoordinator, type Coordinator } from '../../coordinator/coordinator.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { modelFiles, mnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { secureClients, type SecureClientFactory } from '../../node-runtime/fl/secure-client.ts'
import type { ParticipantEvent } from '../../node-runtime/fl/participant.ts'
import { startParticipants, stopParticipants, type TestParticipant } from '../helpers/fl.ts'
import { holdUploadProxy } from '../helpers/hold-upload-proxy.ts'

let root: string
beforeAll(async () => {
  await tfjsBackend()
  root = await mkdtemp(join(tmpdir(), 'blockfed-lost-upload-'))
})
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

/** Whether round `id`'s saved masking state holds a skipped report (read beside the running coordinator). */
function savedReport (dir: string, id: string): boolean {
  const db = new DatabaseSync(join(dir, 'coordinator.sqlite'), { readOnly: true })
  try {
    const row = db.prepare('SELECT secure_state FROM rounds WHERE id = ?').get(id) as { secure_state: string | null } | undefined
    return (JSON.parse(row?.secure_state ?? 'null') as { state?: { skipped?: unknown[] } } | null)?.state?.skipped?.length === 1
  } finally {
    db.close()
  }
}

/** The first event `match` takes, asked every 50 ms for at most `ms`. */
async function eventOf (events: ParticipantEvent[], match: (e: ParticipantEvent) => boolean, ms: number): Promise<ParticipantEvent> {
  for (let waited = 0; waited < ms; waited += 50) {
    const found = events.find(match)
    if (found !== undefined) return found
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`no such event within ${ms} ms; got ${events.map(e => e.type).join(', ')}`)
}

/**
 * Runtime 0's secure client, spoiling the sealed shares it deals to `victim()` (a nonce changed:
 * well formed, does not open), so that the victim masks without that edge and sends its report
 * of it just before its upload (as in rounds.test.ts, reviews 47a, 47e).
 */
const spoilingFor = (victim: () => string | undefined): SecureClientFactory => deps => secureClients()({
  ...deps,
  send: payload => {
    const shares = (payload as { type?: string, shares?: Array<{ to: string, ciphertext: string }> }).shares
    const entry = shares?.find(e => e.to === victim())
    if ((payload as { type?: string }).type === 'secagg/shares' && entry !== undefined) entry.ciphertext = (entry.ciphertext.startsWith('A') ? 'B' : 'A') + entry.ciphertext.slice(1)
    deps.send(payload)
  }
})

describe('an upload a stopping coordinator never read', () => {
  const cases = [{ mode: 'none', report: false }, { mode: 'masking', report: false }, { mode: 'masking', report: true }] as const
  for (const { mode, report } of cases) {
    it(`is sent again, the same frame, to the resumed round, which publishes with it (mode ${mode}${report ? ', with the report sent before it' : ''})`, async () => {
      const runtimes = mode === 'masking' ? 4 : 2
      const dir = join(root, `${mode}${report ? '-report' : ''}`)
      // What the first coordinator stored: the stop comes once it has every upload but the held one.
      const stored: string[] = []
      let coordinator: Coordinator = await createCoordinator({ dataDir: dir, port: 0, onRoundEvent: e => { if (e.type === 'upload') stored.push(e.clientId) } })
      const at = await coordinator.start()
      const port = Number(new URL(at).port)
      const token = await coordinator.createToken('edge')
      const model = mnistMlp({ hidden: [16] })
      await coordinator.ingest('mnist', await modelFiles(model))
      model.dispose()
      // The last runtime reaches the coordinator through the proxy that loses its upload.
      const proxy = await holdUploadProxy(port)
      const last = runtimes - 1
      let ps: TestParticipant[] = []
      // The reports the held runtime sends before its upload (report: the one of runtime 0's spoiled shares).
      const reports: unknown[] = []
      const watched: SecureClientFactory = deps => {
        const client = secureClients()(deps)
        return { ...client, beforeUpload: () => { const said = client.beforeUpload?.(); if (said !== undefined) reports.push(said); return said } }
      }
      const secureClientOf = (i: number): SecureClientFactory | undefined => mode !== 'masking' ? undefined : i === last ? watched : i === 0 && report ? spoilingFor(() => ps[last]?.participant.id) : secureClients()
      try {
        ps = await startParticipants(at, token, `${dir}-runtimes`, runtimes, {
          extra: i => ({ ...(i === last ? { url: proxy.url } : {}), ...(secureClientOf(i) === undefined ? {} : { secureClient: secureClientOf(i) }) })
        })
        const { id, done } = await coordinator.rounds.start({
          model: 'mnist', trainable: ['head'], secure: mode === 'masking' ? { mode, dropoutRate: 0.3 } : { mode }, selection: { minClients: runtimes, minUploads: runtimes },
          deadlines: { trainMs: 60_000, unmaskMs: 60_000 }
        })
        done.catch(() => {}) // it rejects when the coordinator stops and leaves the round
        const lost = ps[last] as TestParticipant
        const held = await proxy.held
        // The runtime counts it sent; the coordinator has the others' uploads only.
        const sent = await eventOf(lost.events, e => e.type === 'uploaded' && e.roundId === id, 30_000)
        expect(sent).toEqual({ type: 'uploaded', roundId: id, bytes: expect.any(Number) })
        expect((sent as { bytes: number }).bytes).toBe(held)
        // Stored by the coordinator, not only sent: one still in flight at the stop would be re-sent too.
        for (let waited = 0; stored.length < last; waited += 50) {
          if (waited > 30_000) throw new Error(`the coordinator stored ${stored.length} of ${last} uploads within 30 s`)
          await new Promise(resolve => setTimeout(resolve, 50))
        }
        // The report went ahead of the held frame: stopped once it is saved, it comes again as a repeat.
        if (report) {
          for (let waited = 0; !savedReport(dir, id); waited += 50) {
            if (waited > 30_000) throw new Error('the report before the held upload was not saved within 30 s')
            await new Promise(resolve => setTimeout(resolve, 50))
          }
        }
        await coordinator.stop()
        coordinator = await createCoordinator({ dataDir: dir, port })
        await coordinator.start()
        const again = await eventOf(lost.events, e => e.type === 'uploaded' && e.roundId === id && e.again === true, 30_000)
        expect(again).toEqual({ ...sent, again: true })
        for (const p of ps) {
          const result = await eventOf(p.events, e => e.type === 'result' && e.roundId === id, 60_000)
          expect(result).toMatchObject({ state: 'published', version: 2, reason: null })
        }
        // Sent once more, and only to the round that waited for it; the report again taken as
        // the one the coordinator had (the proxy let it through), not refused.
        expect(lost.events.filter(e => e.type === 'uploaded')).toHaveLength(2)
        expect(reports).toHaveLength(report ? 1 : 0)
        expect(lost.events.filter(e => e.type === 'error')).toEqual([])
        for (const p of ps.slice(0, last)) expect(p.events.filter(e => e.type === 'uploaded')).toHaveLength(1)
      } finally {
        await stopParticipants(ps)
        await coordinator.stop()
        await proxy.close()
      }
    }, 240_000)
  }
})
