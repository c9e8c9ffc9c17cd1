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
 * Entries are read in parts of MONITOR_PART. Nothing of a part is kept until it is shown to be of
 * the signed tree — the last part by the rebuilt root equal to the signed one, each earlier part
 * by a consistency proof from the tree it ends to the signed one (RFC 9162 §2.1.4) — so entries
 * injected on the way (or a log serving other entries than it signed) never reach the index,
 * while a long first read keeps what it has checked, part by part. What was kept is read again
 * from the start if it does not hash to the trusted checkpoint (state damaged, or saved under
 * another history).
 *
 * Each model's entries must also form one chain, as the coordinator appends them
 * (coordinator/ingest/ingest.ts): version 1 with no parent first, then each version one more
 * than the chain's last, naming it as parent. Otherwise a log could anchor a version under a
 * parent it never had, or a number far ahead (a channel never moves back, so an inflated one
 * freezes its upgrades), every proof sound. An entry off the chain is recorded with why, and its
 * version refused (node-runtime/versions/obtain.ts); the chain goes on from its last good entry,
 * so the next honest version is taken, as after a version anchored twice.
 */
import { z } from 'zod'
import { BASE64_32_BYTES, equalBytes, fromBase64, toBase64 } from '../crypto/bytes.ts'
import { IntegrityError, LedgerSecurityError } from '../errors/errors.ts'
import { parseJsonWith } from '../errors/parse-json.ts'
import type { Checkpoint } from './checkpoint.ts'
import type { LedgerClient } from './client.ts'
import { parseEntry } from './entry.ts'
import { emptyRoot, leafHash, nodeHash, verifyConsistency, verifyInclusion } from './merkle.ts'

/** What a client knows of the log from reading it: which entries name each version. */
export interface LogView {
  /** Entries [0, size) were read and matched a signed root. */
  readonly size: number
  /** Indices of the entries naming (model, version) among them, in log order. */
  entriesOf: (model: string, version: number) => number[]
  /** Why entry `index` of `model` is off the model's chain of versions; undefined if it is on it. */
  offChain: (model: string, index: number) => string | undefined
}

/** Where the monitor keeps its state between runs (a file in Node). */
export interface MonitorStore {
  load: () => Promise<string | undefined>
  save: (text: string) => Promise<void>
}

/**
 * Entries read and checked at a time (≈ 7 s at 15,000 a second). A fresh runtime facing a
 * log of millions reads it over as many advances as its deadlines allow, never starting over;
 * one read of it all (capped at a million before) failed every time past the cap.
 */
export const MONITOR_PART = 100_000

interface MonitorState {
  size: number
  /** Compact range of [0, size): subtree hashes, largest (leftmost) first. */
  frontier: Uint8Array[]
  /** model → version → index of its first entry. */
  first: Map<string, Map<number, number>>
  /** `${model}@${version}` → every index naming it, when more than one does. */
  duplicates: Map<string, number[]>
  /** model → the last entry of its chain. */
  heads: Map<string, { version: number, index: number }>
  /** model → its entries off the chain, in log order, with why. */
  offChain: Map<string, Array<{ index: number, why: string }>>
}

// /2 added heads and offChain: a /1 state is read again from the log.
const FORMAT = 'blockfed-log-monitor/2'

const stateSchema = z.strictObject({
  format: z.literal(FORMAT),
  size: z.number().int().nonnegative(),
  frontier: z.array(z.string().regex(BASE64_32_BYTES)).max(53),
  first: z.record(z.string(), z.record(z.string().regex(/^[1-9][0-9]{0,15}$/), z.number().int().nonnegative())),
  duplicates: z.array(z.strictObject({ model: z.string(), version: z.number().int().positive(), entries: z.array(z.number().int().nonnegative()).min(2) })),
  heads: z.record(z.string(), z.strictObject({ version: z.number().int().positive(), index: z.number().int().nonnegative() })),
  offChain: z.record(z.string(), z.array(z.strictObject({ index: z.number().int().nonnegative(), why: z.string().max(1000) })))
})

const empty = (): MonitorState => ({ size: 0, frontier: [], first: new Map(), duplicates: new Map(), heads: new Map(), offChain: new Map() })

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
    duplicates: new Map(saved.duplicates.map(d => [`${d.model}@${d.version}`, d.entries])),
    heads: new Map(Object.entries(saved.heads)),
    offChain: new Map(Object.entries(saved.offChain))
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
    duplicates,
    heads: Object.fromEntries(state.heads),
    offChain: Object.fromEntries(state.offChain)
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
    },
    offChain: (model, index) => state.offChain.get(model)?.find(e => e.index === index)?.why
  }
}

/** Why entry `index`, `model`@`version` with `parent`, does not extend the model's chain ending at `head`; undefined if it does. */
function offChainWhy (index: number, model: string, version: number, parent: number | null, head: { version: number, index: number } | undefined): string | undefined {
  const [expected, expectedParent] = head === undefined ? [1, null] : [head.version + 1, head.version]
  const after = head === undefined ? 'the model\'s first entry' : `the model's chain ends at @${head.version} (entry ${head.index})`
  if (version !== expected || parent !== expectedParent) return `entry ${index}: ${model}@${version} with parent ${parent ?? 'none'}, where ${after} and @${expected} with parent ${expectedParent ?? 'none'} comes next`
  return undefined
}

/**
 * Whether the tree of `size` entries with root `root` (a kept state's, or one a part read ends)
 * is of the history `checkpoint` signs: at its size the same root, otherwise a consistency proof
 * between the two, asked of the log (RFC 9162 §2.1.4).
 */
async function matches (client: LedgerClient, checkpoint: Checkpoint, size: number, root: Uint8Array, signal?: AbortSignal): Promise<boolean> {
  if (size === checkpoint.size) return equalBytes(root, checkpoint.root)
  const [from, to] = size < checkpoint.size ? [{ size, root }, checkpoint] : [checkpoint, { size, root }]
  const proof = await client.consistency(from.size, to.size, signal)
  try {
    verifyConsistency(from.size, to.size, from.root, to.root, proof)
    return true
  } catch (err) {
    if (err instanceof IntegrityError) return false
    throw err
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
  const label = `log ${checkpoint.origin}: entries ${from}–${from + leafHashes.length - 1} as served do not hash to the root of checkpoint ${checkpoint.size}`
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

interface EntriesRead {
  frontier: Uint8Array[]
  leafHashes: Uint8Array[]
  added: Array<{ index: number, model: string, version: number, parent: number | null }>
  /** The first leaf that is no ledger entry, if any. */
  unreadable?: Error
}

/** Reads entries [state.size, target), folding them into a copy of the state's compact range. */
async function readEntries (client: LedgerClient, target: number, state: MonitorState, label: string, signal?: AbortSignal): Promise<EntriesRead> {
  const read: EntriesRead = { frontier: [...state.frontier], leafHashes: [], added: [] }
  for (let index = state.size; index < target;) {
    signal?.throwIfAborted()
    const leaves = await client.entries(index, target, signal)
    for (const leaf of leaves) {
      const hash = leafHash(leaf)
      push(read.frontier, index, hash)
      read.leafHashes.push(hash)
      try {
        const entry = parseEntry(leaf, `${label}: entry ${index}`)
        read.added.push({ index, model: entry.model, version: entry.version, parent: entry.parent })
      } catch (err) {
        read.unreadable ??= err as Error
      }
      index++
    }
  }
  return read
}

/**
 * Reads the entries `checkpoint` adds to what `store` holds, checks them against its root and
 * keeps them, MONITOR_PART (or `part`) at a time. `note` is the checkpoint's signed note, the
 * evidence of a failure. Calls for one store must not overlap (the Node runtime queues them per
 * log, and locks them between processes).
 */
export async function monitorLog (client: LedgerClient, checkpoint: Checkpoint, note: string, store: MonitorStore, signal?: AbortSignal, part = MONITOR_PART): Promise<LogView> {
  let state = decode(await store.load())
  const kept = (s: MonitorState): Promise<boolean> => matches(client, checkpoint, s.size, rootOf(s.frontier), signal)
  // A kept state of another history (damaged, or saved under a checkpoint since replaced) is read
  // again whole; below the checkpoint's size this is asked only if what is read does not match.
  if (state.size >= checkpoint.size && state.size > 0 && !await kept(state)) state = empty()
  const label = `log ${checkpoint.origin}`
  let keptChecked = false
  // Every state folded below is proved of the signed tree, so any may be kept. The store is
  // written when what it holds has doubled, at the end, and when the read fails or is aborted
  // (what was proved is kept): O(n) bytes for a first read of n entries, where a save per part
  // re-encoded the growing state each time, O(n² / part) (≈ 6 GB for 10 million entries).
  // Each fold grows the state, so it is unsaved exactly while its size is not the saved one.
  let savedSize = state.size
  const save = async (): Promise<void> => {
    if (state.size === savedSize) return
    const text = encode(state)
    await store.save(text)
    remember(text, state)
    savedSize = state.size
  }
  try {
    await readParts()
  } catch (err) {
    await save().catch(() => undefined) // the read's failure is the one to report
    throw err
  }
  await save()
  return view(state)

  async function readParts (): Promise<void> {
    // A checkpoint older than what was read (a stale cache) adds nothing: everything under it was read.
    while (state.size < checkpoint.size) {
      const end = Math.min(state.size + part, checkpoint.size)
      const read = await readEntries(client, end, state, label, signal)
      if (!await matches(client, checkpoint, end, rootOf(read.frontier), signal)) {
        if (!keptChecked && state.size > 0 && !await kept(state)) {
          state = empty()
          savedSize = 0 // nothing of this history saved: the store's state is replaced at the first part
          keptChecked = true
          continue
        }
        throw await mismatch(client, checkpoint, note, state.size, read.leafHashes, signal)
      }
      // What it extends is of this history too.
      keptChecked = true
      if (read.unreadable !== undefined) {
        throw new LedgerSecurityError(`${label}: checkpoint ${checkpoint.size} covers an entry that is not a ledger entry (${read.unreadable.message})`, { offered: note }, { cause: read.unreadable })
      }
      state = folded(state, end, read)
      if (state.size >= 2 * savedSize) await save()
    }
  }
}

/** `state` with the entries `read` up to `size` added: a new state, for `state` may be a remembered one that views still read. */
function folded (state: MonitorState, size: number, read: EntriesRead): MonitorState {
  const next: MonitorState = { size, frontier: read.frontier, first: new Map(state.first), duplicates: new Map(state.duplicates), heads: new Map(state.heads), offChain: new Map(state.offChain) }
  const copied = new Set<string>()
  for (const { index, model, version, parent } of read.added) {
    const why = offChainWhy(index, model, version, parent, next.heads.get(model))
    if (why === undefined) next.heads.set(model, { version, index })
    else next.offChain.set(model, [...(next.offChain.get(model) ?? []), { index, why }])
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
  return next
}
