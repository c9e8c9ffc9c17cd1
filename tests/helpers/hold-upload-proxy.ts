/**
 * A TCP proxy in front of a coordinator's rounds socket that loses one runtime's upload: it
 * passes everything both ways, reading the client's WebSocket frames (RFC 6455 §5.2) as they go,
 * and the first binary frame (an upload) and all after it on that connection are held back and
 * never sent. Later connections pass whole. The upstream may go away and come back on its port
 * (a coordinator restarted): each connection dials it anew.
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net'

export interface HoldUploadProxy {
  url: string
  /** Resolves with the held frame's payload length once an upload has been held. */
  held: Promise<number>
  close: () => Promise<void>
}

export async function holdUploadProxy (upstreamPort: number): Promise<HoldUploadProxy> {
  let holding = true
  let onHeld: (bytes: number) => void = () => {}
  const held = new Promise<number>(resolve => { onHeld = resolve })
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    sockets.add(client)
    const upstream = connect(upstreamPort, '127.0.0.1')
    sockets.add(upstream)
    const end = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    upstream.pipe(client)
    if (!holding) {
      client.pipe(upstream)
      return
    }
    // The HTTP upgrade request, then frames: header, extended length, mask, payload.
    let buffered = Buffer.alloc(0)
    let inFrames = false
    let stopped = false
    client.on('data', (chunk: Buffer) => {
      if (stopped) return
      buffered = Buffer.concat([buffered, chunk])
      if (!inFrames) {
        const end = buffered.indexOf('\r\n\r\n')
        if (end < 0) return
        upstream.write(buffered.subarray(0, end + 4))
        buffered = buffered.subarray(end + 4)
        inFrames = true
      }
      for (;;) {
        if (buffered.length < 2) return
        const opcode = (buffered[0] as number) & 0x0f
        const masked = ((buffered[1] as number) & 0x80) !== 0
        let length = (buffered[1] as number) & 0x7f
        let at = 2
        if (length === 126) {
          if (buffered.length < 4) return
          length = buffered.readUInt16BE(2)
          at = 4
        } else if (length === 127) {
          if (buffered.length < 10) return
          length = Number(buffered.readBigUInt64BE(2))
          at = 10
        }
        const total = at + (masked ? 4 : 0) + length
        if (buffered.length < total) return
        if (opcode === 0x2 && holding) {
          holding = false
          stopped = true
          onHeld(length)
          return
        }
        upstream.write(buffered.subarray(0, total))
        buffered = buffered.subarray(total)
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held,
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  }
}
