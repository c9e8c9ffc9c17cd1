/**
 * `simulate` in-process: what it counts (bytes of clients that dropped out), what it draws
 * (dropouts from the seed alone), what it refuses (partitions that leave < 2 clients with data),
 * and what it leaves behind (nothing: an abort or a failed split deletes its temporary data), plus
 * the cleanup helpers it relies on. Small models (784-16-10), few clients, few rounds.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { dropsOut, simulate, SIMULATION_DEFAULTS, type RoundReport, type SimulationOptions } from '../../coordinator/cli/simulate.ts'
import { runAll } from '../../coordinator/cli/cleanup.ts'
import { stopChild } from '../../coordinator/cli/decryptor-process.ts'
import { InvalidInputError } from '../../shared/errors/errors.ts'

const small = (o: Partial<SimulationOptions>): SimulationOptions => ({
  ...SIMULATION_DEFAULTS, hidden: [16], clients: 3, rounds: 1, partition: 'iid', secure: 'none', dropout: 0, seed: 1, centralised: false, ...o
})

// simulate() makes its temporary folder under os.tmpdir(), which follows TMPDIR: a folder per test
// shows what a run left behind.
let scratch: string
let savedTmp: string | undefined
beforeEach(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'blockfed-simtest-'))
  savedTmp = process.env.TMPDIR
  process.env.TMPDIR = scratch
})
afterEach(async () => {
  if (savedTmp === undefined) delete process.env.TMPDIR
  else process.env.TMPDIR = savedTmp
  await rm(scratch, { recursive: true, force: true })
})

describe('simulate: bytes and dropouts', () => {
  it('counts every client\'s bytes, also a client that dropped out after uploading (it gets no result), and drops the clients its seed names', async () => {
    // dropsOut(4, r, i, 0.3): client 5 drops in round 1, client 2 in round 2 — one a round, which
    // the masking graph (sized for dropout 0.4) absorbs.
    const seed = 4
    const clients = 6
    const predicted = [1, 2].map(r => Array.from({ length: clients }, (_, i) => i).filter(i => dropsOut(seed, r, i, 0.3)))
    expect(predicted).toEqual([[5], [2]])

    const tallies = new Map<string, Map<number, { up: number, down: number }>>()
    const lastUpload = new Map<number, string>()
    const dropped: Array<{ roundId: string, client: number }> = []
    const reports: RoundReport[] = []
    await simulate(small({
      clients, rounds: 2, secure: 'masking', dropout: 0.3, seed,
      onEvent: e => {
        if (!('client' in e)) return
        if (e.type === 'uploaded') lastUpload.set(e.client, e.roundId)
        if (e.type === 'disconnected' && /dropping out/.test(e.reason)) dropped.push({ roundId: lastUpload.get(e.client) as string, client: e.client })
        if (e.type === 'bytes') {
          const round = tallies.get(e.roundId) ?? new Map()
          expect(round.has(e.client), 'one tally per client and round').toBe(false)
          round.set(e.client, { up: e.bytesUp, down: e.bytesDown })
          tallies.set(e.roundId, round)
        }
      },
      onRound: r => reports.push(r)
    }))

    expect(reports.map(r => r.state)).toEqual(['published', 'published'])
    // Said in each round's report (before: only the coordinator's count, to which they had uploaded).
    expect(reports.map(r => r.droppedAfterUpload)).toEqual([1, 1])
    // The dropouts are the seed's, whatever order the uploads came in.
    expect(reports.map(r => dropped.filter(d => d.roundId === r.id).map(d => d.client).sort())).toEqual(predicted)
    for (const report of reports) {
      // Every client took part, and each told what it sent and received, however its round ended.
      expect(tallies.has(report.id as string), `byte tallies for round ${report.round}`).toBe(true)
      const round = tallies.get(report.id as string) as Map<number, { up: number, down: number }>
      expect([...round.keys()].sort()).toEqual([0, 1, 2, 3, 4, 5])
      for (const d of dropped.filter(d => d.roundId === report.id)) {
        // It fetched the base version (or its changed blocks) and sent more than its upload frame.
        expect((round.get(d.client) as { down: number }).down).toBeGreaterThan(0)
      }
      expect(report.bytesDown).toBe([...round.values()].reduce((n, t) => n + t.down, 0))
      expect(report.bytesUp).toBe([...round.values()].reduce((n, t) => n + t.up, 0))
    }
  })

  it('reports a round that cannot start, with the reason, when a masking round failed once every upload was in', async () => {
    // dropsOut(13, 1, i, 0.3): clients 0, 4 and 5 of 6 drop after uploading in round 1, more
    // than the masking graph (sized for dropout 0.4) absorbs. All six uploaded from version 1, and
    // none gives a second update from it (shared/rounds/one-update.ts).
    expect([0, 1, 2, 3, 4, 5].filter(i => dropsOut(13, 1, i, 0.3))).toEqual([0, 4, 5])
    const reports: RoundReport[] = []
    const summary = await simulate(small({ clients: 6, rounds: 2, secure: 'masking', dropout: 0.3, seed: 13, onRound: r => reports.push(r) }))
    expect(reports.map(r => [r.state, r.participants.uploaded, r.droppedAfterUpload])).toEqual([['failed', 6, 3], ['failed', 0, 0]])
    expect(reports[1]).toMatchObject({ id: null, version: null, reason: 'round for mnist not started: 0 eligible client(s) connected (6 more already uploaded from version 1 to a round that failed or did not take the upload, and give one update per base version), at least 3 needed (masking needs 3); those that uploaded train again from a new version (ingest changed weights: the same files are the same version)' })
    expect(summary.publishedRounds).toBe(0)
  })

  it('draws a dropout from (seed, round, client) alone', () => {
    const draws = (seed: number): boolean[] => Array.from({ length: 40 }, (_, k) => dropsOut(seed, 1 + (k >> 3), k & 7, 0.5))
    expect(draws(7)).toEqual(draws(7))
    expect(draws(7)).not.toEqual(draws(8))
    // No XOR coincidence between seed and round: seed 5 in round 2 is not seed 6 in round 1.
    expect(Array.from({ length: 16 }, (_, i) => dropsOut(5, 2, i, 0.5))).not.toEqual(Array.from({ length: 16 }, (_, i) => dropsOut(6, 1, i, 0.5)))
    expect(dropsOut(7, 1, 0, 0)).toBe(false)
  })
})

describe('simulate: what it refuses and what it leaves behind', () => {
  it('stops at an abort between rounds, and deletes what it made', async () => {
    const controller = new AbortController()
    const reports: RoundReport[] = []
    const run = simulate(small({
      rounds: 3,
      signal: controller.signal,
      onRound: r => { reports.push(r); controller.abort(new Error('stop here')) }
    }))
    await expect(run).rejects.toThrow('stop here')
    expect(reports.map(r => r.round)).toEqual([1])
    expect(await readdir(scratch)).toEqual([])
  })

  it('does not start with a signal already aborted', async () => {
    const controller = new AbortController()
    controller.abort(new Error('never mind'))
    await expect(simulate(small({ signal: controller.signal }))).rejects.toThrow('never mind')
    expect(await readdir(scratch)).toEqual([])
  })

  it('refuses a dropout the masking graph cannot carry with these clients, naming both flags, before starting anything', async () => {
    // 5 clients at dropout 0.4 (a graph sized for 45 %): every round failed at its roster.
    const run = simulate(small({ clients: 5, secure: 'masking', dropout: 0.4 }))
    await expect(run).rejects.toThrow(InvalidInputError)
    await expect(run).rejects.toThrow(/^--dropout 0\.4 with --secure masking sizes the masking graph for 45% dropouts, which 5 clients cannot carry \(graph: 5 clients cannot meet the threat model .*\); give more --clients or a lower --dropout$/)
    expect(await readdir(scratch)).toEqual([])
  })

  it('leaves no temporary folder behind when the partition cannot be made', async () => {
    // classes:2 over 2 clients is 4 shards for 10 classes.
    await expect(simulate(small({ clients: 2, partition: 'classes:2' }))).rejects.toThrow(/fewer than the 10 classes/)
    expect(await readdir(scratch)).toEqual([])
  })

  it('refuses a partition that leaves fewer than 2 clients with data, naming the partition and the seed', async () => {
    const run = simulate(small({ clients: 2, partition: 'dirichlet:0.01', seed: 65 }))
    await expect(run).rejects.toThrow(InvalidInputError)
    await expect(run).rejects.toThrow(/--partition dirichlet:0\.01 with --seed 65 gives data to 1 of 2 clients; a round needs at least 2/)
    expect(await readdir(scratch)).toEqual([])
  })

  it('says how many clients got data when the partition left some out, and runs with those', async () => {
    const notes: string[] = []
    const summary = await simulate(small({ clients: 3, partition: 'dirichlet:0.01', seed: 24, onNote: n => notes.push(n) }))
    expect(notes).toEqual([expect.stringMatching(/^2 of 3 clients got data \(--partition dirichlet:0\.01, --seed 24\)/)])
    expect(summary.clients).toBe(2)
    expect(summary.publishedRounds).toBe(1)
  })
})

describe('cleanup helpers', () => {
  it('runAll runs every step after one that throws, in order, and returns the errors', async () => {
    const ran: number[] = []
    const errors = await runAll([
      async () => { ran.push(1) },
      async () => { ran.push(2); throw new Error('second') },
      async () => { ran.push(3) },
      async () => { ran.push(4); throw new Error('fourth') }
    ])
    expect(ran).toEqual([1, 2, 3, 4])
    expect(errors.map(e => (e as Error).message)).toEqual(['second', 'fourth'])
  })

  it('stopChild kills a child that ignores SIGTERM once its grace period is over', async () => {
    const child = spawn(process.execPath, ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000); console.log("ready")'], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>(resolve => child.stdout.once('data', () => resolve()))
    await stopChild(child, 200)
    expect(child.signalCode).toBe('SIGKILL')
    // A child already gone: nothing to wait for.
    await stopChild(child, 200)
  })
})
