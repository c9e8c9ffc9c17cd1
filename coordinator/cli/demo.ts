/**
 * `npm start`: the federated-learning demo. A coordinator and 10 Node runtimes on this machine,
 * each runtime holding a non-IID share of the mnist digits (2 classes each), run secure rounds
 * (SecAgg+ masking by default): every round trains locally, uploads masked updates, and publishes
 * a new version in which only changed blocks are new. A progress bar follows each round (on a
 * terminal); a line per round prints test accuracy, participants, bytes up/down and the version.
 */
import cliProgress from 'cli-progress'
import type { SecureMode } from '../../shared/rounds/config.ts'
import { describeGap, describeTarget, simulate, SIMULATION_DEFAULTS, type RoundReport, type SimulationSummary } from './simulate.ts'

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`

/** Runs the demo and prints as it goes; `signal` stops it (everything started is cleaned up). */
export async function runDemo ({ rounds, runtimes, secure, signal }: { rounds: number, runtimes: number, secure: SecureMode, signal?: AbortSignal }): Promise<SimulationSummary> {
  const tty = process.stderr.isTTY === true
  const bar = tty ? new cliProgress.SingleBar({ format: 'round {round} {bar} {value}/{total} steps | {stage}', stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : undefined
  let steps = 0
  let round = 0
  console.log(`blockfed demo: ${runtimes} Node runtimes, 2 digit classes each (non-IID), ${rounds} round(s), secure aggregation: ${secure}`)
  const d = SIMULATION_DEFAULTS
  console.log(`model: MLP 784-${d.hidden.join('-')}-10 (tfjs); test set: 2,000 held-out digits`)
  const skew = d.labelSkew?.method ?? 'none'
  console.log(`clients: ${d.optimizer} lr ${d.learningRate}${d.lrDecay === 1 ? '' : ` × ${d.lrDecay}^(round − 1)`}, ${d.epochs} epoch(s), batch ${d.batchSize}${skew === 'none' ? '' : `, ${skew}`}${d.meanMix > 0 ? `, NaiveMix λ ${d.meanMix} with the securely summed class means (gathered in round 1)` : ''}; server: ${JSON.stringify(d.strategy)}\n`)
  try {
    const summary = await simulate({
      ...SIMULATION_DEFAULTS,
      clients: runtimes,
      rounds,
      partition: 'classes:2',
      secure,
      dropout: 0,
      seed: 1,
      signal,
      onEvent: e => {
        if (bar === undefined) return
        if (e.type === 'state' && e.state === 'open') { round++; steps = 0; bar.start(runtimes * (SIMULATION_DEFAULTS.epochs + 1), 0, { round, stage: 'training' }) }
        if (e.type === 'progress' && 'client' in e) bar.update(++steps, { round, stage: 'training' })
        if (e.type === 'uploaded' && 'client' in e) bar.update(++steps, { round, stage: 'uploads' })
        if (e.type === 'state' && e.state === 'unmasking') bar.update(steps, { round, stage: 'aggregating' })
        if (e.type === 'state' && (e.state === 'published' || e.state === 'failed')) bar.stop()
      },
      onRound: (r: RoundReport) => {
        console.log(`round ${String(r.round).padStart(2)}  accuracy ${r.accuracy === null ? '   -  ' : `${(r.accuracy * 100).toFixed(2)}%`}  participants ${r.participants.uploaded}/${r.participants.offered}  up ${mib(r.bytesUp)}  down ${mib(r.bytesDown)}  → version ${r.version ?? '-'} (${r.changedBlocks ?? '-'} block${r.changedBlocks === 1 ? '' : 's'} changed)  ${(r.roundMs / 1000).toFixed(1)} s${r.reason === null ? '' : `  failed: ${r.reason}`}`)
      }
    })
    console.log('')
    console.log(`federated   ${summary.finalAccuracy === null ? '-' : `${(summary.finalAccuracy * 100).toFixed(2)}%`} after ${summary.rounds} round(s) (${describeTarget(summary)})`)
    if (summary.centralised !== null) console.log(`centralised ${(summary.centralised.accuracy * 100).toFixed(2)}% — same model, pooled data, ${summary.centralised.epochs} epoch(s) (gap ${describeGap(summary)})`)
    return summary
  } finally {
    bar?.stop()
  }
}
