/**
 * A scripted coordinator for the rounds socket, on 127.0.0.1: it answers the handshake
 * (challenge → hello → welcome), then sends whatever the test says and records every frame the
 * runtime sends. For offers no real coordinator would make.
 */
import { randomBytes } from 'node:crypto'
import { WebSocketServer, type WebSocket } from 'ws'
import { ROUNDS_SUBPROTOCOL } from '../../shared/rounds/messages.ts'

export interface FakeRoundsSocket {
  url: string
  /** The runtime's text frames, parsed, in order. */
  frames: Array<Record<string, unknown>>
  send: (message: unknown) => void
  /** The first frame `match` takes, waiting for it at most `ms`. */
  frame: (match: (f: Record<string, unknown>) => boolean, ms?: number) => Promise<Record<string, unknown>>
  close: () => Promise<void>
}

export async function fakeRoundsSocket (): Promise<FakeRoundsSocket> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => ROUNDS_SUBPROTOCOL })
  await new Promise<void>(resolve => wss.once('listening', resolve))
  const frames: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  let socket: WebSocket | undefined
  wss.on('connection', ws => {
    socket = ws
    ws.send(JSON.stringify({ type: 'challenge', nonce: randomBytes(32).toString('hex') }))
    ws.on('message', (data, binary) => {
      if (binary) return
      const text = JSON.parse(data.toString()) as Record<string, unknown>
      frames.push(text)
      if (text.type === 'hello') ws.send(JSON.stringify({ type: 'welcome', clientId: text.clientId }))
      for (const wake of [...waiters]) wake()
    })
  })
  return {
    url: `http://127.0.0.1:${(wss.address() as { port: number }).port}`,
    frames,
    send: message => socket?.send(JSON.stringify(message)),
    async frame (match, ms = 10_000) {
      return await new Promise((resolve, reject) => {
        const check = (): void => {
          const found = frames.find(match)
          if (found === undefined) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve(found)
        }
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no such frame within ${ms} ms; got ${frames.map(f => String(f.type)).join(', ')}`)) }, ms)
        waiters.add(check)
        check()
      })
    },
    async close () {
      for (const client of wss.clients) client.terminate()
      await new Promise(resolve => wss.close(resolve))
    }
  }
}
