/**
 * API tokens from the command line, over /v1/tokens (coordinator/http/token-routes.ts):
 *   token create ROLE [--label TEXT] [--expires DURATION]
 *                                      make a token and print it (shown this once only)
 *   token list                         every token by id, role, when made, expires, last used, revoked, label
 *   token revoke ID... | --label TEXT  they open nothing from now on; their round connections close
 * Each needs an admin token (--token, BLOCKFED_TOKEN or --data).
 */
import { InvalidArgumentError, type Command } from 'commander'
import ms from 'ms'
import { coordinatorClient, type CoordinatorClient } from '../../shared/client/coordinator-client.ts'
import { accessLevelSchema, LABEL_FORBIDDEN, MAX_TOKEN_LEVELS, MAX_TOKEN_MODELS, modelScopeSchema, TOKEN_MAX_LIFETIME_S, tokenIdSchema, tokenLabelSchema, type TokenInfo } from '../../shared/client/api-schemas.ts'
import { AccessDeniedError } from '../../shared/errors/errors.ts'
import { ROLES } from '../constants.ts'
import { coordinatorOption, token } from './args.ts'

interface Access { coordinator: string, token?: string, data?: string }

function access (command: Command): Command {
  return command
    .addOption(coordinatorOption())
    .option('--token <token>', 'an admin API token (or BLOCKFED_TOKEN)')
    .option('--data <dir>', 'read the admin token from this coordinator data dir')
}

async function client (o: Access, what: string): Promise<CoordinatorClient> {
  const bearer = await token(o)
  if (bearer === undefined) throw new AccessDeniedError(`${what} needs an admin API token (--token, BLOCKFED_TOKEN or --data)`)
  return coordinatorClient({ baseUrl: o.coordinator, token: bearer })
}

const role = (value: string): string => {
  if (!Object.hasOwn(ROLES, value)) throw new InvalidArgumentError(`expected ${Object.keys(ROLES).join(', ')}`)
  return value
}

const tokenId = (value: string): string => {
  const parsed = tokenIdSchema.safeParse(value)
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? 'not a token id')
  return parsed.data
}

const label = (value: string): string => {
  const parsed = tokenLabelSchema.safeParse(value)
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? 'not a label')
  return parsed.data
}

/** `--model kiosk-*`, repeated: what the token is limited to. */
const modelScope = (value: string, previous: string[] = []): string[] => {
  const parsed = modelScopeSchema.safeParse(value)
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? 'not a model name')
  if (previous.length >= MAX_TOKEN_MODELS) throw new InvalidArgumentError(`at most ${MAX_TOKEN_MODELS} models (use a prefix: kiosk-*)`)
  return [...previous, parsed.data]
}

/** `--level premium`, repeated: access levels the token reads beyond its role's. */
const level = (value: string, previous: string[] = []): string[] => {
  const parsed = accessLevelSchema.safeParse(value)
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]?.message ?? 'not an access level')
  if (previous.length >= MAX_TOKEN_LEVELS) throw new InvalidArgumentError(`at most ${MAX_TOKEN_LEVELS} levels`)
  return [...previous, parsed.data]
}

/** `--expires 90d`: a lifetime in seconds, from `ms`'s units (s, m, h, d, w, y); a bare number is refused (ms would read milliseconds). */
const lifetime = (value: string): number => {
  const millis = /[a-z]\s*$/i.test(value.trim()) ? ms(value as ms.StringValue) : undefined
  if (millis === undefined || !Number.isFinite(millis)) throw new InvalidArgumentError('expected a duration with its unit: 3600s, 90m, 12h, 30d, 8w, 1y')
  const seconds = Math.round(millis / 1000)
  if (seconds < 60 || seconds > TOKEN_MAX_LIFETIME_S) throw new InvalidArgumentError(`a token lives from 1 minute to 10 years; ${value} is ${seconds} s (leave --expires out for one that never expires)`)
  return seconds
}

/** A stored label as text that cannot act on the terminal (labels made before the rule, or by another client). */
const shown = (text: string): string => text.replace(new RegExp(LABEL_FORBIDDEN.source, 'gu'), c => `\\u{${c.codePointAt(0)?.toString(16) ?? ''}}`)

function line (t: TokenInfo, now = Date.now()): string {
  const expires = t.expiresAt ?? null
  const state = t.revokedAt !== null
    ? `revoked ${shown(t.revokedAt)}`
    : expires !== null && Date.parse(expires) <= now ? `expired ${shown(expires)}` : expires !== null ? `active, expires ${shown(expires)}` : 'active'
  const used = t.lastUsedAt === undefined ? '' : `  last used ${t.lastUsedAt === null ? 'never' : shown(t.lastUsedAt)}`
  const file = t.adminFile === true ? '  (admin.token)' : ''
  // A prefix made before they had to end in a separator (review 49d) opens more than it seems.
  const loose = t.models?.some(m => /[^._-]\*$/.test(m)) === true ? ' (a prefix without a separator also opens longer names: kiosk* opens kiosks-admin; make a new token with kiosk-*)' : ''
  const models = t.models == null ? '' : `  models ${t.models.map(shown).join(',')}${loose}`
  const levels = t.levels === undefined || t.levels.length === 0 ? '' : `  levels ${t.levels.map(shown).join(',')}`
  return `${t.id}  ${shown(t.role).padEnd(9)}  ${shown(t.createdAt)}  ${state}${used}${file}${models}${levels}${t.label === null ? '' : `  ${shown(t.label)}`}`
}

export function tokenCommands (program: Command): void {
  const tokens = program.command('token').description('API tokens: make, list and revoke them (an admin token)')

  access(tokens.command('create'))
    .description('make an API token of a role and print it: edge (load models, take part in rounds), publisher (ingest, start rounds), admin (all that, and manage tokens)')
    .argument('<role>', 'edge | publisher | admin', role)
    .option('--label <text>', 'whose token it is, as token list shows it', label)
    .option('--expires <duration>', 'the token stops opening anything after this long: 12h, 30d, 1y (1 minute to 10 years; never when left out)', lifetime)
    .option('--model <name>', 'limit the token to this model (repeat for more; a prefix ending in a separator and * for a family: kiosk-*): its data keys, ingests, rounds and channels; every model when left out (not for admin tokens)', modelScope)
    .option('--level <level>', 'an access level the token reads beyond its role\'s (repeat for more): the data keys of blocks ingested at that level (ingest --access); edge tokens only, admin and publisher tokens read every level', level)
    .option('--json', 'print JSON: the token, its id, role, expiry, models and levels')
    .action(async (r: string, o: Access & { label?: string, expires?: number, model?: string[], level?: string[], json?: boolean }) => {
      const made = await (await client(o, 'token create')).issueToken({ role: r, ...(o.label === undefined ? {} : { label: o.label }), ...(o.expires === undefined ? {} : { expiresInSeconds: o.expires }), ...(o.model === undefined ? {} : { models: o.model }), ...(o.level === undefined ? {} : { levels: o.level }) })
      if (o.json === true) { console.log(JSON.stringify(made)); return }
      // The token alone on stdout (TOKEN=$(blockfed token create edge)); what names it on stderr.
      console.log(made.token)
      if (made.id !== undefined) console.error(`token id ${made.id} (token list and token revoke name it so)${made.expiresAt == null ? '' : `; expires ${made.expiresAt}`}${made.models == null ? '' : `; models ${made.models.join(', ')}`}${made.levels === undefined || made.levels.length === 0 ? '' : `; levels ${made.levels.join(', ')}`}`)
    })

  access(tokens.command('list'))
    .description('every API token by id (never the token itself), role, when made, whether revoked, and label')
    .option('--json', 'print JSON')
    .action(async (o: Access & { json?: boolean }) => {
      const list = await (await client(o, 'token list')).tokens()
      if (o.json === true) { console.log(JSON.stringify({ tokens: list })); return }
      for (const t of list) console.log(line(t))
    })

  access(tokens.command('revoke'))
    .description('revoke API tokens by id (token list shows ids), or every active one with a label (a fleet given one): they open nothing from now on, and the round connections opened with them are closed')
    .argument('[ids...]', 'the tokens\' ids', (value: string, previous: string[] = []) => [...previous, tokenId(value)])
    .option('--label <text>', 'every active token with this label', label)
    .option('--json', 'print JSON, a line per token revoked')
    .action(async (ids: string[], o: Access & { label?: string, json?: boolean }) => {
      if (ids.length === 0 && o.label === undefined) throw new InvalidArgumentError('name the tokens to revoke: their ids (token list shows them), or --label for every active token with a label')
      const api = await client(o, 'token revoke')
      const chosen = new Set(ids)
      if (o.label !== undefined) {
        const labelled = (await api.tokens()).filter(t => t.label === o.label && t.revokedAt === null)
        if (labelled.length === 0) throw new InvalidArgumentError(`--label ${JSON.stringify(o.label)}: no active token has this label (token list shows labels)`)
        for (const t of labelled) chosen.add(t.id)
      }
      // One at a time, each said as it is done: a failure part-way leaves those before it revoked, and shown.
      for (const id of chosen) {
        const done = await api.revokeToken(id)
        if (o.json === true) { console.log(JSON.stringify(done)); continue }
        console.log(`revoked ${line(done)}`)
        if (done.closedConnections > 0) console.log(`  closed ${done.closedConnections} round connection(s) opened with it`)
        if (done.replacedAdminToken) console.log('  it was the coordinator\'s admin.token, which now holds a new admin token')
      }
    })
}
