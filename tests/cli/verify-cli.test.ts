/**
 * `blockfed verify` as a user runs it (a separate process) against a real coordinator whose
 * block files are damaged on its disk: what the load tolerated is printed, `--shards` checks
 * every shard and fails on any bad one; trust on first use is said as such; a mistyped model
 * leaves nothing in HOME; an unreachable coordinator is a failure, not a pass on kept state;
 * witness flags are checked as flags.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createCoordinator } from '../../coordinator/coordinator.ts'
import { signedManifestOf, type VersionRow } from '../../coordinator/store/repository.ts'
import { denseModelFiles } from '../helpers/dense-model.ts'

const CLI = fileURLToPath(new URL('../../coordinator/cli/main.ts', import.meta.url))
let root: string
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'blockfed-verify-cli-')) })
afterAll(async () => { await rm(root, { recursive: true, force: true }) })

function blockfed (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000, env: { ...process.env, BLOCKFED_TOKEN: '' } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

const pathOf = (dataDir: string, cid: string): string => join(dataDir, 'blocks', cid.slice(-2), cid)

async function flip (dataDir: string, cid: string): Promise<void> {
  const bytes = await readFile(pathOf(dataDir, cid))
  bytes[0] = (bytes[0] as number) ^ 0xff
  await writeFile(pathOf(dataDir, cid), bytes)
}

describe('blockfed verify', () => {
  it('reports tolerated shard faults, audits every shard with --shards, says first use, leaves no typo behind, fails offline', async () => {
    const data = join(root, 'data')
    // Small blocks, so that a small model has several.
    const first = await createCoordinator({ dataDir: data, port: 0, partition: { targetBytes: 16 << 10, maxBytes: 1 << 20 } })
    await first.ingest('m', await denseModelFiles(64, [['a', 64, 1], ['b', 64, 2], ['c', 32, 3]]))
    const manifest = signedManifestOf(first.repo.latest('m') as VersionRow).manifest
    await first.stop()
    expect(manifest.blocks.length).toBeGreaterThanOrEqual(2)
    expect(manifest.erasure).toMatchObject({ k: 4, m: 2 })
    const [b0, b1] = manifest.blocks as [typeof manifest.blocks[0], typeof manifest.blocks[0]]
    // Block 0 loses both parity shards (a load never asks for them); block 1 a data shard (a load
    // meets it and rebuilds from parity).
    await flip(data, b0.shards.cids[4] as string)
    await flip(data, b0.shards.cids[5] as string)
    await flip(data, b1.shards.cids[1] as string)

    const coordinator = await createCoordinator({ dataDir: data, port: 0 })
    const url = await coordinator.start()
    const home = join(root, 'home')
    try {
      const plain = await blockfed('verify', 'm@1', '--coordinator', url, '--data', data, '--home', home)
      expect(plain.stderr).toBe('')
      expect(plain.code).toBe(0)
      expect(plain.stdout).toContain(`first use of this log here: no checkpoint was kept in ${home}, this one is now`)
      expect(plain.stdout).toMatch(new RegExp(`^ {2}tolerated {2}block ${b1.index} shard 1: IntegrityError: .*damaged on the coordinator's disk`, 'm'))
      expect(plain.stdout).toMatch(/^ {2}1 shard fault\(s\) tolerated; verify --shards checks every shard of every block$/m)
      expect(plain.stdout).not.toMatch(new RegExp(`block ${b0.index} shard [45]`))

      // Every block now comes from HOME's cache, yet --shards reads every shard from the data dir.
      const audit = await blockfed('verify', 'm@1', '--coordinator', url, '--data', data, '--home', home, '--shards')
      expect(audit.code).toBe(1)
      expect(audit.stdout).toMatch(/consistent with the checkpoint of size 1 kept in /)
      expect(audit.stdout).toMatch(new RegExp(`from cache, 0 bytes fetched\\)`))
      const total = manifest.blocks.length * 6
      expect(audit.stdout).toContain(`  shards     ${total - 3} of ${total} intact (4 of 6 needed per block); the thinnest block(s) ${b0.index} can lose 0 more`)
      for (const [block, shard] of [[b0, 4], [b0, 5], [b1, 1]] as const) {
        expect(audit.stdout).toContain(`  fault      block ${block.index} shard ${shard} (${block.shards.cids[shard] as string}): IntegrityError: `)
      }
      expect(audit.stderr).toMatch(new RegExp(`IntegrityError: m@1: 3 of ${total} shards missing or damaged in ${join(data, 'blocks').replace(/[.]/g, '\\.')}`))

      // Restored: the audit passes.
      for (const [block, shard] of [[b0, 4], [b0, 5], [b1, 1]] as const) await flip(data, block.shards.cids[shard] as string)
      const clean = await blockfed('verify', 'm@1', '--coordinator', url, '--data', data, '--home', home, '--shards')
      expect(clean.stderr).toBe('')
      expect(clean.code).toBe(0)
      expect(clean.stdout).toContain(`  shards     ${total} of ${total} intact (4 of 6 needed per block); the thinnest block(s) ${manifest.blocks.map(b => b.index).join(', ')} can lose 2 more`)

      // A shard the coordinator served (the first load took block 0's data shards) and still
      // holds in memory, damaged on disk since: the files are what --data's audit reads (review
      // 46a: it passed over HTTP until the coordinator's restart).
      await flip(data, b0.shards.cids[0] as string)
      const hot = await blockfed('verify', 'm@1', '--coordinator', url, '--data', data, '--home', home, '--shards')
      expect(hot.code).toBe(1)
      expect(hot.stdout).toContain(`  fault      block ${b0.index} shard 0 (${b0.shards.cids[0] as string}): IntegrityError: blocks/`)
      expect(hot.stderr).toMatch(/IntegrityError: m@1: 1 of \d+ shards missing or damaged in /)
      expect(hot.stdout).not.toContain('as the coordinator serves them')
      // Over HTTP it may pass on the coordinator's memory copy: it says what it audited (review 52a).
      const token = (await readFile(join(data, 'admin.token'), 'utf8')).trim()
      const served = await blockfed('verify', 'm@1', '--coordinator', url, '--token', token, '--home', home, '--shards')
      expect(served.stdout).toContain(`  (as ${url} serves them; shards it served lately may come from its memory: --data DIR audits its disk)`)
      await flip(data, b0.shards.cids[0] as string)

      // A mistyped model: refused, and nothing of it left in HOME (before: verify/@nope/).
      const typo = await blockfed('verify', 'nope@1', '--coordinator', url, '--data', data, '--home', home)
      expect(typo.code).toBe(1)
      expect(typo.stderr).toMatch(/NotFoundError/)
      expect(await readdir(join(home, 'verify'))).toEqual(['@m'])
    } finally {
      await coordinator.stop()
    }

    // The coordinator is down: what HOME kept still verifies, but that is not a verification of the coordinator.
    const offline = await blockfed('verify', 'm@1', '--coordinator', url, '--data', data, '--home', home)
    expect(offline.code).toBe(1)
    expect(offline.stdout).toBe('')
    expect(offline.stderr).toMatch(/UnavailableError: m@1: the coordinator at .* is unreachable; only what .* kept could be checked, and it verifies, but nothing was verified against the coordinator/)
  }, 120_000)

  it('checks the witness flags as flags', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['verify', 'm@1', '--min-witnesses', '2'], /--min-witnesses 2: only 0 --witness key\(s\) given/],
      [['verify', 'm@1', '--witness', 'not-a-key'], /option '--witness <vkey>' argument 'not-a-key' is invalid\. expected a witness verifier key/],
      [['verify', 'm@1', '--witness', 'log.example+01234567+AQ=='], /expected a witness verifier key/]
    ]
    for (const [args, message] of cases) {
      const result = await blockfed(...args, '--coordinator', 'http://127.0.0.1:1', '--token', 'bf_x', '--home', join(root, 'flags'))
      expect(result.code, args.join(' ')).toBe(1)
      expect(result.stderr, args.join(' ')).toMatch(message)
    }
  })
})
