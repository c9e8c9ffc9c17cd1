/**
 * The version ledger's commands (issue 4):
 *   versions NAME             the history with ledger indices and the witnesses that cosigned
 *   verify NAME@VERSION       signature, checkpoint, consistency, inclusion, block hashes; exit 1 on failure
 *   rollback NAME --to V      a runtime's model back to an earlier anchored version (--config aoe.json)
 *   channel NAME [CH VERSION] show the release channels, or point stable / canary at a version
 *                             (`stable latest`: follow every new version; `canary off`: end it)
 *   witness                   run a witness that cosigns checkpoints (C2SP tlog-witness)
 * `verify` runs the runtime's own load pipeline, so it checks exactly what a runtime would.
 */
import { InvalidArgumentError, type Command } from 'commander'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { ledgerClient } from '../../shared/ledger/client.ts'
import { levelsIn } from '../ingest/access-levels.ts'
import { DEFAULT_ACCESS_LEVEL } from '../constants.ts'
import type { ChannelName, Channels } from '../../shared/ledger/api.ts'
import { parseVerifierKey, splitNote } from '../../shared/ledger/note.ts'
import { parseCheckpoint } from '../../shared/ledger/checkpoint.ts'
import { toBase64 } from '../../shared/crypto/bytes.ts'
import { parsePublicKeyHex } from '../../shared/crypto/sign.ts'
import { AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, UnavailableError } from '../../shared/errors/errors.ts'
import { describeIssues } from '../../shared/errors/parse-json.ts'
import { signedManifestSchema, type Manifest } from '../../shared/manifest/schema.ts'
import { auditShards } from '../../shared/load/audit.ts'
import { trainableUnits, untrainableFormat } from '../../shared/rounds/trainable.ts'
import { loadAoeConfig } from '../../node-runtime/config/load.ts'
import { createNodeRuntime } from '../../node-runtime/runtime.ts'
import { createWitness } from '../../node-runtime/witness/server.ts'
import { inCommandModelDir } from '../../node-runtime/pull.ts'
import { progressBar } from '../../node-runtime/progress.ts'
import { nodeHttpBlockSource } from '../../node-runtime/sources/http.ts'
import type { BlockSource } from '../../shared/load/source.ts'
import { blockFiles } from '../store/block-files.ts'
import { firstStartCleaned, folderOption, onHome } from './paths.ts'
import { interruptible, serveUntilStopped } from './interrupt.ts'
import { coordinatorOption, integer, modelName, modelRef, number, port, listenFailure, token, tokenSource, tokenUnused, url } from './args.ts'

/** `URL=VKEY`: a witness's base URL (no query) and its cosignature/v1 verifier key. */
export function witnessEndpoint (value: string, previous: Array<{ url: string, vkey: string }> = []): Array<{ url: string, vkey: string }> {
  const at = value.indexOf('=')
  const [u, vkey] = at < 0 ? [value, ''] : [value.slice(0, at), value.slice(at + 1)]
  url(u)
  if (u.includes('?')) throw new InvalidArgumentError('the witness URL takes no query string')
  try {
    if (parseVerifierKey(vkey).type !== 'cosignature/v1') throw new Error('not a cosignature/v1 (witness) key')
  } catch (err) {
    throw new InvalidArgumentError(`expected URL=VKEY with a witness verifier key: ${(err as Error).message}`)
  }
  return [...previous, { url: u, vkey }]
}

function logKey (value: string, previous: Array<{ origin: string, vkey: string }> = []): Array<{ origin: string, vkey: string }> {
  try {
    const key = parseVerifierKey(value)
    if (key.type !== 'ed25519') throw new Error('not an Ed25519 log key')
    return [...previous, { origin: key.name, vkey: value }]
  } catch (err) {
    throw new InvalidArgumentError(`expected a log verifier key (GET /ledger/key): ${(err as Error).message}`)
  }
}

/** A channel's target: a version number, `latest` (stable follows every new version) or `off` (no canary). */
function channelTarget (value: string): number | 'latest' | 'off' {
  if (value === 'latest' || value === 'off') return value
  try {
    return integer(1, Number.MAX_SAFE_INTEGER)(value)
  } catch {
    throw new InvalidArgumentError('expected a version number, latest (stable) or off (canary)')
  }
}

/** Where a model's channels point, as `channel NAME` and `versions NAME` print it. */
function describeChannels (c: Channels): string {
  // followsLatest is absent from coordinators before channel clearing: said as unknown, not guessed.
  const stable = c.stable.followsLatest === undefined ? `${c.stable.version}` : c.stable.followsLatest ? `${c.stable.version} (follows the latest version)` : `${c.stable.version} (set; new versions reach it only when it is moved: channel ${c.model} stable latest follows them again)`
  return `${c.model} stable → ${stable}\n${c.model} canary → ${c.canary === null ? 'none' : `${c.canary.version} (rollout ${c.canary.rollout})`}`
}

/** A witness's cosignature/v1 verifier key, checked where it is given (`--witness`). */
function witnessKey (value: string, previous: string[] = []): string[] {
  try {
    if (parseVerifierKey(value).type !== 'cosignature/v1') throw new Error('not a cosignature/v1 (witness) key')
  } catch (err) {
    throw new InvalidArgumentError(`expected a witness verifier key (blockfed witness prints it): ${(err as Error).message}`)
  }
  return [...previous, value]
}

/**
 * `verify --shards`: every shard of every block against its CID, read from the files of the
 * coordinator's data dir when it is given (`dataDir`), else as the coordinator serves them;
 * prints each block's margin and fails on any shard missing or damaged. The coordinator answers
 * from a memory copy of the shards it served lately, so over HTTP a file damaged or deleted since
 * then passed until its restart (review 46a).
 */
async function auditStore (manifest: Manifest, at: { coordinator: string, dataDir?: string }, signal: AbortSignal): Promise<void> {
  const where = at.dataDir === undefined ? at.coordinator : join(at.dataDir, 'blocks')
  let source: BlockSource & { close?: () => void }
  if (at.dataDir === undefined) source = nodeHttpBlockSource({ baseUrl: at.coordinator })
  else {
    // No memory tier: every shard is read from its file.
    const files = blockFiles(where, 0)
    source = { name: where, get: async cid => await files.get(cid) }
  }
  const bar = progressBar('shards')
  let audit
  try {
    audit = await auditShards(manifest, { source, signal, onShard: (done, total) => bar.update(done, total) })
  } finally {
    bar.stop()
    source.close?.()
  }
  const { k, m } = manifest.erasure
  const least = Math.min(...audit.blocks.map(b => b.spare))
  const thinnest = audit.blocks.filter(b => b.spare === least).map(b => b.index)
  console.log(`  shards     ${audit.shardsChecked - audit.faults.length} of ${audit.shardsChecked} intact (${k} of ${k + m} needed per block); ${least < 0 ? `block(s) ${thinnest.join(', ')} cannot be rebuilt` : `the thinnest block(s) ${thinnest.join(', ')} can lose ${least} more`}`)
  for (const f of audit.faults) console.log(`  fault      block ${f.block} shard ${f.shard} (${f.cid}): ${f.reason}`)
  // Over HTTP the coordinator may answer from its memory copies: a clean audit there does not
  // vouch for its disk (review 52a: a damaged file passed as "6 of 6 intact").
  if (at.dataDir === undefined) console.log(`  (as ${at.coordinator} serves them; shards it served lately may come from its memory: --data DIR audits its disk)`)
  if (audit.faults.length > 0) throw new IntegrityError(`${manifest.model}@${manifest.version}: ${audit.faults.length} of ${audit.shardsChecked} shards missing or damaged in ${where}`)
}

export function ledgerCommands (program: Command): void {
  program.command('versions')
    .description('a model\'s version history: ledger index of each version, where the release channels point, and the witnesses that cosigned the log\'s checkpoint')
    .argument('<name>', 'model name', modelName)
    .addOption(coordinatorOption())
    .option('--units', 'also list every unit of the latest version with its access level (what ingest --access names)')
    .option('--token <token>', 'an operator\'s API token (or BLOCKFED_TOKEN): adds how many runtimes rejected, or rolled back from, each version')
    .option('--data <dir>', 'read the admin token from this coordinator data dir (for the verdicts)')
    .option('--json', 'print JSON')
    .action(async (name: string, o: { coordinator: string, units?: boolean, token?: string, data?: string, json?: boolean }) => {
      const client = coordinatorClient({ baseUrl: o.coordinator })
      const versions = await client.versions(name)
      // Runtimes' verdicts are an operator's to read: without a token the listing stays public.
      let bearer = await token(o)
      let said: Awaited<ReturnType<typeof client.verdicts>> = []
      if (bearer !== undefined) {
        try {
          said = await coordinatorClient({ baseUrl: o.coordinator, token: bearer }).verdicts(name)
        } catch (err) {
          // An edge token in BLOCKFED_TOKEN (a runtime's), or a coordinator from before verdicts,
          // does not make the public listing fail; said only when the token was asked for.
          if (!(err instanceof AccessDeniedError || err instanceof NotFoundError)) throw err
          if (o.token !== undefined || o.data !== undefined) console.error(`blockfed: runtimes' verdicts not shown: ${err.message}`)
          bearer = undefined
        }
      }
      const verdicts = new Map(said.map(v => [v.version, v]))
      // What a round request may name in `trainable`, read from the latest manifest (shown, not trusted: `verify` checks it).
      const latest = versions.at(-1)
      let units: string[] = []
      let levels = new Map<string, string>()
      let untrainable: string | undefined
      if (latest !== undefined) {
        const parsed = signedManifestSchema.safeParse(await client.manifest(name, latest.version))
        if (!parsed.success) throw new IntegrityError(`${name}@${latest.version}: the coordinator's manifest does not parse: ${describeIssues(parsed.error)}`)
        untrainable = untrainableFormat(parsed.data.manifest.format)
        units = untrainable === undefined ? trainableUnits(parsed.data.manifest.tensors) : []
        levels = levelsIn(parsed.data.manifest)
      }
      const note = await ledgerClient({ baseUrl: o.coordinator }).checkpoint()
      const { text, signatures } = splitNote(note)
      const checkpoint = parseCheckpoint(text)
      // Names only: whether a cosignature verifies is for a client that knows the witness's key.
      const cosigners = signatures.map(s => s.name).filter(n => n !== checkpoint.origin)
      const rows = versions.map(v => ({ ...v, covered: v.ledgerIndex !== null && v.ledgerIndex < checkpoint.size }))
      const channels = await ledgerClient({ baseUrl: o.coordinator }).channels(name)
      if (o.json === true) {
        console.log(JSON.stringify({ versions: rows.map(v => ({ ...v, ...(bearer === undefined ? {} : { rejected: verdicts.get(v.version)?.rejected ?? 0, rolledBack: verdicts.get(v.version)?.rolledBack ?? 0 }) })), trainableUnits: units, levels: Object.fromEntries(levels), channels, checkpoint: { origin: checkpoint.origin, size: checkpoint.size, root: toBase64(checkpoint.root), cosigners } }))
        return
      }
      for (const v of rows) {
        console.log(`${name}@${v.version}  parent ${v.parent ?? '-'}  ledger #${v.ledgerIndex ?? '-'}${v.covered ? '' : ' (not yet in a checkpoint)'}  ${v.blocks} blocks  ${v.weightBytes} bytes  ${v.createdAt}  ${v.round === null ? 'ingest' : `round ${v.round}`}  ${v.manifestCid}${describeVerdicts(verdicts.get(v.version))}`)
      }
      console.log(`trainable units of ${name}@${latest?.version ?? '-'} (a round's "trainable"): ${untrainable !== undefined ? `none (${untrainable})` : units.length === 0 ? 'none (no plain float32 tensors)' : units.join(', ')}`)
      console.log(describeLevels(`${name}@${latest?.version ?? '-'}`, levels, o.units === true))
      if (o.units === true) for (const [unit, level] of levels) console.log(`  ${unit}  ${level}`)
      console.log(describeChannels(channels))
      console.log(`checkpoint ${checkpoint.origin} size ${checkpoint.size} root ${toBase64(checkpoint.root)}`)
      console.log(`cosigned by ${cosigners.length === 0 ? 'no witness' : cosigners.join(', ')}`)
    })

  program.command('verify')
    .description('check a version end to end as a runtime would: manifest signature, checkpoint signature and witnesses, consistency with the checkpoint this machine last trusted, inclusion, every block\'s hashes; exits 1 on any failure')
    .argument('<model>', 'NAME@VERSION (or NAME for the latest)', modelRef)
    .addOption(coordinatorOption())
    .option('--token <token>', 'API token (or BLOCKFED_TOKEN); the block keys are needed to check plaintext hashes')
    .option('--data <dir>', 'read the admin token from this coordinator data dir')
    .option('--coordinator-key <hex>', 'pin the coordinator\'s Ed25519 key instead of trusting it on first use', (v: string) => { try { parsePublicKeyHex(v, 'an Ed25519 public key'); return v } catch (err) { throw new InvalidArgumentError((err as Error).message) } })
    .option('--witness <vkey>', 'a witness verifier key whose cosignature counts; repeatable', witnessKey, [])
    .option('--min-witnesses <k>', 'cosignatures required from those witnesses', integer(0, 64), 0)
    .option('--shards', 'also check every shard of every block (parity too, cached blocks too) against its CID: the files in --data\'s blocks folder when --data is given, else as the coordinator serves them (from memory for shards it served lately); exits 1 if any is missing or damaged')
    .option('--home <dir>', 'where the trusted checkpoint, keys and cached blocks are kept', join(homedir(), '.blockfed'))
    .action(async (ref: { name: string, version: number | 'latest' }, o: { coordinator: string, token?: string, data?: string, coordinatorKey?: string, witness: string[], minWitnesses: number, shards?: boolean, home: string }) => {
      if (o.minWitnesses > o.witness.length) throw new InvalidArgumentError(`--min-witnesses ${o.minWitnesses}: only ${o.witness.length} --witness key(s) given, whose cosignatures are the ones that count`)
      const apiToken = await token(o)
      if (apiToken === undefined) throw new AccessDeniedError('verify needs an API token (--token, BLOCKFED_TOKEN or --data) to fetch the block keys')
      const home = resolve(o.home)
      // The cache there held by a concurrent pull or verify is said as --home in use.
      await interruptible(async signal => await onHome('--home', o.home, async () => await inCommandModelDir(home, 'verify', ref.name, async modelDir => {
        const runtime = await createNodeRuntime({ dataDir: home, token: apiToken, tokenFrom: tokenSource(o) })
        try {
          const config = {
            version: '1', tag: 'verify', runtime: 'tfjs', source: 'blockfed', modelDir, modelName: ref.name,
            updateURL: o.coordinator, ledger: { witnesses: o.witness, minWitnesses: o.minWitnesses },
            ...(o.coordinatorKey === undefined ? {} : { coordinatorKey: o.coordinatorKey })
          }
          const fetched = await runtime.fetch(config, ref.version, signal)
          const m = fetched.manifest
          // Kept state re-verified is not the coordinator verified: a runtime would serve it, a check must not pass on it.
          if (fetched.offline) throw new UnavailableError(`${m.model}@${m.version}: the coordinator at ${o.coordinator} is unreachable; only what ${home} kept could be checked, and it verifies, but nothing was verified against the coordinator`)
          const { checkpoint, cosigners, keptSize } = fetched.checkpoint
          const trusted = keptSize === null || keptSize === undefined
            ? `first use of this log here: no checkpoint was kept in ${home}, this one is now`
            : `consistent with the checkpoint of size ${keptSize} kept in ${home}`
          console.log(`${m.model}@${m.version} verified`)
          console.log(`  manifest   ${fetched.signed.cid} signed by coordinator key ${fetched.signed.signature.keyId}`)
          console.log(`  checkpoint ${checkpoint.origin} size ${checkpoint.size}, log signature ok${cosigners.length === 0 ? '' : `, cosigned by ${cosigners.join(', ')}`}, ${trusted}`)
          console.log(`  inclusion  entry #${fetched.ledgerIndex} names this manifest and is included under root ${toBase64(checkpoint.root)}`)
          console.log(`  blocks     ${m.blocks.length} blocks: CIDs and plaintext sha-256 ok (${fetched.report.fromCache} from cache, ${fetched.report.bytesFetched} bytes fetched)`)
          // Tolerated by the load (k of k+m were enough), but each one is a shard lost on the way or on the coordinator's disk.
          for (const f of fetched.report.faults) console.log(`  tolerated  block ${f.block} shard ${f.shard}: ${f.reason}`)
          tokenUnused(o, home, fetched.keysFetched)
          if (o.shards !== true) {
            if (fetched.report.faults.length > 0) console.log(`  ${fetched.report.faults.length} shard fault(s) tolerated; verify --shards checks every shard of every block`)
            return
          }
          await auditStore(m, { coordinator: o.coordinator, dataDir: o.data }, signal)
        } finally {
          await runtime.stop()
        }
      })))
    })

  program.command('rollback')
    .description('roll a runtime\'s model back to an earlier anchored version; works with the coordinator down when the blocks are cached')
    .argument('<name>', 'model name', modelName)
    .requiredOption('--to <version>', 'the version to go back to', integer(1, Number.MAX_SAFE_INTEGER))
    .requiredOption('--config <file>', 'the model\'s AoE config')
    .option('--home <dir>', 'the runtime\'s data dir', join(homedir(), '.blockfed'))
    .action(async (name: string, o: { to: number, config: string, home: string }) => {
      const config = await loadAoeConfig(o.config)
      if (config.modelName !== name) throw new InvalidInputError(`${o.config} configures model ${config.modelName}, not ${name}`)
      // The runtime says so too, naming only the folder; here, before anything is made in HOME, with the flag.
      const recorded = join(resolve(o.home), config.modelDir, 'versions.json')
      if (!existsSync(recorded)) throw new InvalidInputError(`--home ${o.home}: no version of ${name} is recorded there (${recorded} is missing), so there is nothing to roll back from; give the runtime's data dir (the dataDir it was created with)`)
      await interruptible(async signal => await onHome('--home', o.home, async () => {
        const runtime = await createNodeRuntime({ dataDir: resolve(o.home) })
        try {
          const change = await runtime.rollback(o.config, o.to, signal)
          console.log(`${name}: ${change.from} → ${change.to} (${change.reason}); ${change.bytesFetched} bytes fetched; version ${change.from} will not be taken again`)
        } finally {
          await runtime.stop()
        }
      }))
    })

  program.command('channel')
    .description('show a model\'s release channels, or point one at an anchored version (canary: with the fraction of clients that take it); `stable latest` makes stable follow every new version again, `canary off` ends the canary')
    .argument('<name>', 'model name', modelName)
    .argument('[channel]', 'stable | canary (leave out to show both)', (v: string) => { if (v !== 'stable' && v !== 'canary') throw new InvalidArgumentError('expected stable or canary'); return v })
    .argument('[version]', 'a version number; latest (stable) or off (canary) to clear the channel', channelTarget)
    .option('--rollout <fraction>', 'canary: fraction of clients in (0, 1] (default: the canary\'s rollout so far, else 1)', number(0, 1, { min: true }))
    .addOption(coordinatorOption())
    .option('--token <token>', 'API token (or BLOCKFED_TOKEN)')
    .option('--data <dir>', 'read the admin token from this coordinator data dir')
    .option('--json', 'print JSON')
    .action(async (name: string, channel: ChannelName | undefined, target: number | 'latest' | 'off' | undefined, o: { rollout?: number, coordinator: string, token?: string, data?: string, json?: boolean }) => {
      if (o.rollout === 0) throw new InvalidArgumentError('--rollout must be above 0')
      if (channel === undefined) {
        if (o.rollout !== undefined) throw new InvalidArgumentError('--rollout needs a channel and a version: channel NAME canary VERSION --rollout F')
        const channels = await ledgerClient({ baseUrl: o.coordinator }).channels(name)
        console.log(o.json === true ? JSON.stringify(channels) : describeChannels(channels))
        return
      }
      if (target === undefined) throw new InvalidArgumentError(`channel ${name} ${channel}: give a version${channel === 'stable' ? ', or latest to follow every new version' : ', or off to end the canary'}`)
      if (target === 'latest' && channel !== 'stable') throw new InvalidArgumentError('latest applies to the stable channel only (canary off ends the canary)')
      if (target === 'off' && channel !== 'canary') throw new InvalidArgumentError('off applies to the canary channel only (stable latest makes stable follow every new version)')
      if (typeof target !== 'number' && o.rollout !== undefined) throw new InvalidArgumentError(`--rollout cannot be given with ${target}`)
      const bearer = await token(o)
      if (bearer === undefined) throw new AccessDeniedError('channel needs an API token that may ingest (--token, BLOCKFED_TOKEN or --data)')
      const client = coordinatorClient({ baseUrl: o.coordinator, token: bearer })
      if (typeof target !== 'number') {
        const channels = await client.clearChannel(name, channel)
        console.log(o.json === true ? JSON.stringify(channels) : describeChannels(channels))
        return
      }
      const set = await client.setChannel(name, channel, { version: target, ...(o.rollout === undefined ? {} : { rollout: o.rollout }) })
      console.log(o.json === true ? JSON.stringify(set) : `${name} ${channel} → ${set.version}${channel === 'canary' ? ` (rollout ${set.rollout})` : ''}`)
    })

  program.command('witness')
    .description('run a witness: verifies each new checkpoint of the logs it knows is consistent with the last one it cosigned, then cosigns it (C2SP tlog-witness)')
    .requiredOption('--data <dir>', 'data directory (key created on first start, mode 0600; state)')
    .requiredOption('--name <name>', 'the witness\'s key name, e.g. witness.example/w1')
    .requiredOption('--log <vkey>', 'a log to witness, by its verifier key (GET /ledger/key); repeatable', logKey, [])
    .option('--port <port>', 'TCP port', port, 7072)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (o: { data: string, name: string, log: Array<{ origin: string, vkey: string }>, port: number, host: string }) => {
      // The empty default makes commander take --log as given: checked here, before the key is made.
      if (o.log.length === 0) throw new InvalidArgumentError('--log: name at least one log to witness, by its verifier key (GET /ledger/key of its coordinator)')
      await folderOption('--data', o.data)
      const witness = await firstStartCleaned(o.data, async () => await createWitness({ dataDir: resolve(o.data), name: o.name, logs: o.log, port: o.port, host: o.host }).catch((err: unknown) => { throw listenFailure(err, o.host, o.port) }))
      serveUntilStopped(async () => await witness.close())
      console.log(`blockfed witness listening on ${witness.url}`)
      console.log(`  verifier key ${witness.vkey}`)
      console.log(`  coordinator  --witness ${witness.url}=${witness.vkey}`)
    })
}

/** One line: the units at each level other than the default, and how many are at the default; `listed`: the lines below list every unit. */
function describeLevels (version: string, levels: ReadonlyMap<string, string>, listed: boolean): string {
  const hint = listed ? ':' : ' (--units lists them)'
  const by = new Map<string, string[]>()
  for (const [unit, level] of levels) by.set(level, [...(by.get(level) ?? []), unit])
  const atDefault = by.get(DEFAULT_ACCESS_LEVEL)?.length ?? 0
  by.delete(DEFAULT_ACCESS_LEVEL)
  if (by.size === 0) return `access levels of ${version}: every unit (${atDefault}) at ${DEFAULT_ACCESS_LEVEL}${hint}`
  const raised = [...by].sort(([a], [b]) => a.localeCompare(b)).map(([level, list]) => `${level}: ${list.slice(0, 10).join(', ')}${list.length > 10 ? `, … (${list.length})` : ''}`)
  return `access levels of ${version}: ${raised.join('; ')}; ${atDefault} unit(s) at ${DEFAULT_ACCESS_LEVEL}${hint}`
}

/** What runtimes said of a version, when any did: `  rejected by 2 runtime(s), rolled back from by 1`. */
function describeVerdicts (v: { rejected: number, rolledBack: number } | undefined): string {
  if (v === undefined) return ''
  const said = [...(v.rejected > 0 ? [`rejected by ${v.rejected} runtime(s)`] : []), ...(v.rolledBack > 0 ? [`rolled back from by ${v.rolledBack}`] : [])]
  return said.length === 0 ? '' : `  ${said.join(', ')}`
}
