/**
 * Secure mode `masking` on the coordinator: SecAgg+ (Bell et al. 2020) over Bonawitz et al.'s
 * four rounds (aggregation/secagg). Setup runs AdvertiseKeys and ShareKeys among the accepted
 * clients, each behind the round's setup deadline; uploads are masked vectors added into the
 * server's running sum; `sum` sends each survivor its unmask request and rebuilds the sum from
 * the shares, behind the unmask deadline. The coordinator only ever holds masked vectors and
 * their unmasked total.
 */
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { fromBase64, fromHex, toBase64 } from '../../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { createMaskingServer, restoreMaskingServer, type MaskingServer, type MaskingServerSnapshot } from '../../../aggregation/secagg/server.ts'
import { graphConfig } from '../../../shared/rounds/secagg-graph.ts'
import { gate, type Gate } from '../gate.ts'
import { asRingVector } from './none.ts'
import type { SecureRoundServer } from './types.ts'

interface StoredSnapshot { state: MaskingServerSnapshot['state'], maskedSum: string }

export async function maskingServer (config: RoundConfig, snapshot: unknown): Promise<SecureRoundServer> {
  const server: MaskingServer = snapshot === null || snapshot === undefined
    ? createMaskingServer({
      roundId: config.id,
      participants: config.clients.map(id => ({ id, identityKey: fromHex(id) })),
      vectorLength: config.vectorLength,
      graph: graphConfig(config),
      seed: fromHex(config.seed)
    })
    : await restoreMaskingServer({ state: (snapshot as StoredSnapshot).state, maskedSum: fromBase64((snapshot as StoredSnapshot).maskedSum) })
  let waiting: Gate | undefined

  return {
    mode: 'masking',
    async setup (accepted, io) {
      waiting = gate(accepted, config.deadlines.setupMs, io.signal)
      await waiting.done
      server.closeAdvertise()
      const roster = server.roster()
      for (const id of roster) io.send(id, server.rosterFor(id))
      waiting = gate(roster, config.deadlines.setupMs, io.signal)
      await waiting.done
      server.closeShares()
      const shared = roster.filter(id => server.stage === 'mask' && !waiting?.pending.has(id))
      for (const id of shared) io.send(id, server.inboxFor(id))
      waiting = undefined
      return shared
    },
    async message (clientId, payload) {
      const type = (payload as { type?: unknown } | null)?.type
      if (type === 'secagg/advertise') {
        await server.receiveAdvertise(clientId, payload)
        waiting?.settle(clientId)
      } else if (type === 'secagg/shares') {
        server.receiveShares(clientId, payload)
        waiting?.settle(clientId)
      } else if (type === 'secagg/unmask') {
        server.receiveUnmask(clientId, payload)
        waiting?.settle(clientId)
        // Every needed secret has t shares: stragglers do not matter, stop waiting for them.
        if (waiting !== undefined && server.ready()) for (const id of [...waiting.pending]) waiting.settle(id)
      } else {
        throw new InvalidInputError(`secagg message: unknown type ${JSON.stringify(type)}; expected secagg/advertise, secagg/shares or secagg/unmask`)
      }
    },
    checkUpload (clientId, payload) {
      server.receiveMasked(clientId, asRingVector(payload, config.vectorLength, 'masked upload'))
    },
    async sum (uploads, io) {
      if (server.stage === 'mask') {
        // After a restart the snapshot may predate some uploads the database kept: add them back.
        const counted = new Set(server.snapshot().state.masked)
        for (const [id, payload] of uploads) if (!counted.has(id)) server.receiveMasked(id, asRingVector(payload, config.vectorLength, 'masked upload'))
        server.closeMasked()
      }
      if (server.stage === 'unmask' && !server.ready()) {
        const survivors = server.survivors()
        waiting = gate(survivors, config.deadlines.unmaskMs, io.signal)
        for (const id of survivors) io.send(id, server.unmaskRequestFor(id))
        try {
          await waiting.done
        } finally {
          waiting = undefined
        }
      }
      return await server.finish()
    },
    drop (clientId) { waiting?.settle(clientId) },
    snapshot (): StoredSnapshot {
      const s = server.snapshot()
      return { state: s.state, maskedSum: toBase64(s.maskedSum) }
    }
  }
}
