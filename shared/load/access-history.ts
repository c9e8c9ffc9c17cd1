/**
 * Which model a runtime loads next, learnt from what it loaded before (issue 5: "the next likely
 * blocks are prefetched from the access history"). Within a model every block is needed, in
 * layer order, so the unit of prediction is the model: a runtime whose code runs a detector and
 * then an embedder loads the same pair again and again, and the second model's blocks can be
 * on their way while the first one is being built.
 *
 * A first-order Markov chain over model loads with exponentially decayed counts: when `b` is
 * loaded right after `a`, every successor weight of `a` is multiplied by `decay` and `b`'s gains
 * 1, so the chain follows a runtime whose habits change. `b` is a likely next model of `a` when
 * its weight is at least `minWeight` (seen more than once, recently) and at least `minShare` of
 * all of `a`'s successor weight. Bounded: at most `maxModels` models (the least used go first)
 * and `maxSuccessors` successors per model.
 */
import { z } from 'zod'
import { InvalidInputError } from '../errors/errors.ts'
import { describeIssues } from '../errors/parse-json.ts'

export interface AccessHistoryOptions {
  /** Factor applied to a model's successor weights each time one of them follows it. Default 0.9. */
  decay?: number
  /** Least weight of a likely successor. Default 1.5 (with decay 0.9: followed at least twice). */
  minWeight?: number
  /** Least share of the successor weight of a likely successor. Default 0.5. */
  minShare?: number
  maxModels?: number
  maxSuccessors?: number
}

/** The options as a runtime's caller gives them: a zero cap would leave nothing to keep. */
const optionsSchema = z.object({
  decay: z.number().gt(0).max(1).optional(),
  minWeight: z.number().finite().nonnegative().optional(),
  minShare: z.number().min(0).max(1).optional(),
  maxModels: z.number().int().min(1).max(1_000_000).optional(),
  maxSuccessors: z.number().int().min(1).max(10_000).optional()
}).strict()

const modelName = z.string().min(1).max(256)
const weight = z.number().finite().nonnegative()

/** The persisted form (what `toJSON` returns). */
export const accessHistorySchema = z.object({
  version: z.literal(1),
  models: z.record(modelName, z.object({
    /** Where the model's AoE config was read from, if it was read from a file. */
    config: z.string().min(1).max(4096).optional(),
    /** Loads of this model seen; the least used models are forgotten first. */
    uses: weight,
    next: z.record(modelName, weight)
  }))
}).strict()
export type AccessHistoryState = z.infer<typeof accessHistorySchema>

export interface AccessHistory {
  /** A load of `model` (config read from `config`, if a file), right after a load of `previous`. */
  record: (previous: string | undefined, model: string, config?: string) => void
  /** The models likely to be loaded after `model`, most likely first, with their config files. */
  likelyNext: (model: string) => Array<{ model: string, config?: string, share: number }>
  toJSON: () => AccessHistoryState
}

/** `given` checked: InvalidInputError naming the option that is out of range. */
export function accessHistoryOptions (given: AccessHistoryOptions): AccessHistoryOptions {
  const parsed = optionsSchema.safeParse(given)
  if (!parsed.success) throw new InvalidInputError(`accessHistory options: ${describeIssues(parsed.error)}`)
  return parsed.data
}

export function accessHistory (state?: AccessHistoryState, given: AccessHistoryOptions = {}): AccessHistory {
  const options = accessHistoryOptions(given)
  const decay = options.decay ?? 0.9
  const minWeight = options.minWeight ?? 1.5
  const minShare = options.minShare ?? 0.5
  const maxModels = options.maxModels ?? 256
  const maxSuccessors = options.maxSuccessors ?? 8
  const models = new Map<string, { config?: string, uses: number, next: Map<string, number> }>()
  for (const [name, entry] of Object.entries(state?.models ?? {})) {
    models.set(name, { config: entry.config, uses: entry.uses, next: new Map(Object.entries(entry.next)) })
  }

  const entryOf = (name: string): { config?: string, uses: number, next: Map<string, number> } => {
    let entry = models.get(name)
    if (entry === undefined) {
      entry = { uses: 0, next: new Map() }
      models.set(name, entry)
    }
    return entry
  }

  const dropLeast = <K>(map: Map<K, number>, keep: number, protect: readonly K[] = []): void => {
    while (map.size > keep) {
      let least: K | undefined
      for (const [k, v] of map) if (!protect.includes(k) && (least === undefined || v < (map.get(least) as number))) least = k
      if (least === undefined) return
      map.delete(least)
    }
  }

  return {
    record (previous, model, config) {
      const entry = entryOf(model)
      entry.uses += 1
      if (config !== undefined) entry.config = config
      if (previous !== undefined && previous !== model) {
        const from = entryOf(previous)
        for (const [k, v] of from.next) from.next.set(k, v * decay)
        from.next.set(model, (from.next.get(model) ?? 0) + 1)
        dropLeast(from.next, maxSuccessors, [model])
      }
      if (models.size > maxModels) {
        const uses = new Map([...models].map(([k, v]) => [k, v.uses]))
        // Both ends of the transition just recorded stay (room permitting), or it would be forgotten at once.
        dropLeast(uses, maxModels, previous === undefined || maxModels < 2 ? [model] : [model, previous])
        for (const name of models.keys()) if (!uses.has(name)) models.delete(name)
        for (const entry of models.values()) for (const k of entry.next.keys()) if (!models.has(k)) entry.next.delete(k)
      }
    },
    likelyNext (model) {
      const next = models.get(model)?.next
      if (next === undefined) return []
      let total = 0
      for (const v of next.values()) total += v
      return [...next]
        .filter(([, v]) => v >= minWeight && v >= minShare * total)
        .sort((a, b) => b[1] - a[1])
        .map(([name, v]) => ({ model: name, config: models.get(name)?.config, share: v / total }))
    },
    toJSON () {
      return {
        version: 1,
        models: Object.fromEntries([...models].map(([name, e]) => [name, { ...(e.config === undefined ? {} : { config: e.config }), uses: e.uses, next: Object.fromEntries(e.next) }]))
      }
    }
  }
}
