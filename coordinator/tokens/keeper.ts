/**
 * The coordinator's API tokens: the data dir's own admin token (`<data>/admin.token`), issuing,
 * listing and revoking, the check a round connection passes, and the write-behind of last uses.
 * HTTP requests are checked by coordinator/http/auth.ts with the same words (tokenRefusal).
 */
import { readdir, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { TokenInfo, TokenRevoked } from '../../shared/client/api-schemas.ts'
import { UnavailableError } from '../../shared/errors/errors.ts'
import { readIfExists, syncDir, writeFileAtomic, writeTemporary } from '../../node-runtime/atomic-file.ts'
import { issueToken, mintToken, revokeToken, tokenHash, tokenIdOf, tokenRefusal, type TokenScope } from '../http/auth.ts'
import type { Database } from '../store/database.ts'
import type { Repository } from '../store/repository.ts'
import { ROLES, TOKEN_USE_FLUSH_MS } from '../constants.ts'

/** How issueToken forms a token: `bf_` and 32 random bytes in hex. */
const TOKEN_FORM = /^bf_[0-9a-f]{64}$/

export interface TokenKeeperOptions {
  dataDir: string
  database: Database
  repo: Repository
  /** Closes the round connections opened with a token id; how many there were. */
  cut: (tokenId: string, reason: string) => number
}

/**
 * A round connection's token: its id and expiry (ms since the epoch) when it may train, else why
 * not, with the status that says it: 401 for a token that opens nothing, 403 for a role that may not train.
 */
/**
 * `models`: what the token is limited to (null or absent: every model); `reads`: the block access
 * levels whose keys it gets (its role's and those it was given).
 */
export type TrainerAnswer = { tokenId: string, expiresAt?: number, models?: string[] | null, reads?: string[] } | { refused: string, status: 401 | 403 }

export interface TokenKeeper {
  /** The token in admin.token (renewed when revoked). */
  readonly adminToken: string
  /** Issues a token (`expiresInSeconds` from now; never expires when absent). */
  issue: (role: string, label: string | null, expiresInSeconds?: number, scope?: TokenScope) => ReturnType<typeof issueToken>
  /** Every token by id (never the token), last uses written first, admin.token's marked. */
  list: () => TokenInfo[]
  /** Revokes the token with this id: its round connections close, admin.token is renewed if it held it. */
  revoke: (id: string) => Promise<TokenRevoked>
  /** A round connection's token: its id and expiry (ms since the epoch) when it may train, else why not. */
  trainer: (token: string) => Promise<TrainerAnswer>
  /** Writes the last uses still in memory and stops the timer that writes them. */
  stop: () => void
}

export async function tokenKeeper ({ dataDir, database, repo, cut }: TokenKeeperOptions): Promise<TokenKeeper> {
  const path = join(dataDir, 'admin.token')
  let admin = await adminToken(path, repo)
  let adminHash = await tokenHash(admin)
  /** Revokes run one at a time: one that revoked admin.token's successor while it was being written left a revoked admin.token. */
  let revoking: Promise<unknown> = Promise.resolve()
  // A failed write (disk full, the database locked) must not end the process from a timer: the
  // uses stay noted and the next flush tries again (review 42c).
  const flush = (): void => { try { repo.flushTokenUses() } catch {} }
  const flusher = setInterval(flush, TOKEN_USE_FLUSH_MS)
  flusher.unref()

  /**
   * Revokes a token; one that held round connections has them closed, and the data dir's own
   * admin token is renewed in admin.token at once (`--data` commands go on working). The
   * successor is written beside admin.token first, and its row commits with the revoke. A data
   * dir that cannot take it does not stop the revoke (a revoke is what an incident needs), but
   * no successor row is made, and the answer says the token was revoked and admin.token not renewed.
   */
  const revokeNow = async (id: string): Promise<TokenRevoked> => {
    flush()
    const [target, ...more] = repo.tokensByPrefix(id)
    const renew = target !== undefined && more.length === 0 && target.hash === adminHash && target.revokedAt === null
    let next: { token: string, hash: string, tmp: string } | undefined
    let unwritable: unknown
    if (renew) {
      const minted = await mintToken()
      try {
        next = { ...minted, tmp: await writeTemporary(path, `${minted.token}\n`, 0o600) }
      } catch (err) {
        unwritable = err
      }
    }
    let revoked: ReturnType<typeof revokeToken>
    try {
      revoked = database.transaction(() => {
        const row = revokeToken(repo, id)
        if (next !== undefined) repo.insertToken(next.hash, 'admin', `replaced revoked admin token ${id}`)
        return row
      })
    } catch (err) {
      if (next !== undefined) await rm(next.tmp, { force: true })
      throw err
    }
    const closedConnections = cut(id, 'the API token of this connection was revoked')
    if (next !== undefined) {
      admin = next.token
      adminHash = next.hash
      // Same folder, file already written and synced: a rename. Should it fail, the next start renews admin.token.
      await rename(next.tmp, path)
      await syncDir(dataDir)
    }
    if (unwritable !== undefined) {
      throw new UnavailableError(`API token ${id} was revoked, but it was ${path}'s and no new admin token could be written there (${(unwritable as NodeJS.ErrnoException).code ?? (unwritable as Error).message}): --data commands are refused until the coordinator starts again with that file writable; use another admin token meanwhile`, { cause: unwritable })
    }
    const { hash: _, ...row } = revoked
    return { id, ...row, replacedAdminToken: next !== undefined, closedConnections }
  }

  return {
    get adminToken () { return admin },
    issue: async (role, label, expiresInSeconds, scope) => await issueToken(repo, role, label, expiresInSeconds, scope),
    list () {
      flush()
      return repo.tokens().map(({ hash, ...row }) => ({ id: tokenIdOf(hash), ...row, adminFile: hash === adminHash }))
    },
    async revoke (id) {
      const turn = revoking.then(async () => await revokeNow(id))
      revoking = turn.catch(() => undefined)
      return await turn
    },
    async trainer (token) {
      const hash = await tokenHash(token)
      const row = repo.token(hash)
      const refused = tokenRefusal(row)
      if (refused !== undefined || row === undefined) return { refused: refused ?? 'unknown API token', status: 401 }
      if (ROLES[row.role]?.train !== true) return { status: 403, refused: 'this API token may not take part in rounds: only edge-role tokens train (admin and publisher tokens operate); make one with `blockfed token create edge` or POST /v1/tokens {"role":"edge"}' }
      repo.noteTokenUse(hash)
      return { tokenId: tokenIdOf(hash), models: row.models, reads: [...(ROLES[row.role]?.access ?? []), ...row.levels], ...(row.expiresAt === null ? {} : { expiresAt: Date.parse(row.expiresAt) }) }
    },
    stop () {
      clearInterval(flusher)
      flush()
    }
  }
}

/** A token read from a file, with its hash and stored row; undefined when it is not of a token's form. */
async function storedToken (token: string | undefined, repo: Repository): Promise<{ token: string, hash: string, row: ReturnType<Repository['token']> } | undefined> {
  if (token === undefined || !TOKEN_FORM.test(token)) return undefined
  const hash = await tokenHash(token)
  return { token, hash, row: repo.token(hash) }
}

/** The token is stored as an admin's, neither revoked nor expired. */
const activeAdmin = (stored: Awaited<ReturnType<typeof storedToken>>): boolean =>
  stored?.row?.role === 'admin' && tokenRefusal(stored.row) === undefined

/**
 * After a stop between a revoke's commit and admin.token's renewal (review 46f): the successor
 * the revoke committed, its temporary file still beside admin.token, is put in place; successors
 * with no file (a temporary since removed as stale) are revoked, so no active admin token is left
 * that nobody holds; other temporaries of admin.token (tokens minted and never stored) go.
 */
async function successorOf (path: string, repo: Repository, revokedId: string): Promise<string | undefined> {
  const label = `replaced revoked admin token ${revokedId}`
  const temporaries = (await readdir(dirname(path)).catch(() => [] as string[]))
    .filter(name => name.startsWith(`${basename(path)}.`) && name.endsWith('.tmp'))
    .map(name => join(dirname(path), name))
  let adopted: { token: string, hash: string } | undefined
  for (const tmp of temporaries) {
    const stored = await storedToken((await readIfExists(tmp))?.trim(), repo)
    if (adopted === undefined && stored !== undefined && activeAdmin(stored)) {
      await rename(tmp, path)
      await syncDir(dirname(path))
      adopted = stored
    } else {
      await rm(tmp, { force: true })
    }
  }
  for (const t of repo.tokens()) {
    if (t.label === label && t.revokedAt === null && t.hash !== adopted?.hash) repo.revokeToken(t.hash)
  }
  return adopted?.token
}

/**
 * The token admin.token holds, renewed when there is none, the file was torn by a crash (left
 * empty by an older, in-place write), or its token was revoked or expired (a stop between a
 * revoke's commit and the file's renewal). Safe: a torn file's token was never read by anyone,
 * so its committed row is a token nobody holds.
 */
async function adminToken (path: string, repo: Repository): Promise<string> {
  const kept = (await readIfExists(path))?.trim()
  const stored = await storedToken(kept, repo)
  const row = stored?.row
  if (stored !== undefined && activeAdmin(stored)) return stored.token
  if (stored !== undefined && row?.revokedAt != null) {
    const successor = await successorOf(path, repo, tokenIdOf(stored.hash))
    if (successor !== undefined) return successor
  }
  // A missing file is a first start only where no admin token was ever made (review 46a: a
  // deleted admin.token's successor was labelled as the first, beside the first still active).
  const missing = repo.tokens().some(t => t.role === 'admin') ? 'replaced a missing admin.token' : 'created on first start'
  const why = kept === undefined ? missing : row === undefined ? 'replaced a torn admin.token' : 'replaced a revoked admin.token'
  const { token } = await issueToken(repo, 'admin', why)
  await writeFileAtomic(path, `${token}\n`, 0o600)
  return token
}
