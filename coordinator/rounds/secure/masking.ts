/**
 * Secure mode `masking` on the coordinator: SecAgg+ (Bell et al. 2020) over Bonawitz et al.'s
 * five rounds (aggregation/secagg). Setup runs AdvertiseKeys and ShareKeys among the accepted
 * clients, each behind the round's setup deadline; uploads are masked vectors added into the
 * server's running sum; `sum` runs ConsistencyCheck (survivors sign the survivor list) and then
 * Unmasking within the unmask deadline, and rebuilds the sum from the shares. The coordinator
 * only ever holds masked vectors and their unmasked total.
 *
 * ConsistencyCheck waits for every survivor, at most half the unmask deadline: it cannot end
 * early as Unmasking does (once every secret has t shares, each checked on arrival against its
 * owner's digest), because each signer it waits for may be needed as an answerer. So a survivor that stays connected but never signs costs that half,
 * and Unmasking keeps the rest, at least the other half.
 */
import type { RoundConfig } from '../../../shared/rounds/config.ts'
import { fromBase64, fromHex, toBase64 } from '../../../shared/crypto/bytes.ts'
import { InvalidInputError } from '../../../shared/errors/errors.ts'
import { createMaskingServer, restoreMaskingServer, type MaskingServer, type MaskingServerSnapshot } from '../../../aggregation/secagg/server.ts'
import { graphConfig } from '../../../shared/rounds/secagg-graph.ts'
import { gate, type Gate } from '../gate.ts'
import { RoundFailure } from '../failure.ts'
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
  /**
   * Runs a step of the server; a round the server failed is reported by its bare reason (the
   * server's own error names the round too, and the reason read "round r_… failed: round r_…
   * failed: …": review 52a).
   */
  const step = async <T>(run: () => Promise<T>): Promise<T> => {
    try {
      return await run()
    } catch (err) {
      if (server.stage === 'failed' && server.failure !== undefined) throw new RoundFailure(server.failure)
      throw err
    }
  }
  // Clients gone from the round (disconnect or deadline): no gate waits for them.
  const dropped = new Set<string>()

  return {
    mode: 'masking',
    uploadBytes: config.vectorLength * 4,
    setup: async (accepted, io) => await step(async () => {
      const waitFor = (ids: string[]): Promise<unknown> => {
        waiting = gate(ids.filter(id => !dropped.has(id)), config.deadlines.setupMs, io.signal)
        return waiting.done
      }
      // A client advertises as soon as it accepts, often before this gate exists: wait only for
      // the accepted clients not heard from yet.
      const advertised = new Set(server.advertisedBy())
      await waitFor(accepted.filter(id => !advertised.has(id)))
      server.closeAdvertise()
      const roster = server.roster()
      for (const id of roster) io.send(id, server.rosterFor(id))
      await waitFor(roster)
      server.closeShares()
      // Who shared keys is what the server holds, not who the gate stopped waiting for: a client
      // that disconnected mid-ShareKeys is settled too, and has no inbox.
      const sharers = new Set(server.sharedBy())
      const shared = roster.filter(id => sharers.has(id) && !dropped.has(id))
      for (const id of shared) io.send(id, server.inboxFor(id))
      waiting = undefined
      return shared
    }),
    async message (clientId, payload) {
      const type = (payload as { type?: unknown } | null)?.type
      if (type === 'secagg/advertise') {
        await server.receiveAdvertise(clientId, payload)
        waiting?.settle(clientId)
      } else if (type === 'secagg/shares') {
        server.receiveShares(clientId, payload)
        waiting?.settle(clientId)
      } else if (type === 'secagg/skipped') {
        // Lost at a restart, the upload stored after it would be summed without its edge's
        // correction: a wrong sum with no error (review 47e). The same report again saves nothing.
        if (server.receiveSkipped(clientId, payload)) return 'persist'
      } else if (type === 'secagg/signature') {
        await server.receiveSignature(clientId, payload)
        waiting?.settle(clientId)
      } else if (type === 'secagg/unmask') {
        try {
          server.receiveUnmask(clientId, payload)
        } finally {
          // An answerer sends one unmask: one refused (malformed, say) is not waited for again,
          // though a correct one it sends later still counts. Only Unmasking's gate: an unmask sent
          // in an earlier stage must not settle that stage's.
          if (server.stage === 'unmask') waiting?.settle(clientId)
        }
        // Every needed secret has t shares, each checked on arrival against the digest its owner
        // gave: the answerers still out are let go. (Until stop 52 a second more was waited for
        // spares, the only check on a crafted share then: review 47a.)
        if (waiting !== undefined && server.ready()) for (const id of [...waiting.pending]) waiting.settle(id)
      } else {
        // Quoted short: `type` is the client's, of any size or depth (JSON.stringify of a deep one overflows the stack).
        throw new InvalidInputError(`secagg message: unknown type ${typeof type === 'string' ? JSON.stringify(type.slice(0, 64)) : String(typeof type === 'object' && type !== null ? typeof type : type)}; expected secagg/advertise, secagg/shares, secagg/skipped, secagg/signature or secagg/unmask`)
      }
    },
    checkUpload (clientId, payload) {
      server.receiveMasked(clientId, asRingVector(payload, config.vectorLength, 'masked upload'))
    },
    sum: async (uploads, io) => await step(async () => {
      if (server.stage === 'mask') {
        // After a restart the snapshot may predate some uploads the database kept: add them back.
        const counted = new Set(server.snapshot().state.masked)
        for (const [id, upload] of uploads) if (!counted.has(id)) server.receiveMasked(id, asRingVector(upload.payload, config.vectorLength, 'masked upload'))
        server.closeMasked()
      }
      const until = Date.now() + config.deadlines.unmaskMs
      const ask = async (ids: string[], request: (id: string) => unknown, ms: number): Promise<void> => {
        waiting = gate(ids.filter(id => !dropped.has(id)), Math.max(0, ms), io.signal)
        for (const id of ids) if (!dropped.has(id)) io.send(id, request(id))
        try {
          await waiting.done
        } finally {
          waiting = undefined
        }
      }
      if (server.stage === 'check') {
        await ask(server.survivors(), id => server.consistencyRequestFor(id), config.deadlines.unmaskMs / 2)
        server.closeConsistency()
      }
      if (server.stage === 'unmask' && !server.ready()) await ask(server.answerers(), id => server.unmaskRequestFor(id), until - Date.now())
      return await server.finish()
    }),
    drop (clientId) {
      dropped.add(clientId)
      waiting?.settle(clientId)
    },
    // The survivors' unmask shares are what a restart loses; once they are all in, the sum is
    // the server's own work.
    needsClients: () => !(server.stage === 'done' || (server.stage === 'unmask' && server.ready())),
    snapshot (): StoredSnapshot {
      const s = server.snapshot()
      return { state: s.state, maskedSum: toBase64(s.maskedSum) }
    }
  }
}
