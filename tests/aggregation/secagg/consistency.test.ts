/**
 * The attack ConsistencyCheck exists for, replayed against real clients: a lying server with no
 * colluding client tries to recover one client's input by telling different clients different
 * stories about who dropped (Bonawitz et al. 2017, §4 and appendix; found against blockfed's
 * semi-honest protocol by review, where it recovered the input exactly at n = 20 and 100).
 *
 * The plan: every client masks honestly; v's neighbours are to reveal shares of b_v ("v survived"),
 * and for each neighbour u of v, t neighbours of u are to reveal shares of s_u^SK ("u dropped"),
 * each client declaring at most k − t of its neighbours dropped so that every request passes the
 * per-request checks. Without ConsistencyCheck that plan was enough. Now each client signs the
 * list it is told and reveals only with t neighbours' signatures over the same list.
 *
 * The replay variant (found by review against the first version of ConsistencyCheck, whose
 * signatures covered only the round id and the list): the server offers the same round id
 * several times first and collects each client's signature over the stories its neighbours will
 * be told; signatures now cover the signer's fresh keys of the run, so those do not verify.
 */
import { describe, it, expect } from 'vitest'
import { ROUND, client, input, newRound, rerun, setUp, wire, type Round } from './harness.ts'
import { rosterGraph } from '../../../aggregation/secagg/_roster.ts'
import type { NeighbourGraph } from '../../../aggregation/secagg/graph.ts'
import type { UnmaskMessage } from '../../../aggregation/secagg/messages.ts'

/**
 * Who tells whom "u dropped": for every u in `targets`, t of u's neighbours, none declaring more
 * than `cap` clients dropped (augmenting paths over the bipartite graph neighbour → target).
 */
function assignDropStories (graph: NeighbourGraph, ids: readonly string[], targets: readonly string[], t: number, cap: number): Map<string, Set<string>> {
  const declares = new Map(ids.map(w => [w, new Set<string>()]))
  const augment = (u: string, seen: Set<string>): boolean => {
    for (const w of graph.neighbours(u)) {
      const mine = declares.get(w) as Set<string>
      if (seen.has(w) || mine.has(u)) continue
      seen.add(w)
      if (mine.size < cap) { mine.add(u); return true }
      for (const other of [...mine]) {
        mine.delete(other)
        if (augment(other, seen)) { mine.add(u); return true }
        mine.add(other)
      }
    }
    return false
  }
  for (const u of targets) for (let i = 0; i < t; i++) if (!augment(u, new Set())) throw new Error(`no drop story for ${u}`)
  return declares
}

/** Round 2 for everyone in `round`. */
async function maskAll (round: Round): Promise<void> {
  for (const id of round.ids) round.server.receiveMasked(id, await client(round, id).maskedInput(input(round, id), wire(round.server.inboxFor(id))))
}

/**
 * The attack at n clients. With `replay`, the server first offers the same round id again and
 * again (same clients and seed) and has each client sign, in some earlier run, every story its
 * neighbours will be told, so that in the real run it can forward t signatures over each story.
 */
async function attack (n: number, replay = false): Promise<{ t: number, planned: { selfOfV: number, keyOf: number[] }, got: { selfOfV: number, keyOf: number[] }, answered: number, refused: Map<string, number> }> {
  const first = newRound(n, { kind: 'harary' }, { vectorLength: 16, seed: 7 })
  const { graph, params } = rosterGraph(first.ids, first.graph, first.seed, ROUND)
  const { degree: k, threshold: t } = params
  const v = first.ids[0] as string
  const targets = graph.neighbours(v)
  // A story per client: each is told that exactly the clients it is to reveal s^SK of dropped.
  const declares = assignDropStories(graph, first.ids, targets, t, k - t)
  const viewOf = new Map(first.ids.map(w => [w, first.ids.filter(x => !(declares.get(w) as Set<string>).has(x))]))
  const story = (w: string): string => (viewOf.get(w) as string[]).join()
  /** Signatures the server holds, by story, then signer. */
  const byStory = new Map<string, Map<string, string>>()
  const keep = (list: readonly string[], from: string, signature: string): void => {
    const held = byStory.get(list.join()) ?? new Map<string, string>()
    held.set(from, signature)
    byStory.set(list.join(), held)
  }
  const consistency = (w: string, survivors: readonly string[]): unknown => wire({ type: 'secagg/consistency', roundId: ROUND, to: w, survivors })

  let round = first
  if (replay) {
    // For each client, the stories of the neighbours whose story names it (other than its own).
    const owed = new Map(first.ids.map(x => [x, [...new Set(graph.neighbours(x).filter(w => (viewOf.get(w) as string[]).includes(x)).map(story))].filter(st => st !== story(x))]))
    const runs = Math.max(...[...owed.values()].map(list => list.length))
    for (let j = 0; j < runs; j++) {
      const earlier = rerun(first)
      await setUp(earlier)
      await maskAll(earlier)
      for (const x of earlier.ids) {
        const list = (owed.get(x) as string[])[j]?.split(',')
        if (list !== undefined) keep(list, x, client(earlier, x).consistencyCheck(consistency(x, list)).signature)
      }
    }
    round = rerun(first)
  }
  await setUp(round)
  await maskAll(round)
  const planned = {
    selfOfV: graph.neighbours(v).filter(w => !(declares.get(w) as Set<string>).has(v)).length,
    keyOf: targets.map(u => graph.neighbours(u).filter(w => (declares.get(w) as Set<string>).has(u)).length)
  }

  // Round 3: each client signs the story it is told, unless it leaves it fewer than t neighbours.
  const signed = new Set<string>()
  const refused = new Map<string, number>()
  const refuse = (err: unknown): void => {
    const name = (err as Error).name
    refused.set(name, (refused.get(name) ?? 0) + 1)
  }
  for (const w of round.ids) {
    try {
      keep(viewOf.get(w) as string[], w, client(round, w).consistencyCheck(consistency(w, viewOf.get(w) as string[])).signature)
      signed.add(w)
    } catch (err) {
      refuse(err)
    }
  }
  // Round 4: the server forwards to each client every signature it holds over that client's story
  // by one of its neighbours (any other signature makes the client refuse outright): its best move.
  const answers = new Map<string, UnmaskMessage>()
  for (const w of round.ids.filter(x => signed.has(x))) {
    const have = byStory.get(story(w)) as Map<string, string>
    const request = { type: 'secagg/unmask-request', roundId: ROUND, to: w, signatures: graph.neighbours(w).filter(x => have.has(x)).map(x => ({ from: x, signature: have.get(x) as string })) }
    try {
      answers.set(w, await client(round, w).unmask(wire(request)))
    } catch (err) {
      refuse(err)
    }
  }
  const count = (owner: string, kind: 'selfMaskShares' | 'keyShares'): number => [...answers.values()].filter(a => a[kind].some(s => s.owner === owner)).length
  return { t, planned, got: { selfOfV: count(v, 'selfMaskShares'), keyOf: targets.map(u => count(u, 'keyShares')) }, answered: answers.size, refused }
}

describe('ConsistencyCheck: a server telling clients different survivor lists learns no input', () => {
  for (const n of [20, 100]) {
    it(`n = ${n}, Harary graph of the default threat model, no colluding client`, async () => {
      const { t, planned, got, answered, refused } = await attack(n)
      // The plan would have worked without ConsistencyCheck: t shares of b_v and of every s_u^SK asked for.
      expect(planned.selfOfV).toBeGreaterThanOrEqual(t)
      expect(Math.min(...planned.keyOf)).toBeGreaterThanOrEqual(t)
      // With it, the clients told a story of their own find too few neighbours who saw the same list.
      expect(refused.get('AccessDeniedError') ?? 0).toBeGreaterThan(0)
      expect(answered + (refused.get('AccessDeniedError') ?? 0)).toBe(n)
      // Removing v's masks needs b_v and every s_u^SK (v masked with all its neighbours): none of them
      // reaches t shares; the clients that did answer were told the honest story by t neighbours.
      expect(got.selfOfV).toBeLessThan(t)
      expect(got.keyOf.every(c => c < t)).toBe(true)
      expect(answered).toBeGreaterThan(0)
    })
  }

  it('n = 20: nor with signatures gathered in earlier runs of the same round id (each run has fresh keys, which the signatures cover)', async () => {
    const { t, got, answered, refused } = await attack(20, true)
    expect(got.selfOfV).toBeLessThan(t)
    expect(got.keyOf.every(c => c < t)).toBe(true)
    expect(answered + (refused.get('IntegrityError') ?? 0) + (refused.get('AccessDeniedError') ?? 0)).toBe(20)
    expect(refused.get('IntegrityError') ?? 0).toBeGreaterThan(0)
  })
})
