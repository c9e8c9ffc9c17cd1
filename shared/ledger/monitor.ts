/**
 * A log monitor (RFC 9162 §8.3): the client reads every entry of the log once, as checkpoints
 * come to cover it, and checks those entries against each checkpoint's signed root by rebuilding
 * the tree from its compact range — the complete subtrees that make up [0, size), one per 1 bit
 * of the size, so a few hundred bytes whatever the log's length.
 *
 * Why: an inclusion proof shows that a version HAS an entry, never that it has only one. A log
 * can append m@4 twice with two manifests and give each runtime the index of a different one:
 * each verifies its own entry under the same consistent, cosigned checkpoint (a split view). A
 * client that has read every entry under its checkpoint sees both, and refuses the version.
 *
 * Nothing read is kept until the rebuilt root equals the signed one, so entries injected on the
 * way (or a log serving other entries than it signed) never reach the index.
 */
import { z } from 'zod'
import { BASE64_32_BYTES, equalBytes, fromBase64, toBase64 } from '../crypto/bytes.ts'
import { IntegrityError, LedgerSecurityError } from '../errors/errors.ts'
import { parseJsonWith } from '../errors/parse-json.ts'
import type { Checkpoint } from './checkpoint.ts'
import type { LedgerClient } from './client.ts'
import { parseEntry } from './entry.ts'
import { emptyRoot, leafHash, nodeHash, verifyInclusion } from './merkle.ts'

/** What a client knows of the log from reading it: which entries name each version. */
export interface LogView {
  /** Entries [0, size) were read and matched a signed root. */
  readonly size: number
  /** Indices of the entries naming (model, version) among them, in log order. */
  entriesOf: (model: string, version: number) => number[]
}

/** Where the monitor keeps its state between runs (a file in Node). */
export interface MonitorStore {
  load: () => Promise<string | undefined>
  save: (text: string) => Promise<void>
}

/**
 * Entries one advance may read. A log of versions grows by one entry per published version; a
 * checkpoint claiming millions more than were read is a log trying to keep its clients busy.
 */
export const MAX_MONITOR_READ = 1_000_000

interface MonitorState {
  size: number
  /** Compact range of [0, size): subtree hashes, largest (leftmost) first. */
  frontier: Uint8Array[]
  /** model → version → index of its first entry. */
  first: Map<string, Map<number, number>>
  /** `${model}@${version}` → every index naming it, when more than one does. */
  duplicates: Map<string, number[]>
}

const FORMAT = 'blockfed-log-monitor/1'

const stateSchema = z.strictObject({
  format: z.literal(FORMAT),
  size: z.number().int().nonnegative(),
  frontier: z.array(z.string().regex(BASE64_32_BYTES)).max(53),
  first: z.record(z.string(), z.record(z.string().regex(/^[1-9][0-9]{0,15}$/), z.number().int().nonnegative())),
  duplicates: z.array(z.strictObject({ model: z.string(), version: z.number().int().positive(), entries: z.array(z.number().int().nonnegative()).min(2) }))
})

const empty = (): MonitorState => ({ size: 0, frontier: [], first: new Map(), duplicates: new Map() })

/** The number of 1 bits of `size`: how many subtrees its compact range holds. */
function rangeLength (size: number): number {
  let n = 0
  for (let s = size; s > 0; s = Math.floor(s / 2)) n += s % 2
  return n
}

/** MTH of the tree whose compact range this is (RFC 9162 §2.1.1), folded right to left. */
function rootOf (frontier: readonly Uint8Array[]): Uint8Array {
  if (frontier.length === 0) return emptyRoot()
  let root = frontier[frontier.length - 1] as Uint8Array
  for (let i = frontier.length - 2; i >= 0; i--) root = nodeHash(frontier[i] as Uint8Array, root)
  return root
}

/** Adds leaf number `index` (= the old size) to the compact range: it merges once per trailing 1 bit of `index`. */
function push (frontier: Uint8Array[], index: number, leaf: Uint8Array): void {
  let hash = leaf
  for (let i = index; i % 2 === 1; i = (i - 1) / 2) hash = nodeHash(frontier.pop() as Uint8Array, hash)
  frontier.push(hash)
}

/**
 * States parsed lately, with the text they came from: a runtime checks its log at every update,
 * and parsing a 100,000-entry state (1.2 MB) took most of the 163 ms an advance with nothing new
 * cost. A state is used only while its store still holds exactly that text, and is never changed
 * in place (monitorLog copies what it adds to), so a view handed out stays what it was.
 */
const parsed: Array<{ text: string, state: MonitorState }> = []
const PARSED_KEPT = 8

function remember (text: string, state: MonitorState): void {
  const at = parsed.findIndex(p => p.text === text)
  if (at >= 0) parsed.splice(at, 1)
  parsed.unshift({ text, state })
  parsed.length = Math.min(parsed.length, PARSED_KEPT)
}

/** The kept state, or a fresh start when there is none or it cannot be read: it is rebuilt from the log, which still holds everything. */
function decode (text: string | undefined): MonitorState {
  if (text === undefined) return empty()
  const known = parsed.find(p => p.text === text)
  if (known !== undefined) return known.state
  const state = parse(text)
  remember(text, state)
  return state
}

function parse (text: string): MonitorState {
  let saved: z.infer<typeof stateSchema>
  try {
    saved = parseJsonWith(stateSchema, text, 'log monitor state')
  } catch {
    return empty()
  }
  if (saved.frontier.length !== rangeLength(saved.size)) return empty()
  const first = new Map<string, Map<number, number>>()
  for (const [model, versions] of Object.entries(saved.first)) {
    first.set(model, new Map(Object.entries(versions).map(([v, i]) => [Number(v), i])))
  }
  return {
    size: saved.size,
    frontier: saved.frontier.map(fromBase64),
    first,
    duplicates: new Map(saved.duplicates.map(d => [`${d.model}@${d.version}`, d.entries]))
  }
}

function encode (state: MonitorState): string {
  const duplicates = [...state.duplicates].map(([key, entries]) => {
    const at = key.lastIndexOf('@')
    return { model: key.slice(0, at), version: Number(key.slice(at + 1)), entries }
  })
  return JSON.stringify({
    format: FORMAT,
    size: state.size,
    frontier: state.frontier.map(toBase64),
    first: Object.fromEntries([...state.first].map(([model, versions]) => [model, Object.fromEntries(versions)])),
    duplicates
  } satisfies z.infer<typeof stateSchema>)
}

function view (state: MonitorState): LogView {
  return {
    size: state.size,
    entriesOf (model, version) {
      const all = state.duplicates.get(`${model}@${version}`)
      if (all !== undefined) return [...all]
      const index = state.first.get(model)?.get(version)
      return index === undefined ? [] : [index]
    }
  }
}

/** Inclusion proofs asked for, at most, to name the entry that does not match. */
const MAX_LOCATE = 1024

/**
 * The refusal of entries that do not hash to the signed root. It names the first entry whose
 * inclusion proof fails, with that proof — evidence a third party can check against the signed
 * checkpoint — when one is found among the first MAX_LOCATE.
 */
async function mismatch (client: LedgerClient, checkpoint: Checkpoint, note: string, from: number, leafHashes: Uint8Array[], signal?: AbortSignal): Promise<LedgerSecurityError> {
  const label = `log ${checkpoint.origin}: entries ${from}–${checkpoint.size - 1} as served do not hash to the root of checkpoint ${checkpoint.size}`
  for (let i = 0; i < Math.min(leafHashes.length, MAX_LOCATE); i++) {
    const index = from + i
    const hashes = await client.inclusion(index, checkpoint.size, signal)
    try {
      verifyInclusion(index, checkpoint.size, leafHashes[i] as Uint8Array, hashes, checkpoint.root)
    } catch (err) {
      if (!(err instanceof IntegrityError)) throw err
      return new LedgerSecurityError(`${label}: entry ${index} is not the one it signed (${err.message})`,
        { offered: note, proof: { kind: 'inclusion', index, size: checkpoint.size, hashes: hashes.map(toBase64) } }, { cause: err })
    }
  }
  return new LedgerSecurityError(`${label}: the log serves other entries than it signed`, { offered: note })
}

/**
 * Reads the entries `checkpoint` adds to what `store` holds, checks them against its root and
 * keeps them. `note` is the checkpoint's signed note, the evidence of a failure. Calls for one
 * store must not overlap (the Node runtime queues them per log).
 */
export async function monitorLog (client: LedgerClient, checkpoint: Checkpoint, note: string, store: MonitorStore, signal?: AbortSignal): Promise<LogView> {
  const state = decode(await store.load())
  // A checkpoint older than what was read (a stale cache) adds nothing: everything under it was read.
  if (checkpoint.size <= state.size) return view(state)
  const target = checkpoint.size
  const label = `log ${checkpoint.origin}`
  if (target - state.size > MAX_MONITOR_READ) {
    throw new IntegrityError(`${label}: checkpoint ${target} adds ${target - state.size} entries to the ${state.size} read here, more than one read takes (${MAX_MONITOR_READ})`)
  }
  const frontier = [...state.frontier]
  const leafHashes: Uint8Array[] = []
  const added: Array<{ index: number, model: string, version: number }> = []
  let unreadable: Error | undefined
  for (let index = state.size; index < target;) {
    signal?.throwIfAborted()
    const leaves = await client.entries(index, target, signal)
    for (const leaf of leaves) {
      const hash = leafHash(leaf)
      push(frontier, index, hash)
      leafHashes.push(hash)
      try {
        const entry = parseEntry(leaf, `${label}: entry ${index}`)
        added.push({ index, model: entry.model, version: entry.version })
      } catch (err) {
        unreadable ??= err as Error
      }
      index++
    }
  }
  if (!equalBytes(rootOf(frontier), checkpoint.root)) {
    throw await mismatch(client, checkpoint, note, state.size, leafHashes, signal)
  }
  if (unreadable !== undefined) {
    throw new LedgerSecurityError(`${label}: checkpoint ${target} covers an entry that is not a ledger entry (${unreadable.message})`, { offered: note }, { cause: unreadable })
  }
  // Copies of what changes: `state` may be a remembered one that views still read.
  const next: MonitorState = { size: target, frontier, first: new Map(state.first), duplicates: new Map(state.duplicates) }
  const copied = new Set<string>()
  for (const { index, model, version } of added) {
    if (!copied.has(model)) {
      next.first.set(model, new Map(state.first.get(model)))
      copied.add(model)
    }
    const versions = next.first.get(model) as Map<number, number>
    const first = versions.get(version)
    if (first === undefined) {
      versions.set(version, index)
      continue
    }
    const key = `${model}@${version}`
    next.duplicates.set(key, [...(next.duplicates.get(key) ?? [first]), index])
  }
  const text = encode(next)
  await store.save(text)
  remember(text, next)
  return view(next)
}
