/**
 * A model's files on disk. Reading, for ingest: a model.json with the weight files it names, an
 * .onnx with the external-data files it names, or a folder holding one of those (read the same
 * way, so subfolders and symlinked files count: what `pull` writes reads back); paths named
 * inside a model are checked to stay inside the model's folder, and so, by default, are the files
 * their links lead to. Writing, for pull: the files named by others first, the file naming them last.
 */
import { mkdir, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'
import type { ModelFile } from '../shared/model/types.ts'
import { IntegrityError, InvalidInputError, InvalidModelError } from '../shared/errors/errors.ts'
import { syncDir, writeTemporary } from './atomic-file.ts'
import { decodeJsonText, modelJsonOf, parseJsonText } from '../shared/formats/_tfjs_json.ts'
import { onnxExternalFiles } from '../shared/formats/onnx.ts'

const MAX_FILES = 256

/**
 * `path` (through its links) is a regular file: a link to /dev/zero read until the heap gave out,
 * one to a pipe waited for ever (review 46c).
 */
async function regularFile (path: string, what: string): Promise<void> {
  const info = await stat(path)
  if (info.isDirectory()) throw new InvalidModelError(`${what} is a folder, not a file`)
  if (!info.isFile()) throw new InvalidModelError(`${what} is not a regular file (a device, pipe or socket)`)
}

/**
 * The files a model's entry names beside it, as written in it: an .onnx's external-data files,
 * a model.json's weight files (each once). Checked as ingest checks them: a malformed model.json
 * is named here, not met as a TypeError.
 */
function namedIn (entry: ModelFile): string[] {
  if (/\.onnx$/i.test(entry.path)) return onnxExternalFiles(entry)
  const json = modelJsonOf(parseJsonText(decodeJsonText(entry.bytes, entry.path), entry.path), entry.path)
  return [...new Set(json.weightsManifest.flatMap(g => g.paths))]
}

export interface ReadModelOptions {
  /**
   * Read a file the model names even where links lead it out of the model's folder (a Hugging
   * Face cache links a snapshot's files to blobs beside it). Off by default: a model folder from
   * someone else (a cloned repository keeps its links) could name `w.bin` linked to
   * `~/.ssh/id_rsa`, and ingest would upload that file into a model every edge token may pull
   * (review 46c M2).
   */
  followLinksOut?: boolean
}

/**
 * Refuses `target` (a path through its links) outside `home` (the model's folder, through its
 * links: a folder reached through a link is itself), said as `what`.
 */
function refuseLinkOut (home: string, target: string, what: string): void {
  if (!target.startsWith(home + sep)) {
    throw new InvalidModelError(`${what} is a link to ${target}, outside the model's folder; links out of it are read only when asked for (blockfed ingest --follow-links), for a folder from a source you trust`)
  }
}

async function readAll (dir: string, names: string[], options: ReadModelOptions): Promise<ModelFile[]> {
  const home = options.followLinksOut === true ? undefined : await realpath(dir)
  return await Promise.all(names.map(async name => {
    const full = resolve(dir, name)
    if (!full.startsWith(resolve(dir) + sep)) throw new InvalidModelError(`model file "${name}" points outside ${dir}`)
    try {
      // What the links lead to is what is checked and read.
      const target = await realpath(full)
      if (home !== undefined) refuseLinkOut(home, target, `model file "${name}" in ${dir}`)
      await regularFile(target, `model file "${name}" in ${dir}`)
      return { path: relative(dir, full).split(sep).join('/'), bytes: new Uint8Array(await readFile(target)) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new InvalidModelError(`model file "${name}" not found in ${dir}`)
      throw err
    }
  }))
}

/**
 * The one model.json or .onnx at the top of `dir`, chosen as the coordinator's reader chooses
 * (shared/formats/model_files.ts): an .onnx (refused beside a model.json), then a lone .json or
 * the one named model.json. Symlinks count as what they point to; dot-files (pull's temporary
 * files) do not.
 */
async function entryOf (dir: string): Promise<string> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter(e => !e.name.startsWith('.') && /\.(json|onnx)$/i.test(e.name))
  if (entries.length > MAX_FILES) throw new InvalidInputError(`${dir}: ${entries.length} .json and .onnx files, more than a model has (limit ${MAX_FILES})`)
  const files: string[] = []
  for (const e of entries) {
    if (e.isFile() || (e.isSymbolicLink() && await stat(join(dir, e.name)).then(i => i.isFile(), () => false))) files.push(e.name)
  }
  files.sort()
  const onnx = files.filter(f => /\.onnx$/i.test(f))
  if (onnx.length > 1) throw new InvalidInputError(`${dir}: several .onnx files (${onnx.join(', ')}); give the path of the model's one`)
  // Two models (a folder holds one): taking the .onnx silently ingested the other one (review 46a).
  if (onnx[0] !== undefined && files.includes('model.json')) throw new InvalidInputError(`${dir}: both ${onnx[0]} and model.json, two models; give the path of the one to use`)
  if (onnx[0] !== undefined) return onnx[0]
  const only = files.length === 1 ? files[0] : files.find(f => f === 'model.json')
  if (only !== undefined) return only
  throw new InvalidInputError(files.length === 0
    ? `${dir}: no model.json or .onnx file in it`
    : `${dir}: several .json files (${files.join(', ')}) and none named model.json; give the path of the model's one`)
}

export async function readModelFiles (path: string, options: ReadModelOptions = {}): Promise<ModelFile[]> {
  let info
  try {
    info = await stat(path)
  } catch {
    throw new InvalidInputError(`${path}: no such file or folder`)
  }
  if (info.isDirectory()) {
    const entry = join(path, await entryOf(path))
    // The folder's own model.json or .onnx is held to its folder too (review 47e): a link out of
    // it read any JSON file, whose text then went into the model. Named directly, it is the user's choice.
    if (options.followLinksOut !== true) {
      const [home, target] = await Promise.all([realpath(path), realpath(entry)])
      refuseLinkOut(home, target, entry)
    }
    return await readModelFiles(entry, options)
  }
  await regularFile(path, path)
  const dir = dirname(path)
  const name = basename(path)
  const onnx = name.toLowerCase().endsWith('.onnx')
  if (onnx || name.toLowerCase().endsWith('.json')) {
    // The files it names, whatever their names (siblings named after an .onnx missed a
    // `weights.bin`, and took a `model.onnx.bak` it never named).
    const file = { path: name, bytes: new Uint8Array(await readFile(path)) }
    const named = namedIn(onnx ? file : { ...file, path })
    if (named.length + 1 > MAX_FILES) throw new InvalidInputError(`${path}: names ${named.length} ${onnx ? 'external-data' : 'weight'} files, more than a model has (limit ${MAX_FILES - 1})`)
    return [file, ...await readAll(dir, named, options)]
  }
  throw new InvalidInputError(`${path}: expected a model.json, an .onnx file or a folder`)
}

/** The files others are found through (a tfjs model.json, an .onnx naming its external data): put in place last. */
const isEntry = (path: string): boolean => /\.(json|onnx)$/i.test(path)

/**
 * A folder holds one model: an .onnx, or a model.json, at its top that this write does not
 * replace is another model's, and writing beside it would leave a folder that reads back as
 * either one (entryOf takes an .onnx first). Refused before anything is written.
 */
async function refuseAnotherModel (root: string, folder: string, targets: string[]): Promise<void> {
  const ours = new Set(targets)
  const names = await readdir(root).catch(() => [] as string[])
  const other = names.filter(name => !name.startsWith('.') && (/\.onnx$/i.test(name) || name === 'model.json') && !ours.has(join(root, name))).sort()
  if (other.length > 0) {
    throw new InvalidInputError(`${folder} holds another model (${other.join(', ')}), and a folder holds one model: write into an empty folder, or remove that model first`)
  }
}

/** Entry files larger than this are not read for the files they name (a graph with its weights inside names none). */
const ENTRY_READ_BYTES = 64 << 20

/** The files an entry (a model.json or .onnx) names beside it; none when it is not one that parses. */
async function namedBy (entry: string): Promise<string[]> {
  try {
    if ((await stat(entry)).size > ENTRY_READ_BYTES) return []
    return namedIn({ path: basename(entry), bytes: new Uint8Array(await readFile(entry)) }).map(n => resolve(dirname(entry), n))
  } catch {
    return []
  }
}

/**
 * An entry this write replaces whose model names files this one does not write: left beside the
 * new model they would be another model's weights (review 46a: a pull over a movenet folder left
 * its 4.6 MB .bin beside the new model.json). Refused before anything is written.
 */
async function refuseLeftovers (folder: string, files: readonly ModelFile[], targets: string[]): Promise<void> {
  const root = resolve(folder)
  const ours = new Set(targets)
  const left: string[] = []
  for (const [i, f] of files.entries()) {
    if (!isEntry(f.path)) continue
    for (const named of await namedBy(targets[i] as string)) {
      // Only files in the folder: what an old entry names elsewhere is no file of the folder's.
      if (!named.startsWith(`${root}${sep}`) || ours.has(named)) continue
      if (await stat(named).then(info => info.isFile(), () => false)) left.push(relative(root, named))
    }
  }
  if (left.length > 0) {
    throw new InvalidInputError(`${folder} holds a model whose ${[...new Set(left)].sort().join(', ')} this one would leave behind, beside its own files; write into an empty folder, or remove that model first`)
  }
}

/** A name beside `target` for its temporary or set-aside copy: a dot-file, which ingest does not read as part of a model. */
const besideHidden = (target: string): string => join(dirname(target), `.${basename(target)}`)

/**
 * Writes `files` under `folder` so that no moment, failure or kill leaves a model that is not
 * this one whole or the one that was there: every path is checked first, every file is written
 * beside its target under a temporary name, and only then are they renamed into place, the entry
 * files last — a reader finds a model.json or .onnx only once what it names is there. An entry
 * already in place (an earlier pull into the same folder) is first set aside, so it never names
 * weight files this call has begun to replace.
 *
 * On failure the temporary files and the files this call created are removed. An earlier model
 * is put back if none of its files had been replaced yet; otherwise it is gone (its replaced
 * files keep their new bytes) and the folder holds no entry file, so no model at all. A kill
 * part-way leaves the same, plus the set-aside entry under `.<name>.<random>.old` (temporary
 * files are dot-files too, so neither is read as part of a model by a later ingest). An entry
 * file of an earlier model that this one does not have (another .onnx name) is left as it is.
 */
export async function writeModelFiles (folder: string, files: readonly ModelFile[], signal?: AbortSignal): Promise<string[]> {
  const root = resolve(folder)
  const targets = files.map(f => {
    const target = resolve(root, f.path)
    // The manifest's schema already refuses paths that leave the folder; checked again where it matters.
    if (!target.startsWith(`${root}${sep}`)) throw new IntegrityError(`model file "${f.path}" would be written outside ${folder}`)
    return target
  })
  await refuseAnotherModel(root, folder, targets)
  await refuseLeftovers(folder, files, targets)
  const written: Array<{ tmp: string, target: string, entry: boolean }> = []
  const created: string[] = []
  const aside: Array<{ target: string, moved: string }> = []
  let replaced = false
  try {
    for (const [i, f] of files.entries()) {
      const target = targets[i] as string
      // A folder where an entry goes would be set aside with the entry's old copies, and not removed after.
      if (isEntry(f.path) && await stat(target).then(info => info.isDirectory(), () => false)) {
        throw new InvalidInputError(`${target} is a folder; the model's ${basename(target)} cannot be written there`)
      }
    }
    for (const [i, f] of files.entries()) {
      signal?.throwIfAborted()
      const target = targets[i] as string
      await mkdir(dirname(target), { recursive: true })
      written.push({ tmp: await writeTemporary(besideHidden(target), f.bytes), target, entry: isEntry(f.path) })
    }
    // The last point to stop at: past it every file goes into place.
    signal?.throwIfAborted()
    const entries = written.filter(w => w.entry)
    for (const { target } of entries) {
      const moved = `${besideHidden(target)}.${randomBytes(6).toString('hex')}.old`
      try {
        await rename(target, moved)
        aside.push({ target, moved })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
    }
    for (const w of [...written.filter(w => !w.entry), ...entries]) {
      const existed = await stat(w.target).then(() => true, () => false)
      await rename(w.tmp, w.target)
      if (existed) replaced = true
      else created.push(w.target)
      await syncDir(dirname(w.target))
    }
  } catch (err) {
    await Promise.all(created.map(async path => { await rm(path, { force: true }) }))
    if (!replaced) {
      // The earlier model is whole again; an entry that cannot be put back stays where it was set aside.
      for (const a of aside) await rename(a.moved, a.target).catch(() => {})
      aside.length = 0
    }
    throw err
  } finally {
    await Promise.all([...written.map(w => w.tmp), ...aside.map(a => a.moved)].map(async path => { await rm(path, { force: true }) }))
  }
  return targets
}
