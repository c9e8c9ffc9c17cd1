/**
 * Paths inside a model folder: a model.json's weight paths and an ONNX tensor's external-data
 * location are relative to the file that names them. They are written back as file names, so
 * anything that could leave the model folder (absolute paths, `..`, URLs) is refused.
 */
import { InvalidModelError } from '../errors/errors.ts'
import type { ModelFile } from '../model/types.ts'
import { relativeFilePathSchema } from '../manifest/schema.ts'

/** `path` if it is a plain relative path inside the folder; InvalidModelError naming `what` otherwise. */
export function relativePath (path: string, what: string): string {
  const segments = path.split('/')
  if (path === '' || path.startsWith('/') || path.includes('\\') || /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(path) ||
      segments.some(s => s === '..')) {
    throw new InvalidModelError(`${what} "${path}" is not a relative path inside the model folder`)
  }
  const normal = segments.filter(s => s !== '.' && s !== '').join('/')
  // Written into the manifest, whose schema would refuse it later with a vaguer error.
  const checked = relativeFilePathSchema.safeParse(normal)
  if (!checked.success) throw new InvalidModelError(`${what} "${path}" cannot be a file name: ${checked.error.issues[0]?.message ?? 'refused'}`)
  return normal
}

/**
 * InvalidModelError naming both paths when two of the files a model is written back as cannot
 * both exist: one is the folder of another (`w` and `w/x.bin`), or they differ only in letter
 * case (`W.bin` and `w.bin`, one file on macOS and Windows) or Unicode form (NFC and NFD, one
 * file on macOS). `pull` could never write such a model out once ingest had signed it.
 */
export function refuseClashingPaths (paths: Iterable<string>, what: string): void {
  const fold = (path: string): string => path.normalize('NFC').toLowerCase()
  const files = new Map<string, string>()
  const folders = new Map<string, string>()
  for (const path of paths) {
    const key = fold(path)
    const same = files.get(key)
    if (same !== undefined) {
      throw new InvalidModelError(same === path
        ? `${what}: "${path}" would be written twice`
        : `${what}: "${same}" and "${path}" differ only in letter case or Unicode form, so they would be one file on macOS or Windows`)
    }
    files.set(key, path)
    for (let at = key.indexOf('/'); at >= 0; at = key.indexOf('/', at + 1)) {
      if (!folders.has(key.slice(0, at))) folders.set(key.slice(0, at), path)
    }
  }
  for (const [key, path] of files) {
    const inside = folders.get(key)
    if (inside !== undefined) throw new InvalidModelError(`${what}: "${path}" and "${inside}" cannot both be written: "${path}" would be a file and a folder`)
  }
}

export function basename (path: string): string {
  return path.slice(path.lastIndexOf('/') + 1)
}

/** The folder part of `path`, with its trailing slash ('' at the top). */
export function dirname (path: string): string {
  return path.slice(0, path.lastIndexOf('/') + 1)
}

/**
 * A lookup of the file at a path relative to the folder of `from`, matching `./`-prefixed names
 * too. Built once for many lookups: a scan of every file per tensor froze ingest for 18 s on an
 * ONNX of 285,000 external tensors and 256 files (review 46c).
 */
export function filesBeside (files: readonly ModelFile[], from: string): (relative: string) => ModelFile | undefined {
  const byPath = new Map<string, ModelFile>()
  // The first of two files with one path, as a scan found it.
  for (const f of files) {
    const path = normalise(f.path)
    if (!byPath.has(path)) byPath.set(path, f)
  }
  const folder = dirname(normalise(from))
  return relative => byPath.get(folder + relative)
}

function normalise (path: string): string {
  return path.split('/').filter(s => s !== '.' && s !== '').join('/')
}
