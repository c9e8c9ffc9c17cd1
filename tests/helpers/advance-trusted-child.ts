/**
 * Child process of ledger-trust-processes.test: advances DATA's trusted checkpoint of the honest
 * log H to SIZE (node-runtime/versions/ledger-trust.ts, advanceTrusted), pausing before its
 * consistency proof until GATE exists; says "at gate" on stdout when it pauses, "saved" when done.
 * Usage: node advance-trusted-child.ts DATA SIZE GATE
 */
import { existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { advanceTrusted } from '../../node-runtime/versions/ledger-trust.ts'
import { forkClient, forkTrust, H } from './ledger-fork.ts'

const [data, size, gate] = process.argv.slice(2)
if (data === undefined || size === undefined || gate === undefined) {
  console.error('usage: node advance-trusted-child.ts DATA SIZE GATE')
  process.exit(2)
}
const client = forkClient(H, Number(size), async () => {
  process.stdout.write('at gate\n')
  while (!existsSync(gate)) await sleep(10)
})
await advanceTrusted(data, forkTrust, client)
process.stdout.write('saved\n')
