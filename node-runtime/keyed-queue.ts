/**
 * Tasks queued by key, for this process: those of one key (a folder, a log) run one after
 * another, whoever queues them; other keys run freely. A key is forgotten once its queue is idle.
 */
export type KeyedQueue = <T>(key: string, task: () => Promise<T>) => Promise<T>

export function keyedQueue (): KeyedQueue {
  const tails = new Map<string, Promise<unknown>>()
  return async (key, task) => {
    const run = (tails.get(key) ?? Promise.resolve()).then(task)
    const settled = run.catch(() => undefined)
    tails.set(key, settled)
    void settled.then(() => { if (tails.get(key) === settled) tails.delete(key) })
    return await run
  }
}
