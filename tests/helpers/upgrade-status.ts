/**
 * The status a rounds WebSocket upgrade with `token` gets from the coordinator at `url`: 101 when
 * it is taken (the socket is then dropped), else the refusal's status and body.
 */
import WebSocket from 'ws'
import { ROUNDS_PATH } from '../../coordinator/rounds/hub.ts'

export async function upgradeStatus (url: string, token: string): Promise<{ status: number, body: string, challenge?: string }> {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${ROUNDS_PATH}`, { headers: { authorization: `Bearer ${token}` } })
  return await new Promise((resolve, reject) => {
    ws.once('open', () => { ws.terminate(); resolve({ status: 101, body: '' }) })
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body, ...(res.headers['www-authenticate'] === undefined ? {} : { challenge: res.headers['www-authenticate'] }) }) })
    })
    ws.once('error', reject)
  })
}
