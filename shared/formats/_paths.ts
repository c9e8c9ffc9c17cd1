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

export function basename (path: string): string {
  return path.slice(path.lastIndexOf('/') + 1)
}

/** The folder part of `path`, with its trailing slash ('' at the top). */
export function dirname (path: string): string {
  return path.slice(0, path.lastIndexOf('/') + 1)
}

/** The file at `relative` to the folder of `from`, matching `./`-prefixed names too. */
export function findBeside (files: readonly ModelFile[], from: string, relative: string): ModelFile | undefined {
  const wanted = dirname(normalise(from)) + relative
  return files.find(f => normalise(f.path) === wanted)
}

function normalise (path: string): string {
  return path.split('/').filter(s => s !== '.' && s !== '').join('/')
}
