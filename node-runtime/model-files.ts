/**
 * Reads a model's files from disk for ingest: a model.json with the weight files it names, an
 * .onnx with any external-data files beside it, or every file of a folder. Paths named inside a
 * model.json are checked to stay inside the model's folder.
 */
import { readdir, readFile, stat } from 'node:fs/promises'
import { basename, dirname, relative, resolve, sep } from 'node:path'
import type { ModelFile } from '../shared/model/types.ts'
import { InvalidInputError, InvalidModelError } from '../shared/errors/errors.ts'
import { decodeJsonText, modelJsonOf, parseJsonText } from '../shared/formats/_tfjs_json.ts'

const MAX_FILES = 256

async function readAll (dir: string, names: string[]): Promise<ModelFile[]> {
  return await Promise.all(names.map(async name => {
    const full = resolve(dir, name)
    if (!full.startsWith(resolve(dir) + sep)) throw new InvalidModelError(`model file "${name}" points outside ${dir}`)
    try {
      return { path: relative(dir, full).split(sep).join('/'), bytes: new Uint8Array(await readFile(full)) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new InvalidModelError(`model file "${name}" not found in ${dir}`)
      throw err
    }
  }))
}

export async function readModelFiles (path: string): Promise<ModelFile[]> {
  let info
  try {
    info = await stat(path)
  } catch {
    throw new InvalidInputError(`${path}: no such file or folder`)
  }
  if (info.isDirectory()) {
    const names = (await readdir(path, { withFileTypes: true })).filter(e => e.isFile() && !e.name.startsWith('.')).map(e => e.name)
    if (names.length > MAX_FILES) throw new InvalidInputError(`${path}: ${names.length} files, more than a model has (limit ${MAX_FILES})`)
    return await readAll(path, names)
  }
  const dir = dirname(path)
  const name = basename(path)
  if (name.toLowerCase().endsWith('.onnx')) {
    // External data is conventionally named after the model (model.onnx.data, model.onnx_data).
    const siblings = (await readdir(dir, { withFileTypes: true })).filter(e => e.isFile() && e.name !== name && e.name.startsWith(name)).map(e => e.name)
    return await readAll(dir, [name, ...siblings])
  }
  if (name.toLowerCase().endsWith('.json')) {
    const bytes = new Uint8Array(await readFile(path))
    // The same checks as ingest's, so a malformed model.json is named here, not met as a TypeError.
    const json = modelJsonOf(parseJsonText(decodeJsonText(bytes, path), path), path)
    const paths = json.weightsManifest.flatMap(g => g.paths)
    return [{ path: name, bytes }, ...await readAll(dir, [...new Set(paths)])]
  }
  throw new InvalidInputError(`${path}: expected a model.json, an .onnx file or a folder`)
}
