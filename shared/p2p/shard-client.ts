/**
 * Shard requests to many peers over kept-open streams: a small pool of idle shard sessions per
 * peer (shard-protocol.ts), so a load's hundreds of objects from one peer reuse a few streams
 * instead of opening, negotiating and closing one each. An idle session is closed after
 * `idleMs`, below the servers' idle deadline, so the client, not the server, usually ends it.
 *
 * A kept stream can end between two uses (the peer's idle deadline, a closed connection): a
 * request that fails on a reused session before its deadline is sent once more on a fresh one.
 */
import type { Stream } from '@libp2p/interface'
import { shardSession, type RequestShardOptions, type ShardAnswer, type ShardSession } from './shard-protocol.ts'
import { IntegrityError } from '../errors/errors.ts'

export interface ShardClientOptions {
  /** Opens a new shard-protocol stream to `peer`. */
  open: (peer: string, signal: AbortSignal) => Promise<Stream>
  /** Idle sessions are closed after this long. Default 10 s. */
  idleMs?: number
  /** Idle sessions kept per peer. Default 8. */
  maxIdlePerPeer?: number
}

export interface ShardClient {
  request: (peer: string, cid: string, options: RequestShardOptions) => Promise<ShardAnswer>
  /** Sessions opened and reused so far. */
  counters: () => { opened: number, reused: number, retried: number }
  /** Closes every idle session. */
  close: () => Promise<void>
}

interface Idle { session: ShardSession, timer: ReturnType<typeof setTimeout> }

export function shardClient (options: ShardClientOptions): ShardClient {
  const idleMs = options.idleMs ?? 10_000
  const maxIdle = options.maxIdlePerPeer ?? 8
  const idle = new Map<string, Idle[]>()
  const counters = { opened: 0, reused: 0, retried: 0 }
  let closed = false

  const take = (peer: string): ShardSession | undefined => {
    const list = idle.get(peer)
    while (list !== undefined && list.length > 0) {
      const { session, timer } = list.pop() as Idle
      clearTimeout(timer)
      if (session.usable) return session
      session.abort(new Error('shard session no longer usable'))
    }
    return undefined
  }

  const release = (peer: string, session: ShardSession): void => {
    const list = idle.get(peer) ?? []
    if (closed || !session.usable || list.length >= maxIdle) {
      void session.close(AbortSignal.timeout(idleMs))
      return
    }
    const entry: Idle = {
      session,
      timer: setTimeout(() => {
        const at = list.indexOf(entry)
        if (at >= 0) list.splice(at, 1)
        if (list.length === 0 && idle.get(peer) === list) idle.delete(peer)
        void session.close(AbortSignal.timeout(idleMs))
      }, idleMs)
    }
    entry.timer.unref?.()
    list.push(entry)
    idle.set(peer, list)
  }

  const fresh = async (peer: string, signal: AbortSignal): Promise<ShardSession> => {
    counters.opened++
    return shardSession(await options.open(peer, signal))
  }

  return {
    async request (peer, cid, requestOptions) {
      const { signal } = requestOptions
      const kept = take(peer)
      if (kept !== undefined) {
        counters.reused++
        try {
          const answer = await kept.request(cid, requestOptions)
          release(peer, kept)
          return answer
        } catch (err) {
          // A wrong size is the peer's answer, not a stale stream's: asking again gets it again.
          if (signal.aborted || err instanceof IntegrityError) throw err
          counters.retried++
        }
      }
      const session = await fresh(peer, signal)
      const answer = await session.request(cid, requestOptions)
      release(peer, session)
      return answer
    },
    counters: () => ({ ...counters }),
    async close () {
      closed = true
      const all = [...idle.values()].flat()
      idle.clear()
      await Promise.all(all.map(async ({ session, timer }) => {
        clearTimeout(timer)
        await session.close(AbortSignal.timeout(1_000))
      }))
    }
  }
}
