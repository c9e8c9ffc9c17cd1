/**
 * Writes config/aoe-config.schema.json from the zod schema in shared/config/aoe.ts (zod v4's
 * `z.toJSONSchema`), so the published JSON Schema never drifts from what the runtime accepts;
 * tests/node-runtime/config fails when the checked-in file differs.
 *
 * Run: node node-runtime/config/write-schema.ts
 */
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { aoeConfigJsonSchema } from '../../shared/config/aoe.ts'

/** Where the schema is checked in (relative to this source file). */
export const AOE_SCHEMA_PATH = fileURLToPath(new URL('../../config/aoe-config.schema.json', import.meta.url))

/** The file's exact text: two-space JSON and a final newline. */
export function renderAoeConfigSchema (): string {
  return `${JSON.stringify(aoeConfigJsonSchema(), null, 2)}\n`
}

export async function writeAoeConfigSchema (path: string = AOE_SCHEMA_PATH): Promise<void> {
  await writeFile(path, renderAoeConfigSchema())
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await writeAoeConfigSchema()
  console.log(`wrote ${AOE_SCHEMA_PATH}`)
}
