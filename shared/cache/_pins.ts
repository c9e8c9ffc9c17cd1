/**
 * Reference-counted pins, shared by the cache tiers: a block CID can be in use by several
 * loaded model versions at once, so each user pins and unpins on its own.
 */
export interface PinCounter {
  /** Adds one pin; returns true when the key went from unpinned to pinned. */
  pin: (key: string) => boolean
  /** Removes one pin; returns true when the key went from pinned to unpinned. */
  unpin: (key: string) => boolean
  isPinned: (key: string) => boolean
  clear: () => void
}

export function pinCounter (): PinCounter {
  const counts = new Map<string, number>()
  return {
    pin (key) {
      const n = counts.get(key) ?? 0
      counts.set(key, n + 1)
      return n === 0
    },
    unpin (key) {
      const n = counts.get(key)
      if (n === undefined) return false
      if (n > 1) {
        counts.set(key, n - 1)
        return false
      }
      counts.delete(key)
      return true
    },
    isPinned: (key) => counts.has(key),
    clear: () => { counts.clear() }
  }
}
