/**
 * Splits a labelled dataset's row indices among N simulated clients — the IID and non-IID
 * splits federated-learning papers evaluate on. Pure and seeded: the same labels, spec and seed
 * give the same split everywhere. Every index goes to exactly one client; each client's
 * indices come back in ascending order.
 *
 * - `iid`: a uniform shuffle dealt into N near-equal parts.
 * - `classes:K`: the "pathological non-IID" split of McMahan et al. 2017 (§3, MNIST: sort by
 *   label, cut into 200 shards, give each of 100 clients 2). Here shards are cut inside a class,
 *   so a client holds at most K classes, and shards are dealt so that a client's K shards are of
 *   distinct classes whenever swaps can arrange it.
 * - `dirichlet:ALPHA`: per class, the share of each client is drawn from Dirichlet(α, …, α)
 *   (Yurochkin et al. 2019, "Bayesian Nonparametric Federated Learning of Neural Networks"; Wang
 *   et al. 2020, FedMA; Li et al. 2022, NIID-Bench's "p_k ~ Dir_N(β)"). Small α: each class
 *   lives on few clients; large α: IID. Client sizes vary with the draw (at α = 0.1, 20 clients
 *   of 10,000 rows: 12 to 1,266). This is not Hsu, Qi & Brown 2019's split, which draws each
 *   client's class mix from Dir(α·p) at equal client sizes (review 48a: cited here before).
 *   For small α a client may receive no rows at all; callers skip such clients.
 */
import { InvalidInputError } from '../errors/errors.ts'
import { mulberry32 } from '../random/seeded.ts'
import { symmetricDirichlet } from './_sample.ts'
import { shuffleInPlace } from '../random/shuffle.ts'

export type PartitionSpec =
  | { kind: 'iid' }
  | { kind: 'classes', k: number }
  | { kind: 'dirichlet', alpha: number }

const ACCEPTED = '"iid", "classes:K" (K ≥ 1 whole classes per client) or "dirichlet:ALPHA" (ALPHA > 0, e.g. dirichlet:0.5)'

/**
 * Reads a partition spec string.
 *
 * @example
 * parsePartition('classes:2') // { kind: 'classes', k: 2 }
 * parsePartition('dirichlet:0.3') // { kind: 'dirichlet', alpha: 0.3 }
 */
export function parsePartition (spec: string): PartitionSpec {
  if (typeof spec !== 'string') throw new InvalidInputError(`partition spec must be a string: ${ACCEPTED}`)
  const text = spec.trim()
  if (text === 'iid') return { kind: 'iid' }
  const classes = /^classes:(\d+)$/.exec(text)
  if (classes !== null) {
    const k = Number(classes[1])
    if (Number.isSafeInteger(k) && k >= 1) return { kind: 'classes', k }
  }
  const dirichlet = /^dirichlet:([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)$/i.exec(text)
  if (dirichlet !== null) {
    const alpha = Number(dirichlet[1])
    if (Number.isFinite(alpha) && alpha > 0) return { kind: 'dirichlet', alpha }
  }
  throw new InvalidInputError(`partition spec ${JSON.stringify(spec)} is not valid; expected ${ACCEPTED}`)
}

/**
 * Splits the indices 0..labels.length−1 among `clients` as `spec` says.
 *
 * @example
 * const parts = partitionIndices('classes:2', train.labels, 10, 1) // 10 Int32Arrays of row indices
 */
export function partitionIndices (spec: string | PartitionSpec, labels: ArrayLike<number>, clients: number, seed: number): Int32Array[] {
  const parsed = typeof spec === 'string' ? parsePartition(spec) : spec
  if (parsed.kind === 'iid') return iidPartition(labels.length, clients, seed)
  if (parsed.kind === 'classes') return classesPartition(labels, clients, parsed.k, seed)
  if (parsed.kind === 'dirichlet') return dirichletPartition(labels, clients, parsed.alpha, seed)
  throw new InvalidInputError(`partition spec ${JSON.stringify(spec)} is not valid; expected ${ACCEPTED}`)
}

/** `count` indices shuffled and dealt into `clients` parts whose sizes differ by at most one. */
export function iidPartition (count: number, clients: number, seed: number): Int32Array[] {
  if (!Number.isSafeInteger(count) || count < 0) throw new InvalidInputError(`count must be a whole number, got ${String(count)}`)
  checkClients(clients, seed)
  const order = shuffleInPlace(Int32Array.from({ length: count }, (_, i) => i), mulberry32(seed))
  return Array.from({ length: clients }, (_, c) => sorted(order.slice(Math.floor(c * count / clients), Math.floor((c + 1) * count / clients))))
}

/**
 * McMahan's shard split: `clients · k` single-class shards, `k` per client, of distinct classes
 * where possible. Shards are given to classes in proportion to class size (D'Hondt: each next
 * shard to the class whose shards are currently largest), so shard sizes stay close.
 */
export function classesPartition (labels: ArrayLike<number>, clients: number, k: number, seed: number): Int32Array[] {
  checkClients(clients, seed)
  if (!Number.isSafeInteger(k) || k < 1) throw new InvalidInputError(`k (classes per client) must be a positive integer, got ${String(k)}`)
  const random = mulberry32(seed)
  const byClass = groupByClass(labels, random)
  const shardCount = clients * k
  if (shardCount < byClass.length) {
    throw new InvalidInputError(`classes:${k} with ${clients} clients makes ${shardCount} shards, fewer than the ${byClass.length} classes present: some rows would belong to no client`)
  }
  if (shardCount > labels.length) throw new InvalidInputError(`classes:${k} with ${clients} clients needs ${shardCount} shards but there are only ${labels.length} rows`)

  // A class never gets more than one shard per client (else some client would hold it twice)
  // nor more shards than rows.
  const perClass = byClass.map(() => 1)
  for (let placed = byClass.length; placed < shardCount; placed++) {
    let best = -1
    for (let c = 0; c < byClass.length; c++) {
      const size = (byClass[c] as Int32Array).length
      const s = perClass[c] as number
      if (s >= Math.min(clients, size)) continue
      if (best < 0 || size / s > (byClass[best] as Int32Array).length / (perClass[best] as number)) best = c
    }
    if (best < 0) throw new InvalidInputError(`classes:${k} with ${clients} clients: the classes are too small to cut into ${shardCount} shards`)
    perClass[best] = (perClass[best] as number) + 1
  }

  const shards: Array<{ cls: number, rows: Int32Array }> = []
  byClass.forEach((rows, cls) => {
    const s = perClass[cls] as number
    for (let j = 0; j < s; j++) shards.push({ cls, rows: rows.subarray(Math.floor(j * rows.length / s), Math.floor((j + 1) * rows.length / s)) })
  })
  const order = shuffleInPlace(Int32Array.from(shards, (_, i) => i), random)
  const held: number[][] = Array.from({ length: clients }, (_, c) => Array.from(order.subarray(c * k, (c + 1) * k)))
  separateClasses(held, i => (shards[i] as { cls: number }).cls)
  return held.map(mine => sorted(concat(mine.map(i => (shards[i] as { rows: Int32Array }).rows))))
}

/**
 * Per class, the shares of the clients drawn from Dirichlet(α): class c's shuffled rows are cut
 * at the cumulative shares (rounded), so every row is given out exactly once.
 */
export function dirichletPartition (labels: ArrayLike<number>, clients: number, alpha: number, seed: number): Int32Array[] {
  checkClients(clients, seed)
  if (!(Number.isFinite(alpha) && alpha > 0)) throw new InvalidInputError(`alpha must be a positive number, got ${String(alpha)}`)
  const random = mulberry32(seed)
  const parts: Int32Array[][] = Array.from({ length: clients }, () => [])
  for (const rows of groupByClass(labels, random)) {
    const p = symmetricDirichlet(alpha, clients, random)
    let cumulative = 0
    let from = 0
    for (let c = 0; c < clients; c++) {
      cumulative += p[c] as number
      const to = c === clients - 1 ? rows.length : Math.min(rows.length, Math.round(cumulative * rows.length))
      ;(parts[c] as Int32Array[]).push(rows.subarray(from, to))
      from = to
    }
  }
  return parts.map(p => sorted(concat(p)))
}

/**
 * Swaps shards between clients until no client holds two shards of one class, where a swap can
 * do it. Each swap removes a duplicate from one client without adding one to the other, so it ends.
 */
function separateClasses (held: number[][], classOf: (shard: number) => number): void {
  const othersHave = (mine: number[], except: number, cls: number): boolean => mine.some((s, j) => j !== except && classOf(s) === cls)
  for (let a = 0; a < held.length; a++) {
    const mine = held[a] as number[]
    for (let i = 0; i < mine.length; i++) {
      const x = mine[i] as number
      if (!othersHave(mine, i, classOf(x))) continue
      search: for (let step = 1; step < held.length; step++) {
        const theirs = held[(a + step) % held.length] as number[]
        for (let j = 0; j < theirs.length; j++) {
          const y = theirs[j] as number
          if (othersHave(mine, i, classOf(y)) || othersHave(theirs, j, classOf(x))) continue
          mine[i] = y
          theirs[j] = x
          break search
        }
      }
    }
  }
}

/** Row indices of each class present, each list shuffled; classes in ascending label order. */
function groupByClass (labels: ArrayLike<number>, random: () => number): Int32Array[] {
  if (typeof labels !== 'object' || labels === null || typeof labels.length !== 'number') throw new InvalidInputError('labels must be an array of class indices')
  const counts = new Map<number, number>()
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i] as number
    if (!(Number.isSafeInteger(y) && y >= 0)) throw new InvalidInputError(`labels[${i}] = ${y} is not a class index (a whole number ≥ 0)`)
    counts.set(y, (counts.get(y) ?? 0) + 1)
  }
  const classes = [...counts.keys()].sort((a, b) => a - b)
  const slot = new Map(classes.map((y, c) => [y, c]))
  const rows = classes.map(y => new Int32Array(counts.get(y) as number))
  const filled = classes.map(() => 0)
  for (let i = 0; i < labels.length; i++) {
    const c = slot.get(labels[i] as number) as number
    ;(rows[c] as Int32Array)[filled[c] as number] = i
    filled[c] = (filled[c] as number) + 1
  }
  return rows.map(r => shuffleInPlace(r, random))
}

function checkClients (clients: number, seed: number): void {
  if (!Number.isSafeInteger(clients) || clients < 1) throw new InvalidInputError(`clients must be a positive integer, got ${String(clients)}`)
  if (!Number.isInteger(seed)) throw new InvalidInputError(`seed must be an integer, got ${String(seed)}`)
}

function concat (parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const p of parts) {
    out.set(p, offset)
    offset += p.length
  }
  return out
}

function sorted (a: Int32Array): Int32Array {
  return a.sort()
}
