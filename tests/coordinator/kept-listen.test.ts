/**
 * The coordinator's p2p node listens where it did at its last start when no addresses are given
 * (coordinator/p2p/kept-listen.ts): the bootstrap addresses handed to runtimes stay valid across
 * restarts (review 52a: OS-chosen ports changed at every one). Ports taken since: new ones, said.
 * Real coordinators with real libp2p nodes on 127.0.0.1.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { createServer } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { KEPT_LISTEN_FILE } from '../../coordinator/p2p/kept-listen.ts'

const roots: string[] = []
afterAll(async () => { for (const r of roots) await rm(r, { recursive: true, force: true }) })

/** Starts a coordinator on `dataDir` with its p2p node on default addresses; returns them and its notices, stopped. */
async function startOnce (dataDir: string): Promise<{ addresses: string[], notices: string[] }> {
  const notices: string[] = []
  const c = await createCoordinator({ dataDir, port: 0, p2p: {}, onNotice: m => notices.push(m) })
  try {
    await c.start()
    return { addresses: [...(c.p2p()?.addresses ?? [])].sort(), notices }
  } finally {
    await c.stop()
  }
}

describe('the coordinator\'s p2p addresses across restarts', () => {
  it('listens again where it did last time, and on new ports, said, when those are taken', async () => {
    const root = await mkdtemp(join(tmpdir(), 'blockfed-kept-listen-'))
    roots.push(root)
    const dataDir = join(root, 'coordinator')
    const first = await startOnce(dataDir)
    expect(first.addresses.length).toBeGreaterThanOrEqual(2)
    expect(JSON.parse(await readFile(join(dataDir, KEPT_LISTEN_FILE), 'utf8')).listen).toHaveLength(first.addresses.length)
    const second = await startOnce(dataDir)
    expect(second.addresses).toEqual(first.addresses)
    expect(second.notices).toEqual([])

    // Its TCP port taken by another program meanwhile.
    const tcpPort = Number(/\/tcp\/(\d+)\/p2p\//.exec(first.addresses.find(a => !a.includes('/ws/')) as string)?.[1])
    const taken = createServer()
    await new Promise<void>(resolve => taken.listen(tcpPort, '127.0.0.1', resolve))
    try {
      const third = await startOnce(dataDir)
      expect(third.addresses.some(a => a.includes(`/tcp/${tcpPort}/`))).toBe(false)
      expect(third.notices).toEqual([expect.stringMatching(new RegExp(`^p2p: the addresses of the last start \\(.*\\) cannot be listened on \\(/ip4/127\\.0\\.0\\.1/tcp/${tcpPort}: Error: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${tcpPort}\\); it listens on new ports: runtimes whose peers\.bootstrap names the old ones need the new addresses \\(or give --p2p-listen\\)$`))])
      // The new ones are kept for the next start.
      expect((await startOnce(dataDir)).addresses).toEqual(third.addresses)
    } finally {
      taken.close()
    }
  }, 60_000)

  it('takes a kept file that does not parse as no addresses, and writes it anew', async () => {
    const root = await mkdtemp(join(tmpdir(), 'blockfed-kept-listen-'))
    roots.push(root)
    const dataDir = join(root, 'coordinator')
    await startOnce(dataDir)
    for (const garbled of ['{', '{"listen":[]}', '{"listen":["not a multiaddr"]}', '{"listen":["/ip4/127.0.0.1/tcp/1"],"more":1}']) {
      await writeFile(join(dataDir, KEPT_LISTEN_FILE), garbled)
      const { addresses, notices } = await startOnce(dataDir)
      expect(addresses.length, garbled).toBeGreaterThanOrEqual(2)
      expect(notices, garbled).toEqual([])
      expect(JSON.parse(await readFile(join(dataDir, KEPT_LISTEN_FILE), 'utf8')).listen, garbled).toHaveLength(addresses.length)
    }
  }, 60_000)
})
