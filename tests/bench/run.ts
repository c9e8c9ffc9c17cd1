/**
 * `npm run bench -- NAME`: runs tests/bench/NAME.bench.ts, which prints one JSON object with its
 * figure, the reference measured in the same run, and their ratio.
 */
import { readdir } from 'node:fs/promises'

const name = process.argv[2]
const available = (await readdir(new URL('.', import.meta.url))).filter(f => f.endsWith('.bench.ts')).map(f => f.slice(0, -'.bench.ts'.length))
if (name === undefined || !available.includes(name)) {
  console.error(`usage: npm run bench -- NAME   (NAME: ${available.join(', ')})`)
  process.exit(2)
}
await import(`./${name}.bench.ts`)
