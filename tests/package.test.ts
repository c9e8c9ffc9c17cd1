/** The published surface: subpath exports resolve to the built package, and the bin runs. */
import { describe, it, expect } from 'vitest'
import { execFileSync } from 'node:child_process'

import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))


describe('package exports (built by the build step of npm test)', () => {
  it('resolves blockfed/shared, blockfed/coordinator and blockfed/node', () => {
    const script = `
      const shared = await import('blockfed/shared'); const c = await import('blockfed/coordinator'); const n = await import('blockfed/node');
      console.log(JSON.stringify([typeof shared.readModel, typeof shared.verifySignedManifest, typeof c.createCoordinator, typeof n.createNodeRuntime, typeof n.pullModel]))`
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual(['function', 'function', 'function', 'function', 'function'])
  })
  it('the blockfed bin prints its commands', () => {
    const out = execFileSync(process.execPath, [`${root}/dist/coordinator/cli/main.js`, '--help'], { encoding: 'utf8' })
    for (const command of ['coordinator', 'ingest', 'pull', 'models', 'versions', 'demo']) expect(out).toContain(command)
  })
})
