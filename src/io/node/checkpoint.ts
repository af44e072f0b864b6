/// <reference types="node" />
/**
 * Node-only: reads one MoE block's tensors out of a Hugging Face checkpoint folder (config.json plus
 * model.safetensors, or shards listed in model.safetensors.index.json) without loading the rest: only the
 * headers and the byte ranges of the wanted tensors are read from disk. Exported from 'tfjs-moe/node' so that
 * the root entry stays free of node: imports.
 */
import {access, open, readFile} from 'node:fs/promises';
import * as path from 'node:path';

import type * as tf from '@tensorflow/tfjs-core';

import {decodeSafetensor, parseSafetensorsHeader, SafetensorsHeader} from '../safetensors.js';

function fail(what: string): never {
  throw new Error(`readMoeLayerFromCheckpoint: ${what}`);
}

async function readJson(file: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    fail(`cannot read ${what} '${file}': ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    fail(`${what} '${file}' is not valid JSON: ${(e as Error).message}`);
  }
}

/** tensor name -> shard file name, from the index or from the single file's header. */
async function weightMap(dir: string): Promise<Map<string, string>> {
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  const indexed = await access(indexFile).then(() => true, () => false);
  if (indexed) {
    const index = await readJson(indexFile, 'checkpoint index');
    const map = index.weight_map;
    if (map == null || typeof map !== 'object' || Object.values(map).some(v => typeof v !== 'string')) {
      fail(`'${indexFile}' has no weight_map of tensor name -> file name`);
    }
    return new Map(Object.entries(map as Record<string, string>));
  }
  const single = 'model.safetensors';
  const header = await readHeader(path.join(dir, single));
  return new Map(header.entries.map(e => [e.name, single]));
}

async function readHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await open(file, 'r').catch((e: unknown) => fail(`cannot open '${file}': ${(e as Error).message}`));
  try {
    const {size} = await handle.stat();
    const lengthBytes = new Uint8Array(8);
    await handle.read(lengthBytes, 0, 8, 0);
    const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
    if (headerLength > size || headerLength > 100_000_000) fail(`'${file}': header length ${headerLength} exceeds the file size ${size}`);
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

/** Reads the named tensors from one safetensors file, touching only their byte ranges. */
export async function readSafetensorsFile(file: string, names?: readonly string[]): Promise<Record<string, tf.Tensor>> {
  const header = await readHeader(file);
  const entries = names == null ? header.entries : names.map(name => header.entries.find(e => e.name === name) ??
      fail(`tensor '${name}' is not in '${file}'`));
  const out: Record<string, tf.Tensor> = {};
  const handle = await open(file, 'r');
  try {
    for (const entry of entries) {
      const bytes = new Uint8Array(entry.end - entry.begin);
      const {bytesRead} = await handle.read(bytes, 0, bytes.length, header.dataStart + entry.begin);
      if (bytesRead !== bytes.length) fail(`'${file}': tensor '${entry.name}' is truncated`);
      out[entry.name] = decodeSafetensor(entry, bytes);
    }
  } catch (e) {
    Object.values(out).forEach(t => t.dispose());
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
}

/** What readMoeLayerFromCheckpoint returns: the config, the block's tensors and their prefix. */
export interface MoeLayerCheckpoint {
  /** The parsed config.json. */
  config: Record<string, unknown>;
  /** The block's tensors, full names (prefix included); the caller owns and disposes them. */
  weights: Record<string, tf.Tensor>;
  /** The prefix the tensors were found under (pass it to loadHuggingFaceMoe). */
  prefix: string;
}

/**
 * Reads config.json and one MoE block's tensors from a checkpoint folder. Pass the result to
 * loadHuggingFaceMoe(config, weights, {prefix}) from 'tfjs-moe', then dispose `weights`.
 */
export async function readMoeLayerFromCheckpoint(dir: string, options: ReadMoeLayerOptions): Promise<MoeLayerCheckpoint> {
  options = options ?? {};
  let candidates: string[];
  if (options.prefix != null) {
    candidates = [options.prefix.endsWith('.') ? options.prefix : `${options.prefix}.`];
  } else if (options.layer != null && Number.isInteger(options.layer) && options.layer >= 0) {
    // transformers names the block 'mlp'; Mixtral's hub files 'block_sparse_moe'.
    candidates = ['mlp', 'block_sparse_moe'].map(m => `model.layers.${options.layer}.${m}.`);
  } else {
    fail(`options need 'layer' (a non-negative integer) or 'prefix', got ${JSON.stringify(options)}`);
  }
  const config = await readJson(path.join(dir, 'config.json'), 'model config');
  const map = await weightMap(dir);
  const prefix = candidates.find(p => [...map.keys()].some(k => k.startsWith(p)));
  if (prefix == null) fail(`no tensor in '${dir}' starts with ${candidates.map(c => `'${c}'`).join(' or ')}`);
  const byFile = new Map<string, string[]>();
  for (const [name, file] of map) {
    if (!name.startsWith(prefix)) continue;
    byFile.set(file, [...(byFile.get(file) ?? []), name]);
  }
  const weights: Record<string, tf.Tensor> = {};
  try {
    for (const [file, names] of byFile) {
      if (path.basename(file) !== file) fail(`shard name '${file}' in the index must be a plain file name`);
      Object.assign(weights, await readSafetensorsFile(path.join(dir, file), names));
    }
  } catch (e) {
    Object.values(weights).forEach(t => t.dispose());
    throw e;
  }
  return {config, weights, prefix};
}
