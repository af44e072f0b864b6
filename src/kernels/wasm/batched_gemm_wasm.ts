/**
 * The expert GEMMs as WebAssembly SIMD for the cpu kernels (moe_kernels.c). Each function takes the host arrays
 * the cpu kernel already read and validated and returns the output array, or null when the wasm path is off
 * or cannot run this call (no SIMD, flag MOE_WASM false, memory exhausted, a packed format or group size the
 * kernels do not have): the caller then runs its JS impl.
 *
 * Per call, the activations are copied into wasm memory and the output copied out; the expert weights stay
 * packed in wasm memory between calls (weight_cache.ts), keyed by the weight tensor's dataId. For the cpu layer
 * forward a call can also gather its rows from the unpermuted tokens and combine its output there (LayerSteps).
 */
import type {ExpertWeightData, ExpertWeightLayout} from '../expert_weight_formats.js';
import {ExpertArrays, ExpertSource, packedExperts, PackLayout, WASM_FORMATS} from './weight_cache.js';
import {ThreadedEntry, wasmRuntime, WasmRuntime} from './runtime.js';

/** The per-call arrays, laid out in one block of wasm memory. */
class CallArena {
  private offset = 0;
  private bytes = 0;
  private cursor = 0;

  constructor(private readonly rt: WasmRuntime) {}

  /** Reserves `bytes` for this call (reusing the previous call's block when large enough); false when out of memory. */
  reset(bytes: number): boolean {
    if (bytes > this.bytes) {
      if (this.bytes > 0) this.rt.release(this.offset, this.bytes);
      this.bytes = 0;
      const offset = this.rt.alloc(bytes);
      if (offset == null) return false;
      this.offset = offset;
      this.bytes = bytes;
    }
    this.cursor = this.offset;
    return true;
  }

  take(bytes: number): number {
    const at = this.cursor;
    this.cursor += Math.ceil(bytes / 64) * 64;
    return at;
  }
}

let arena: CallArena | null = null;

/**
 * Multiply-adds of weight streaming (one per packed weight of an active expert) plus a quarter per row's
 * multiply-add (the tiles reuse each loaded weight for 4 rows) below which one more thread does not pay.
 */
const MIN_WORK_PER_THREAD = 1 << 19;

const padded = (bytes: number) => Math.ceil(bytes / 64) * 64;

/**
 * The cpu layer forward's permute and combine around an expert GEMM (layer_forward.ts), done on the rows in wasm
 * memory: the rows are not permuted in JavaScript first, nor the GEMM's output copied out to be combined there.
 */
export interface LayerSteps {
  /** [R]: the lhs row each permuted row copies (the GEMM's lhs is then x [T, k], not the permuted rows). */
  gather?: Int32Array;
  /**
   * The output combined over each token's slots (moe_combine in moe_kernels.c, the same floats as
   * moeCombineImpl without biases or identity slots): [tokens, n] instead of [R, n]. rowMap [tokens * topK] holds
   * rows of the output only (no -1).
   */
  combine?: {rowMap: Int32Array, topkWeights: Float32Array, tokens: number, topK: number, weightsApplied: boolean};
}

interface ExpertCall {
  backend: unknown;
  lhs: Float32Array;
  numRows: number;
  k: number;
  source: ExpertSource;
  /** The weight tensor's dataId (packed experts are cached under it). */
  rhsDataId: object;
  numExperts: number;
  layout: PackLayout;
  offsets: Int32Array;
  bias: Float32Array | null;
  scale: Float32Array | null;
  /** Output columns. */
  outCols: number;
  entry: ThreadedEntry;
  steps?: LayerSteps;
}

function runExpertCall(c: ExpertCall): Float32Array | null {
  const rt = wasmRuntime();
  if (rt == null) return null;
  const first = c.offsets[0], last = c.offsets[c.numExperts];
  const combine = c.steps?.combine, gather = c.steps?.gather;
  // The combine reads every row of the output: only when the segments cover them all.
  if (combine != null && (first !== 0 || last !== c.numRows)) return null;
  const out = new Float32Array((combine != null ? combine.tokens : c.numRows) * c.outCols);
  // Rows outside every segment are zero (as allocated); nothing to compute without rows or columns.
  if (last <= first || c.outCols === 0) return out;
  const weights = packedExperts(rt, c.backend, c.rhsDataId, c.source, c.numExperts, c.layout, c.offsets);
  if (weights == null) return null;
  const k = c.k, rows = last - first;
  let activeExperts = 0;
  for (let e = 0; e < c.numExperts; e++) if (c.offsets[e + 1] > c.offsets[e]) activeExperts++;
  // Waking a worker costs tens of microseconds: small calls stay on the calling thread.
  const work = activeExperts * k * c.layout.n + rows * k * c.layout.n / 4;
  const threads = Math.min(rt.threads(), Math.max(1, Math.floor(work / MIN_WORK_PER_THREAD)));
  const scratchFloats = rt.exports.scratch_floats_per_thread(k);
  // Only the segment rows [first, last) travel; offsets are rebased to them.
  const slots = combine != null ? combine.tokens * combine.topK : 0;
  const bytes = padded(rows * k * 4) + padded(rows * c.outCols * 4) + padded((c.numExperts + 1) * 4) +
      padded(c.numExperts * 4) + padded((c.bias?.length ?? 0) * 4) + padded(c.scale != null ? rows * 4 : 0) +
      padded(4) + threads * scratchFloats * 4 +
      (combine != null ? 2 * padded(slots * 4) + padded(combine.tokens * c.outCols * 4) : 0);
  if (arena == null) arena = new CallArena(rt);
  if (!arena.reset(bytes)) return null;
  const lhsAt = arena.take(rows * k * 4), outAt = arena.take(rows * c.outCols * 4);
  const offsetsAt = arena.take((c.numExperts + 1) * 4), weightsAt = arena.take(c.numExperts * 4);
  const biasAt = c.bias != null ? arena.take(c.bias.length * 4) : 0;
  const scaleAt = c.scale != null ? arena.take(rows * 4) : 0;
  const scratchAt = arena.take(threads * scratchFloats * 4);
  // The counter the threads take work items from (moe_kernels.c claim), zero before every call.
  const workAt = arena.take(4);
  rt.i32(workAt, 1)[0] = 0;
  if (gather != null) {
    const dst = rt.f32(lhsAt, rows * k);
    for (let r = first; r < last; r++) dst.set(c.lhs.subarray(gather[r] * k, gather[r] * k + k), (r - first) * k);
  } else {
    rt.f32(lhsAt, rows * k).set(c.lhs.subarray(first * k, last * k));
  }
  const rebased = rt.i32(offsetsAt, c.numExperts + 1);
  for (let e = 0; e <= c.numExperts; e++) rebased[e] = c.offsets[e] - first;
  rt.u32(weightsAt, c.numExperts).set(weights);
  if (c.bias != null) rt.f32(biasAt, c.bias.length).set(c.bias);
  if (c.scale != null) rt.f32(scaleAt, rows).set(c.scale.subarray(first, last));
  const common = [lhsAt, k, outAt, c.outCols, offsetsAt, c.numExperts, weightsAt, biasAt,
    WASM_FORMATS[c.layout.format], c.layout.group];
  // The kernel picks its thread's slice of the scratch block.
  rt.run(c.entry, [...common, ...(c.entry === 'moe_gemm' ? [] : [scaleAt]), scratchAt, workAt], threads);
  if (combine != null) {
    const rowMapAt = arena.take(slots * 4), topkAt = arena.take(slots * 4);
    const combinedAt = arena.take(combine.tokens * c.outCols * 4);
    rt.i32(rowMapAt, slots).set(combine.rowMap.subarray(0, slots));
    rt.f32(topkAt, slots).set(combine.topkWeights.subarray(0, slots));
    rt.exports.moe_combine(outAt, c.outCols, rowMapAt, topkAt, combine.tokens, combine.topK,
                           combine.weightsApplied ? 1 : 0, combinedAt);
    out.set(rt.f32(combinedAt, combine.tokens * c.outCols));
    return out;
  }
  out.set(rt.f32(outAt, rows * c.outCols), first * c.outCols);
  return out;
}

const floatLayout = (k: number, n: number, transposed: boolean, halves: boolean): PackLayout =>
  ({k, n, transposed, halves, format: 'float32', group: 0});

/**
 * batchedGemm (semantics doc section 4) on host arrays; offsets validated [E+1]. rhs reads the weights' host array
 * (called only when an expert is not packed yet).
 */
export function wasmBatchedGemm(
    backend: unknown, lhs: Float32Array, numRows: number, k: number, rhs: () => Float32Array, rhsDataId: object,
    numExperts: number, n: number, offsets: Int32Array, transposeRhs: boolean, bias: Float32Array | null,
    steps?: LayerSteps): Float32Array | null {
  return runExpertCall({backend, lhs, numRows, k, source: () => ({weights: rhs()}), rhsDataId, numExperts, offsets,
    bias, scale: null, outCols: n, layout: floatLayout(k, n, transposeRhs, false), entry: 'moe_gemm', steps});
}

/**
 * fusedSwigluScale(batchedGemm(lhs, rhs, offsets, bias), scale) in one pass: rhs [E,K,2I] (or [E,2I,K] with
 * transposeRhs; gate columns first), bias [E,2I] or null, scale [R] or null; offsets validated [E+1]. Returns [R,I].
 */
export function wasmBatchedGemmSwiglu(
    backend: unknown, lhs: Float32Array, numRows: number, k: number, rhs: () => Float32Array, rhsDataId: object,
    numExperts: number, intermediate: number, offsets: Int32Array, transposeRhs: boolean, bias: Float32Array | null,
    scale: Float32Array | null, steps?: LayerSteps): Float32Array | null {
  return runExpertCall({backend, lhs, numRows, k, source: () => ({weights: rhs()}), rhsDataId, numExperts, offsets,
    bias, scale, outCols: intermediate, layout: floatLayout(k, 2 * intermediate, transposeRhs, true),
    entry: 'moe_gemm_swiglu', steps});
}

/**
 * The packed layouts the kernels read: int8 and symmetric int4 whose groups are whole multiples of 4 k dividing K
 * (Qwen3, gpt-oss, every default group size of docs/formats.md on such K); null for the others (mxfp4, halves,
 * zero points, partial groups), which run in JavaScript.
 */
function quantizedLayout(l: ExpertWeightLayout, halves: boolean): PackLayout | null {
  if (l.format !== 'int8' && (l.format !== 'int4' || l.zeroPoint)) return null;
  if (l.groupSize <= 0 || l.groupSize % 4 !== 0 || l.depth % l.groupSize !== 0) return null;
  return {k: l.depth, n: l.width, transposed: l.transposed, halves, format: l.format, group: l.groupSize};
}

/**
 * BatchedGemmQuantized on host arrays (docs/formats.md section 8): the product with the weights' dequantized
 * values, or null when this format runs in JavaScript. data reads the codes and scales (called only when an expert
 * is not packed yet); valuesDataId: the codes tensor's dataId.
 */
export function wasmBatchedGemmQuantized(
    backend: unknown, lhs: Float32Array, numRows: number, l: ExpertWeightLayout, data: () => ExpertWeightData,
    valuesDataId: object, offsets: Int32Array, bias: Float32Array | null, steps?: LayerSteps): Float32Array | null {
  const layout = quantizedLayout(l, false);
  if (layout == null) return null;
  return runExpertCall({backend, lhs, numRows, k: l.depth, source: () => codesOf(data()), rhsDataId: valuesDataId,
    numExperts: l.numExperts, offsets, bias, scale: null, outCols: l.width, layout, entry: 'moe_gemm', steps});
}

/** BatchedGemmSwigluQuantized on host arrays ([R, N/2], gate columns first), or null as wasmBatchedGemmQuantized. */
export function wasmBatchedGemmSwigluQuantized(
    backend: unknown, lhs: Float32Array, numRows: number, l: ExpertWeightLayout, data: () => ExpertWeightData,
    valuesDataId: object, offsets: Int32Array, bias: Float32Array | null, scale: Float32Array | null,
    steps?: LayerSteps): Float32Array | null {
  const layout = quantizedLayout(l, true);
  if (layout == null) return null;
  return runExpertCall({backend, lhs, numRows, k: l.depth, source: () => codesOf(data()), rhsDataId: valuesDataId,
    numExperts: l.numExperts, offsets, bias, scale, outCols: l.width / 2, layout, entry: 'moe_gemm_swiglu', steps});
}

/** The codes and scales of an int8 / int4 tensor (both formats have scales: the op validated them). */
function codesOf(d: ExpertWeightData): ExpertArrays {
  return {words: d.values as Int32Array, scales: d.scales as Float32Array};
}
