/// <reference types="node" />
/**
 * Node-only: reads one MoE block's tensors out of a Hugging Face checkpoint folder (config.json plus
 * model.safetensors, or shards listed in model.safetensors.index.json) without loading the rest: only the
 * headers and the byte ranges of the wanted tensors are read from disk. Exported from 'tfjs-moe/node' so that
 * the root entry stays free of node: imports.
 */
import {lstat, readFile} from 'node:fs/promises';
import * as path from 'node:path';

import type * as tf from '@tensorflow/tfjs-core';

import {describeValue} from '../../ops/limits.js';
import {isRawSafetensor, keepOrDecode, parseSafetensorsHeader, RawSafetensor, SafetensorsHeader} from '../safetensors.js';
import {CheckpointFolder, openRegularFile} from './checkpoint_files.js';

function fail(what: string): never {
  throw new Error(`readMoeLayerFromCheckpoint: ${what}`);
}

async function readJson(folder: CheckpointFolder, file: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  const handle = await folder.open(file, what, fail);
  try {
    text = await readFile(handle, 'utf8');
  } catch (e) {
    fail(`cannot read ${what} '${file}': ${(e as Error).message}`);
  } finally {
    await handle.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // V8's messages quote the text; a file that is not JSON must not have its content echoed.
    const at = /position (\d+)/.exec((e as Error).message);
    fail(`${what} '${file}' is not valid JSON${at == null ? '' : ` (at position ${at[1]})`}`);
  }
  if (json == null || typeof json !== 'object' || Array.isArray(json)) {
    fail(`${what} '${file}' must hold a JSON object, got ${Array.isArray(json) ? 'an array' : describeValue(json)}`);
  }
  return json as Record<string, unknown>;
}

/** tensor name -> shard file name, from the index or from the single file's header. */
async function weightMap(folder: CheckpointFolder): Promise<Map<string, string>> {
  const indexFile = path.join(folder.dir, 'model.safetensors.index.json');
  const indexed = await lstat(indexFile).then(() => true, () => false);
  if (indexed) {
    const index = await readJson(folder, indexFile, 'checkpoint index');
    const map = index.weight_map;
    if (map == null || typeof map !== 'object' || Array.isArray(map) ||
        Object.values(map).some(v => typeof v !== 'string')) {
      fail(`'${indexFile}' has no weight_map of tensor name -> file name`);
    }
    return new Map(Object.entries(map as Record<string, string>));
  }
  const single = 'model.safetensors';
  const header = await readHeader(path.join(folder.dir, single), folder);
  return new Map(header.entries.map(e => [e.name, single]));
}

async function readHeader(file: string, folder: CheckpointFolder | null): Promise<SafetensorsHeader> {
  const handle = folder == null ? await openRegularFile(file, 'safetensors file', fail) :
                                  await folder.open(file, 'safetensors shard', fail);
  try {
    const {size} = await handle.stat();
    const lengthBytes = new Uint8Array(8);
    const {bytesRead} = await handle.read(lengthBytes, 0, 8, 0);
    if (bytesRead < 8) fail(`'${file}' is not a safetensors file (${bytesRead} bytes, fewer than the 8 of the header length)`);
    const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
    // The length is the file's first bytes: name it only when it could be one.
    if (headerLength > 100_000_000) fail(`'${file}' is not a safetensors file`);
    if (headerLength > size) {
      fail(`'${file}' is not a safetensors file (header length ${headerLength} exceeds the file size ${size})`);
    }
    const prefix = new Uint8Array(8 + headerLength);
    await handle.read(prefix, 0, prefix.length, 0);
    try {
      return parseSafetensorsHeader(prefix, size);
    } catch (e) {
      fail(`'${file}': ${(e as Error).message}`);
    }
  } finally {
    await handle.close();
  }
}

/** Options of {@link readSafetensorsFile}. */
export interface ReadSafetensorsFileOptions {
  /**
   * Return F16 / BF16 / U8 / I8 tensors as RawSafetensor (their bytes, no float32 expansion), as readSafetensors'
   * keepDtype: loadHuggingFaceMoe then copies BF16 / F16 experts into 'bfloat16' / 'float16' layers bit for bit.
   */
  keepDtype?: boolean;
}

function checkKeepDtype(options: unknown): boolean {
  if (options == null) return false;
  if (typeof options !== 'object' || Array.isArray(options)) {
    fail(`argument 'options' must be an options object {keepDtype?}, got ${describeValue(options)}`);
  }
  const keep = (options as ReadSafetensorsFileOptions).keepDtype ?? false;
  if (typeof keep !== 'boolean') fail(`option 'keepDtype' must be a boolean, got ${describeValue(keep)}`);
  return keep;
}

/** Reads the named tensors from one safetensors file, touching only their byte ranges. */
export async function readSafetensorsFile(file: string, names?: readonly string[],
                                          options?: ReadSafetensorsFileOptions & {keepDtype?: false}):
    Promise<Record<string, tf.Tensor>>;
export async function readSafetensorsFile(file: string, names: readonly string[] | undefined,
                                          options: ReadSafetensorsFileOptions):
    Promise<Record<string, tf.Tensor | RawSafetensor>>;
export async function readSafetensorsFile(file: string, names?: readonly string[],
                                          options?: ReadSafetensorsFileOptions):
    Promise<Record<string, tf.Tensor | RawSafetensor>> {
  if (typeof file !== 'string') fail(`argument 'file' must be a path string, got ${describeValue(file)}`);
  if (names != null && (!Array.isArray(names) || names.some(n => typeof n !== 'string'))) {
    fail(`argument 'names' must be an array of tensor names, got ${describeValue(names)}`);
  }
  return readTensors(file, names, null, checkKeepDtype(options));
}

function disposeTensors(tensors: Record<string, tf.Tensor | RawSafetensor>): void {
  for (const t of Object.values(tensors)) if (!isRawSafetensor(t)) t.dispose();
}

/** readSafetensorsFile, with the file opened through `folder`'s checks when it belongs to a checkpoint folder. */
async function readTensors(file: string, names: readonly string[] | undefined, folder: CheckpointFolder | null,
                           keepDtype: boolean): Promise<Record<string, tf.Tensor | RawSafetensor>> {
  const header = await readHeader(file, folder);
  const byName = new Map(header.entries.map(e => [e.name, e]));
  const entries = names == null ? header.entries : names.map(name => byName.get(name) ??
      fail(`tensor '${name}' is not in '${file}'`));
  // Null prototype: a tensor named '__proto__' is an own key, never the object's prototype.
  const out: Record<string, tf.Tensor | RawSafetensor> = Object.create(null);
  const handle = folder == null ? await openRegularFile(file, 'safetensors file', fail) :
                                  await folder.open(file, 'safetensors shard', fail);
  try {
    for (const entry of entries) {
      const bytes = new Uint8Array(entry.end - entry.begin);
      const {bytesRead} = await handle.read(bytes, 0, bytes.length, header.dataStart + entry.begin);
      if (bytesRead !== bytes.length) fail(`'${file}': tensor '${entry.name}' is truncated`);
      out[entry.name] = keepOrDecode(entry, bytes, keepDtype);
    }
  } catch (e) {
    disposeTensors(out);
    throw e;
  } finally {
    await handle.close();
  }
  return out;
}

/** Options of {@link readMoeLayerFromCheckpoint}: which block to read. */
export interface ReadMoeLayerOptions {
  /** Decoder layer index: the block is looked up as model.layers.{layer}.mlp. (or .block_sparse_moe.). */
  layer?: number;
  /** Explicit prefix of the block's tensors (overrides `layer`), e.g. 'model.layers.3.mlp.'. */
  prefix?: string;
  /**
   * Read files whose real path (symlinks resolved) lies outside the folder (default false: refused, naming the
   * file). Inside a Hugging Face cache snapshot (<repo>/snapshots/<rev>/), the repo folder holding snapshots/
   * and blobs/ counts as inside.
   */
  allowOutsideFolder?: boolean;
  /**
   * Keep F16 / BF16 / U8 / I8 tensors in their file dtype (RawSafetensor, see readSafetensorsFile), default false.
   * Loading a bf16 checkpoint into a 'bfloat16' layer then never holds the experts in float32.
   */
  keepDtype?: boolean;
}

/** What readMoeLayerFromCheckpoint returns: the config, the block's tensors and their prefix. */
export interface MoeLayerCheckpoint<T = tf.Tensor> {
  /** The parsed config.json. */
  config: Record<string, unknown>;
  /**
   * The block's tensors, full names (prefix included); the caller owns and disposes them (RawSafetensor entries,
   * with keepDtype, are plain bytes and need no disposal).
   */
  weights: Record<string, T>;
  /** The prefix the tensors were found under (pass it to loadHuggingFaceMoe). */
  prefix: string;
}

/**
 * Reads config.json and one MoE block's tensors from a checkpoint folder. Pass the result to
 * loadHuggingFaceMoe(config, weights, {prefix}) from 'tfjs-moe', then dispose `weights`.
 */
export async function readMoeLayerFromCheckpoint(dir: string, options: ReadMoeLayerOptions & {keepDtype?: false}):
    Promise<MoeLayerCheckpoint>;
export async function readMoeLayerFromCheckpoint(dir: string, options: ReadMoeLayerOptions):
    Promise<MoeLayerCheckpoint<tf.Tensor | RawSafetensor>>;
export async function readMoeLayerFromCheckpoint(dir: string, options: ReadMoeLayerOptions):
    Promise<MoeLayerCheckpoint<tf.Tensor | RawSafetensor>> {
  if (typeof dir !== 'string' || dir === '') fail(`argument 'dir' must be a folder path, got ${describeValue(dir)}`);
  if (options == null || typeof options !== 'object' || Array.isArray(options)) {
    fail(`argument 'options' must be an object {layer} or {prefix}, got ${describeValue(options)}`);
  }
  const known = ['layer', 'prefix', 'allowOutsideFolder', 'keepDtype'];
  const unknown = Object.keys(options).filter(k => !known.includes(k));
  if (unknown.length > 0) fail(`unknown option '${unknown[0]}' (options: ${known.join(', ')})`);
  let candidates: string[];
  if (options.prefix != null) {
    if (typeof options.prefix !== 'string' || options.prefix === '') {
      fail(`option 'prefix' must be a non-empty string, got ${describeValue(options.prefix)}`);
    }
    candidates = [options.prefix.endsWith('.') ? options.prefix : `${options.prefix}.`];
  } else if (options.layer != null && Number.isSafeInteger(options.layer) && options.layer >= 0) {
    // transformers names the block 'mlp'; Mixtral's hub files 'block_sparse_moe'.
    candidates = ['mlp', 'block_sparse_moe'].map(m => `model.layers.${options.layer}.${m}.`);
  } else {
    fail(`options need 'layer' (a non-negative integer) or 'prefix', got ${
        options.layer != null ? `layer ${describeValue(options.layer)}` : 'neither'}`);
  }
  const allowOutside = options.allowOutsideFolder ?? false;
  if (typeof allowOutside !== 'boolean') {
    fail(`option 'allowOutsideFolder' must be a boolean, got ${describeValue(allowOutside)}`);
  }
  const keepDtype = checkKeepDtype({keepDtype: options.keepDtype});
  const folder = await CheckpointFolder.resolve(dir, allowOutside, fail);
  const config = await readJson(folder, path.join(dir, 'config.json'), 'model config');
  const map = await weightMap(folder);
  const prefix = candidates.find(p => [...map.keys()].some(k => k.startsWith(p)));
  if (prefix == null) fail(`no tensor in '${dir}' starts with ${candidates.map(c => `'${c}'`).join(' or ')}`);
  const byFile = new Map<string, string[]>();
  for (const [name, file] of map) {
    if (!name.startsWith(prefix)) continue;
    byFile.set(file, [...(byFile.get(file) ?? []), name]);
  }
  const weights: Record<string, tf.Tensor | RawSafetensor> = Object.create(null);
  try {
    for (const [file, names] of byFile) {
      if (path.basename(file) !== file || file === '.' || file === '..' || file === '' || file.includes('\0')) {
        fail(`shard name ${JSON.stringify(file)} in the index must be a plain file name`);
      }
      const shard = await readTensors(path.join(dir, file), names, folder, keepDtype);
      for (const name of Object.keys(shard)) weights[name] = shard[name];
    }
  } catch (e) {
    disposeTensors(weights);
    throw e;
  }
  return {config, weights, prefix};
}
