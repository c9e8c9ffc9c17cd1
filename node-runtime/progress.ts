/**
 * Progress bars for long CLI operations (cli-progress), shown only on a terminal so that logs
 * and pipes stay clean.
 */
import cliProgress from 'cli-progress'

export interface Progress {
  update: (done: number, total: number) => void
  stop: () => void
}

export function progressBar (label: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY !== true) return { update: () => {}, stop: () => {} }
  const bar = new cliProgress.SingleBar({
    format: `${label.padEnd(10)} {bar} {percentage}% | {value}/{total}`,
    stream,
    hideCursor: true,
    clearOnComplete: false
  }, cliProgress.Presets.shades_classic)
  let started = false
  return {
    update (done, total) {
      if (!started) { bar.start(total, 0); started = true }
      bar.setTotal(total)
      bar.update(done)
    },
    stop () { if (started) bar.stop() }
  }
}
