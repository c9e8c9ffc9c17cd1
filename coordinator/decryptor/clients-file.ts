/**
 * The decryptor's enrolled clients from a text file: one client key (64 lowercase hex, the
 * client's Ed25519 public key) per line; blank lines and `#` comments are ignored. Checked here
 * line by line so that a typo names its line, not an index.
 */
import { readFile } from 'node:fs/promises'
import { InvalidConfigError } from '../../shared/errors/errors.ts'
import { clientIdSchema } from '../../aggregation/paillier/schemas.ts'

export async function readClientsFile (path: string): Promise<string[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new InvalidConfigError(`clients file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err })
  }
  const keys: string[] = []
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') continue
    if (!clientIdSchema.safeParse(line).success) throw new InvalidConfigError(`clients file ${path}, line ${i + 1}: expected a client key (64 lowercase hex), got ${JSON.stringify(line.slice(0, 80))}`)
    keys.push(line)
  }
  if (keys.length === 0) throw new InvalidConfigError(`clients file ${path}: no client keys in it`)
  return keys
}
