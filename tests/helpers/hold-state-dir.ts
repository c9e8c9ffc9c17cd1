/**
 * Child process of given.test: holds a participant state dir (node-runtime/fl/given.ts,
 * `holdStateDir`) until it is killed, and says so on stdout once it does.
 * Usage: node hold-state-dir.ts DIR
 */
import { holdStateDir } from '../../node-runtime/fl/given.ts'

const dir = process.argv[2]
if (dir === undefined) {
  console.error('usage: node hold-state-dir.ts DIR')
  process.exit(2)
}
holdStateDir(dir)
process.stdout.write('held\n')
// Held until killed: the OS lets the lock go with the process.
setInterval(() => {}, 1 << 30)
