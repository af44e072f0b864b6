/**
 * Expert weights packed for the wasm kernels, kept in wasm memory across calls. A weight's tensor data is
 * immutable for its dataId (a variable's assign gives it a new one), so the dataId is the key; an expert is packed
 * the first time a call routes rows to it, so decode only ever copies the experts it used. Entries of tensors the
 * backend no longer holds are freed at the next call; past the MOE_WASM_CACHE_MB budget the least recently used
 * experts (not needed by the current call) are evicted.
 */
import * as tf from '@tensorflow/tfjs-core';

import {existingRuntime, WasmRuntime} from './runtime.js';

/** The kernels' format codes (moe_kernels.c FORMAT_*). */
export const WASM_FORMATS = {float32: 0, int8: 1, int4: 2} as const;
export type WasmFormat = keyof typeof WASM_FORMATS;

/**
 * How an expert is packed: plain panels over N, or the two halves (gate, up) padded apart for the SwiGLU GEMM;
 * float32, or int8 / symmetric int4 codes with `group` codes per scale along K.
 */
export interface PackLayout {
  k: number;
  n: number;
  transposed: boolean;
  halves: boolean;
  format: WasmFormat;
  /** Codes per scale (a multiple of 4 dividing k); 0 for float32. */
  group: number;
}

/**
 * An expert weight tensor's host arrays: float32 [E,K,N] (or [E,N,K]), or a packed format's int32 code words and
 * float32 scales (docs/formats.md section 2; each expert's words and scales are contiguous in both layouts).
 */
export type ExpertArrays = {weights: Float32Array} | {words: Int32Array, scales: Float32Array};

/**
 * Where an expert's weights come from: read only when an expert has to be packed (a backend whose synchronous
 * read copies, such as tfjs-backend-wasm's, would otherwise copy the whole tensor on every call).
 */
export type ExpertSource = () => ExpertArrays;

interface Entry extends PackLayout {
  dataId: object;
  /** The backend holding the weight (tells whether its dataId is still alive). */
  backend: unknown;
  numExperts: number;
  bytesPerExpert: number;
  /** Offsets of the packed experts, 0 where not packed. */
  offsets: Uint32Array;
  lastUse: Float64Array;
}

let entries: Entry[] = [];
let residentBytes = 0;
let clock = 0;

function sameLayout(e: Entry, layout: PackLayout): boolean {
  return e.k === layout.k && e.n === layout.n && e.transposed === layout.transposed && e.halves === layout.halves &&
      e.format === layout.format && e.group === layout.group;
}

function freeEntry(rt: WasmRuntime, e: Entry): void {
  for (let x = 0; x < e.numExperts; x++) {
    if (e.offsets[x] !== 0) {
      rt.release(e.offsets[x], e.bytesPerExpert);
      residentBytes -= e.bytesPerExpert;
      e.offsets[x] = 0;
    }
  }
}

/** Frees the entries whose tensors their backend has disposed (when the backend can tell). */
function sweep(rt: WasmRuntime): void {
  entries = entries.filter(e => {
    // The cpu backend's data storage; tfjs-backend-wasm's is dataIdMap.
    const b = e.backend as {data?: {has?: (id: object) => boolean}, dataIdMap?: {has?: (id: object) => boolean}};
    const data = b.data ?? b.dataIdMap;
    if (typeof data?.has !== 'function' || data.has(e.dataId)) return true;
    freeEntry(rt, e);
    return false;
  });
}

/** For the weight-cache sweepers (kernels/weight_caches.ts): a disposed layer's packed experts go now. */
export function sweepWasmWeightCache(): void {
  const rt = existingRuntime();
  if (rt != null) sweep(rt);
}

/** Evicts least recently used experts (other than this call's) until `bytes` more fit the budget. */
function makeRoom(rt: WasmRuntime, bytes: number, now: number): boolean {
  const budget = tf.env().getNumber('MOE_WASM_CACHE_MB') * 1024 * 1024;
  while (residentBytes + bytes > budget) {
    let victim: Entry | null = null, victimExpert = -1, oldest = Infinity;
    for (const e of entries) {
      for (let x = 0; x < e.numExperts; x++) {
        if (e.offsets[x] !== 0 && e.lastUse[x] < now && e.lastUse[x] < oldest) {
          victim = e;
          victimExpert = x;
          oldest = e.lastUse[x];
        }
      }
    }
    if (victim == null) return false;
    rt.release(victim.offsets[victimExpert], victim.bytesPerExpert);
    victim.offsets[victimExpert] = 0;
    residentBytes -= victim.bytesPerExpert;
  }
  return true;
}

/** Copies expert x of `source` into wasm memory at `staging` and packs it at dst. */
function packExpert(rt: WasmRuntime, source: ExpertArrays, numExperts: number, layout: PackLayout, x: number,
                    staging: number, dst: number): void {
  const transposed = layout.transposed ? 1 : 0, halves = layout.halves ? 1 : 0;
  if ('weights' in source) {
    const per = source.weights.length / numExperts;
    rt.f32(staging, per).set(source.weights.subarray(x * per, (x + 1) * per));
    rt.exports.pack_expert(staging, dst, layout.k, layout.n, transposed, halves);
    return;
  }
  const words = source.words.length / numExperts, scales = source.scales.length / numExperts;
  const scalesAt = staging + Math.ceil(words / 16) * 64;
  rt.i32(staging, words).set(source.words.subarray(x * words, (x + 1) * words));
  rt.f32(scalesAt, scales).set(source.scales.subarray(x * scales, (x + 1) * scales));
  rt.exports.pack_expert_quantized(staging, scalesAt, dst, WASM_FORMATS[layout.format], layout.k, layout.n,
                                   layout.group, transposed, halves);
}

/** Bytes of staging one expert of `source` needs. */
function stagingBytes(source: ExpertArrays, numExperts: number): number {
  if ('weights' in source) return source.weights.length / numExperts * 4;
  return Math.ceil(source.words.length / numExperts / 16) * 64 + source.scales.length / numExperts * 4;
}

/**
 * Offsets of the packed experts of `source` (the tensor behind `dataId`) that have rows in `offsets` (0 for the
 * others), packing the missing ones; null when they do not fit (the caller runs the JS kernel).
 */
export function packedExperts(rt: WasmRuntime, backend: unknown, dataId: object, source: ExpertSource,
                              numExperts: number, layout: PackLayout, offsets: Int32Array): Uint32Array | null {
  sweep(rt);
  const now = ++clock;
  let entry = entries.find(e => e.dataId === dataId && sameLayout(e, layout));
  if (entry == null) {
    const bytesPerExpert = rt.exports.packed_expert_bytes(WASM_FORMATS[layout.format], layout.k, layout.n,
                                                          layout.group, layout.halves ? 1 : 0);
    entry = {...layout, dataId, backend, numExperts, bytesPerExpert, offsets: new Uint32Array(numExperts),
      lastUse: new Float64Array(numExperts)};
    entries.push(entry);
  }
  const result = new Uint32Array(numExperts);
  let arrays: ExpertArrays | null = null;
  let expertBytes = 0;
  let staging = 0;
  try {
    for (let x = 0; x < numExperts; x++) {
      if (offsets[x + 1] <= offsets[x]) continue;
      entry.lastUse[x] = now;
      if (entry.offsets[x] === 0) {
        if (!makeRoom(rt, entry.bytesPerExpert, now)) return null;
        const dst = rt.alloc(entry.bytesPerExpert);
        if (dst == null) return null;
        residentBytes += entry.bytesPerExpert;
        entry.offsets[x] = dst;
        if (staging === 0) {
          arrays = source();
          expertBytes = stagingBytes(arrays, numExperts);
          const s = rt.alloc(expertBytes);
          if (s == null) return null;
          staging = s;
        }
        packExpert(rt, arrays!, numExperts, layout, x, staging, dst);
      }
      result[x] = entry.offsets[x];
    }
  } finally {
    if (staging !== 0) rt.release(staging, expertBytes);
  }
  return result;
}

/** Bytes of packed expert weights held now (specs and memory accounting). */
export function wasmWeightCacheBytes(): number {
  return residentBytes;
}

/** Frees every packed weight now (they are packed again when next used). */
export function clearWasmWeightCache(): void {
  const rt = existingRuntime();
  if (rt != null) for (const e of entries) freeEntry(rt, e);
  entries = [];
}
