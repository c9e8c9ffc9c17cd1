/**
 * The ledger commands as a user runs them, each a separate process: a witness, a coordinator that
 * asks it to cosign, `versions`, `verify` (and its failure on a tampered entry), `rollback` with
 * the coordinator down, and bad arguments.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { spawn, execFile, type ChildProcessByStdio } from 'node:child_process'
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { DatabaseSync } from 'node:sqlite'
import { mnistMlp, modelFiles } from '../../node-runtime/examples/mnist-mlp.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { witnessVerifierKey } from '../../shared/ledger/cosignature.ts'
import { verifierKey } from '../../shared/ledger/note.ts'
import { generateSigningKey } from '../../shared/crypto/sign.ts'

const CLI = fileURLToPath(new URL('../../coordinator/cli/main.ts', import.meta.url))
type Child = ChildProcessByStdio<null, Readable, Readable>
let root: string
let data: string
const children: Child[] = []

function blockfed (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000, env: { ...process.env, BLOCKFED_TOKEN: '' } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr })
    })
  })
}

/** Starts a long-running command and waits for the stdout lines that match `patterns`. */
async function start (args: string[], patterns: RegExp[]): Promise<{ child: Child, matches: string[] }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  const matches = await new Promise<string[]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start: ${out}`)), 30_000)
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const found = patterns.map(p => p.exec(out)?.[1])
      if (found.every(f => f !== undefined)) { clearTimeout(timer); resolve(found as string[]) }
    })
  })
  return { child, matches }
}

async function stop (child: Child): Promise<void> {
  // Exited already (a SIGTERM'd child has a signalCode and no exitCode).
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function writeModel (dir: string, seed: number): Promise<string> {
  const model = mnistMlp({ hidden: [16], seed })
  await mkdir(dir, { recursive: true })
  for (const f of await modelFiles(model)) await writeFile(join(dir, f.path), f.bytes)
  model.dispose()
  return dir
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'blockfed-ledger-cli-'))
  data = join(root, 'data')
})

afterAll(async () => {
  for (const c of children) await stop(c)
  await rm(root, { recursive: true, force: true })
})

describe('blockfed ledger commands', () => {
  it('witness + coordinator: versions shows ledger indices and cosigners; verify passes, then fails on a tampered entry; rollback works offline', async () => {
    const first = await start(['coordinator', '--data', data, '--port', '0', '--ledger-origin', 'cli.test/log'], [/ledger key\s+(\S+)/])
    const logVkey = first.matches[0] as string
    expect(logVkey).toMatch(/^cli\.test\/log\+[0-9a-f]{8}\+/)
    await stop(first.child)
    const witness = await start(['witness', '--data', join(root, 'witness'), '--name', 'cli.test/w1', '--log', logVkey, '--port', '0'], [/listening on (\S+)/, /verifier key (\S+)/])
    const [witnessUrl, witnessVkey] = witness.matches as [string, string]
    const coordinator = await start(['coordinator', '--data', data, '--port', '0', '--witness', `${witnessUrl}=${witnessVkey}`], [/listening on (\S+)/])
    const url = coordinator.matches[0] as string

    for (const seed of [1, 2]) {
      const ingest = await blockfed('ingest', await writeModel(join(root, `model-${seed}`), seed), '--name', 'digits', '--coordinator', url, '--data', data)
      expect(ingest.code).toBe(0)
    }
    const versions = await blockfed('versions', 'digits', '--coordinator', url)
    expect(versions.stdout).toMatch(/^digits@1 {2}parent - {2}ledger #0 {2}\d+ blocks/m)
    expect(versions.stdout).toMatch(/^digits@2 {2}parent 1 {2}ledger #1 {2}/m)
    expect(versions.stdout).toMatch(/^checkpoint cli\.test\/log size 2 root /m)
    expect(versions.stdout).toMatch(/^cosigned by cli\.test\/w1$/m)
    expect(versions.stdout).toMatch(/^trainable units of digits@2 \(a round's "trainable"\): \w+(, \w+)+$/m)
    // Channels through the typed client: set, and a mistyped name said as such.
    const pointed = await blockfed('channel', 'digits', 'canary', '2', '--rollout', '0.25', '--coordinator', url, '--data', data)
    expect(pointed.stdout).toBe('digits canary → 2 (rollout 0.25)\n')
    // Moved again without --rollout: the canary keeps its 0.25 (before, it widened to 1 unsaid).
    const moved = await blockfed('channel', 'digits', 'canary', '1', '--coordinator', url, '--data', data)
    expect(moved.stdout).toBe('digits canary → 1 (rollout 0.25)\n')
    const typo = await blockfed('channel', 'digitz', 'stable', '1', '--coordinator', url, '--data', data)
    expect(typo.code).toBe(1)
    expect(typo.stderr).toMatch(/NotFoundError: .*no model named digitz/)

    const home = join(root, 'verifier')
    const ok = await blockfed('verify', 'digits@1', '--coordinator', url, '--data', data, '--home', home, '--witness', witnessVkey, '--min-witnesses', '1')
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/digits@1 verified/)
    expect(ok.stdout).toMatch(/cosigned by cli\.test\/w1/)
    expect(ok.stdout).toMatch(/entry #0 names this manifest/)

    // Tamper with entry 1 under the running coordinator: verify must fail, non-zero.
    const db = new DatabaseSync(join(data, 'coordinator.sqlite'))
    const original = (db.prepare('SELECT entry FROM ledger_leaves WHERE idx = 1').get() as { entry: Uint8Array }).entry
    const forged = new TextEncoder().encode(new TextDecoder().decode(original).replace(/"time":"[^"]+"/, '"time":"2001-01-01T00:00:00.000Z"'))
    db.prepare('UPDATE ledger_leaves SET entry = ? WHERE idx = 1').run(forged)
    const bad = await blockfed('verify', 'digits@2', '--coordinator', url, '--data', data, '--home', home)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/LedgerSecurityError: digits@2: entry 1 is not included in checkpoint 2/)
    db.prepare('UPDATE ledger_leaves SET entry = ? WHERE idx = 1').run(original)
    db.close()
    expect((await blockfed('verify', 'digits@2', '--coordinator', url, '--data', data, '--home', home)).code).toBe(0)

    // A runtime runs v1 then v2; with the coordinator down the CLI rolls it back to v1 from cache.
    const runtimeHome = join(root, 'runtime')
    const aoe = { version: '1', tag: 'digits', runtime: 'tensorflow', source: 'blockfed', modelDir: 'digits', modelName: 'digits', updateURL: url, tokenEnv: 'DIGITS_TOKEN', pin: 1 }
    process.env.DIGITS_TOKEN = (await readFile(join(data, 'admin.token'), 'utf8')).trim()
    const rt = await createNodeRuntime({ dataDir: runtimeHome })
    const handle = await rt.load(aoe)
    expect(handle.manifest.version).toBe(1)
    await rt.stop()
    const rt2 = await createNodeRuntime({ dataDir: runtimeHome })
    const { pin: _pin, ...following } = aoe
    expect((await rt2.load(following)).manifest.version).toBe(2)
    await rt2.stop()
    const configPath = join(root, 'digits.aoe.json')
    // No token: an offline rollback to kept blocks and keys needs none (review 40a).
    await writeFile(configPath, JSON.stringify({ ...following, tokenEnv: 'DIGITS_TOKEN_UNSET' }))

    await stop(coordinator.child)
    // A data dir where the runtime never ran the model (a wrong --home): refused, nothing written.
    const wrongHome = join(root, 'not-the-runtime')
    const wrong = await blockfed('rollback', 'digits', '--to', '1', '--config', configPath, '--home', wrongHome)
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toBe(`blockfed: InvalidInputError: --home ${wrongHome}: no version of digits is recorded there (${join(wrongHome, 'digits', 'versions.json')} is missing), so there is nothing to roll back from; give the runtime's data dir (the dataDir it was created with)\n`)
    await expect(readdir(wrongHome)).rejects.toThrow(/ENOENT/)
    const rolled = await blockfed('rollback', 'digits', '--to', '1', '--config', configPath, '--home', runtimeHome)
    expect(rolled.stderr).toBe('')
    expect(rolled.stdout).toMatch(/^digits: 2 → 1 \(rolled back to 1 on request\); 0 bytes fetched/)
    const rt3 = await createNodeRuntime({ dataDir: runtimeHome })
    const back = await rt3.load(following)
    expect(back.manifest.version).toBe(1)
    expect(back.report.offline).toBe(true)
    await rt3.stop()

    // A witness that cannot be reached is named at start and said to be failing, on stderr, once.
    const downVkey = witnessVerifierKey('cli.test/down', generateSigningKey().publicKey)
    // The same for a decryptor that cannot be reached: said at start, not at the first Paillier round.
    const again = spawn(process.execPath, [CLI, 'coordinator', '--data', data, '--port', '0', '--no-p2p', '--witness', `http://127.0.0.1:9=${downVkey}`, '--decryptor', 'http://127.0.0.1:9'], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(again)
    let out = ''
    let err = ''
    again.stdout.on('data', (c: Buffer) => { out += c.toString() })
    again.stderr.on('data', (c: Buffer) => { err += c.toString() })
    for (let i = 0; i < 300 && !(/did not cosign/.test(err) && /decryptor .* is not usable/.test(err)); i++) await new Promise(resolve => setTimeout(resolve, 100))
    await stop(again)
    expect(out).toMatch(/^ {2}witness {6}http:\/\/127\.0\.0\.1:9$/m)
    expect(err).toMatch(/^blockfed: witness cli\.test\/down \(http:\/\/127\.0\.0\.1:9\) did not cosign checkpoint 2: .+; asked again every 30 s, and runtimes that require its cosignature wait until it does$/m)
    expect(err.match(/did not cosign/g)).toHaveLength(1)
    expect(err).toMatch(/^blockfed: decryptor http:\/\/127\.0\.0\.1:9 is not usable: .*unreachable.*; Paillier rounds are refused until it is \(asked again every 15 s\)$/m)
  }, 180_000)

  it('refuses bad arguments with a reason', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['rollback', 'digits', '--to', '0', '--config', 'x.json'], /expected an integer/],
      [['rollback', 'digits', '--to', '1', '--config', join(root, 'missing.json')], /missing\.json/],
      [['verify', 'digits@x'], /not a positive integer/],
      [['witness', '--data', root, '--name', 'w', '--log', 'not-a-key'], /expected a log verifier key/],
      [['witness', '--data', join(root, 'no-log'), '--name', 'w'], /--log: name at least one log to witness/],
      [['coordinator', '--data', root, '--witness', 'http://127.0.0.1:1=nope'], /expected URL=VKEY/],
      [['channel', 'digits', 'beta', '1'], /expected stable or canary/],
      [['channel', 'digits', 'stable', '1', '--coordinator', 'http://127.0.0.1:1', '--token', 'bf_x'], /coordinator http:\/\/127\.0\.0\.1:1 .*unreachable/],
      [['channel', 'digits', 'stable', '1', '--coordinator', 'http://127.0.0.1:1'], /channel needs an API token that may ingest/],
      [['channel', 'digits', 'stable', '1', '--data', join(root, 'nowhere')], /--data .*nowhere: no admin\.token there; is it the data dir of a coordinator/],
      [['verify', 'digits@1', '--coordinator-key', '00'], /--coordinator-key.*an Ed25519 public key: expected 64 hex characters/],
      [['verify', 'digits@1', '--coordinator', 'http://127.0.0.1:1', '--home', join(root, 'h')], /needs an API token/]
    ]
    for (const [args, message] of cases) {
      const result = await blockfed(...args)
      expect(result.code, args.join(' ')).not.toBe(0)
      expect(result.stderr, args.join(' ')).toMatch(message)
    }
    // Refused before its key was made: the witness without a log left no data dir behind.
    await expect(stat(join(root, 'no-log'))).rejects.toThrow(/ENOENT/)
    // Refused after it (the listen fails): the key and database it made go again (review 46a).
    const logKey = verifierKey('log.example/cli', generateSigningKey().publicKey)
    const unlistened = await blockfed('witness', '--data', join(root, 'no-host'), '--name', 'w.example/x', '--log', logKey, '--port', '0', '--host', '999.1.1.1')
    expect(unlistened.code).toBe(1)
    expect(unlistened.stderr).toMatch(/^blockfed: InvalidInputError: --host 999\.1\.1\.1: no address of that name \(ENOTFOUND\)/)
    await expect(stat(join(root, 'no-host'))).rejects.toThrow(/ENOENT/)
  })
})
