/** The published surface: subpath exports resolve to the built package, and the bin runs. */
import { describe, it, expect } from 'vitest'
import { execFileSync } from 'node:child_process'

import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))


describe('package exports (built by the build step of npm test)', () => {
  it('resolves blockfed/shared, blockfed/aggregation, blockfed/coordinator and blockfed/node', () => {
    const script = `
      const shared = await import('blockfed/shared'); const c = await import('blockfed/coordinator'); const n = await import('blockfed/node'); const a = await import('blockfed/aggregation');
      console.log(JSON.stringify([typeof shared.readModel, typeof shared.verifySignedManifest, typeof c.createCoordinator, typeof n.createNodeRuntime, typeof n.pullModel,
        typeof n.createParticipant, typeof c.createDecryptor, typeof a.fixedPointParams, typeof a.secagg.createMaskingServer, typeof a.paillier.precomputeRandomness, typeof shared.roundRequestSchema]))`
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual(Array(11).fill('function').map((f, i) => i === 10 ? 'object' : f))
  })
  it('the blockfed bin prints its commands', () => {
    const out = execFileSync(process.execPath, [`${root}/dist/coordinator/cli/main.js`, '--help'], { encoding: 'utf8' })
    for (const command of ['coordinator', 'ingest', 'pull', 'models', 'versions', 'demo', 'simulate', 'decryptor']) expect(out).toContain(command)
  })
})
