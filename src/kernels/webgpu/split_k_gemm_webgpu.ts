/**
 * A one-expert float32 GEMM with few columns and a deep K (the router's logits: x [T,H] @ gate [H,E], H 2048, E
 * 128) split over K, exact (f32 products and sums, never the half matrices: top-k choices follow these logits).
 * The grouped programs give such a shape a handful of workgroups that each walk all of K (tfjs's matMul took
 * 0.094 ms at T = 256 on the H200, BENCHMARKS.md session 7), so here every workgroup takes a K chunk of a 32 x 128
 * tile and writes its partial sums, and a second program adds the chunks in order (the same sum on every run)
 * and writes rows outside the segment as zeros. The segment bounds are computed there from the caller's segments
 * as SegmentBoundsProgram would (docs/semantics.md section 4), so no bounds program runs.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';

import {MOE_WEBGPU_ROUTER_SPLIT_K} from './flags_webgpu.js';
import {disposeIntermediate, FLAT_LAYOUT, flatDispatch, WebGPUBackendLike, WebGPUProgram, WORKGROUP_INDEX_SNIPPET}
  from './webgpu_util.js';

/** Rows and vec4 columns of one partials tile (256 invocations: 32 columns x 8 row groups of 4 rows). */
const TILE_ROWS = 32;
const TILE_VEC_COLS = 32;
/**
 * K chunks stay at least MIN_CHUNK deep (a chunk's loop is its only work) and at most MAX_CHUNK (each loop step
 * waits on its loads: H200 batch B1, T = 4096 in chunks of 1024 made the router slower than tfjs's matMul), and K
 * splits at most MAX_SPLITS ways (partials of splits x R x N floats).
 */
const MIN_CHUNK = 64;
const MAX_CHUNK = 256;
const MAX_SPLITS = 32;
/**
 * The most tokens whose router logits take this program (routerLogits): measured faster than tfjs's matMul at
 * T = 256 (H200 batch B1: 0.035 vs 0.069 ms) and slower at T = 4096 with its chunks then 1024 deep (layer 5.66 vs
 * 5.50 ms); the shallower chunks since were not measured at 4096, so larger T keep tf.matMul.
 */
export const ROUTER_SPLIT_K_MAX_TOKENS = 512;
/** Widest N this path takes (a router's expert count; wider outputs have enough tiles without a split). */
export const SPLIT_K_MAX_WIDTH = 512;

/** How many K chunks (and how deep) for a GEMM of R rows, depth K, N columns, aiming at `target` workgroups. */
export function splitKPlan(R: number, K: number, N: number, target: number): {splits: number, chunk: number} {
  const tiles = Math.ceil(R / TILE_ROWS) * Math.ceil(N / 4 / TILE_VEC_COLS);
  const want = Math.max(1, Math.min(MAX_SPLITS, Math.floor(target / tiles), Math.floor(K / MIN_CHUNK)),
                       Math.min(MAX_SPLITS, Math.ceil(K / MAX_CHUNK)));
  const chunk = Math.ceil(K / want / 4) * 4;
  return {splits: Math.ceil(K / chunk), chunk};
}

/** Partial sums [splits * R, N] of lhs [R,K] @ rhs [1,K,N] (K % 4 == 0, N % 4 == 0), chunk by chunk. */
class SplitKPartialsProgram implements WebGPUProgram {
  variableNames = ['lhs', 'rhs'];
  variableComponents = [4, 4];
  outputShape: number[];
  outputComponent = 4;
  shaderKey = 'moeSplitKPartials_r32_c32_k8';
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  uniforms = 'chunk : i32,';

  constructor(R: number, N: number, splits: number) {
    this.outputShape = [splits * R, N];
    this.dispatch = flatDispatch(splits * Math.ceil(R / TILE_ROWS) * Math.ceil(N / 4 / TILE_VEC_COLS));
  }

  getUserCode(): string {
    const rows = [0, 1, 2, 3];
    return `
      ${WORKGROUP_INDEX_SNIPPET}
      fn main(index : i32) {
        let lid = i32(localIndex);
        let wg = flatWorkgroupIndex();
        let R = uniforms.lhsShape[0];
        let K = uniforms.lhsShape[1];
        let K4 = K / 4;
        let NV = uniforms.rhsShape[2] / 4;
        let colTiles = (NV + ${TILE_VEC_COLS - 1}) / ${TILE_VEC_COLS};
        let tiles = ((R + ${TILE_ROWS - 1}) / ${TILE_ROWS}) * colTiles;
        let split = wg / tiles;
        let tile = wg % tiles;
        let nv = (tile % colTiles) * ${TILE_VEC_COLS} + lid % ${TILE_VEC_COLS};
        let r0 = (tile / colTiles) * ${TILE_ROWS} + (lid / ${TILE_VEC_COLS}) * 4;
        // Loads past the edges read the last row / column (their sums are never written).
        let nc = min(nv, NV - 1);${rows.map(i => `
        let x${i} = min(r0 + ${i}, R - 1) * K4;`).join('')}
        let k0 = split * uniforms.chunk;
        let k1 = min(K, k0 + uniforms.chunk);${rows.map(i => `
        var acc${i} = vec4<f32>(0.0);`).join('')}
        // Two k quads per step, their 16 loads issued together (the loop waits on loads, not FMAs); the second
        // is skipped past the chunk's end (chunks are whole quads). Each accumulator sums its k in order.
        for (var k = k0; k < k1; k += 8) {
          let more = k + 4 < k1;
          let kb = select(k, k + 4, more);
          let kq = k / 4;
          let w0 = rhs[k * NV + nc];
          let w1 = rhs[(k + 1) * NV + nc];
          let w2 = rhs[(k + 2) * NV + nc];
          let w3 = rhs[(k + 3) * NV + nc];
          let w4 = rhs[kb * NV + nc];
          let w5 = rhs[(kb + 1) * NV + nc];
          let w6 = rhs[(kb + 2) * NV + nc];
          let w7 = rhs[(kb + 3) * NV + nc];${rows.map(i => `
          let a${i} = lhs[x${i} + kq];
          let b${i} = lhs[x${i} + kb / 4];`).join('')}${rows.map(i => `
          acc${i} = acc${i} + a${i}.x * w0 + a${i}.y * w1 + a${i}.z * w2 + a${i}.w * w3;
          if (more) { acc${i} = acc${i} + b${i}.x * w4 + b${i}.y * w5 + b${i}.z * w6 + b${i}.w * w7; }`).join('')}
        }
        if (nv < NV) {${rows.map(i => `
          if (r0 + ${i} < R) { result[(split * R + r0 + ${i}) * NV + nv] = acc${i}; }`).join('')}
        }
      }`;
  }
}

/** out [R,N]: the partials' chunks summed in order, rows outside the segment zero. */
class SplitKSumProgram implements WebGPUProgram {
  variableNames = ['partials', 'segments'];
  variableComponents = [4, 1];
  outputShape: number[];
  outputComponent = 4;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  uniforms = 'splits : i32,';
  private readonly offsets: boolean;

  constructor(R: number, N: number, segmentsAreOffsets: boolean) {
    this.offsets = segmentsAreOffsets;
    this.outputShape = [R, N];
    this.dispatch = flatDispatch(Math.ceil(R * N / 4 / 256));
    this.shaderKey = `moeSplitKSum_${segmentsAreOffsets ? 'offsets' : 'counts'}`;
  }

  getUserCode(): string {
    // SegmentBoundsProgram's rule for one expert: offsets clamped to [0, R] then to [first, R]; a count to [0, R].
    const bounds = this.offsets ? `
        let lo = clamp(segments[0], 0, R);
        let hi = max(lo, clamp(segments[1], 0, R));` : `
        let lo = 0;
        let hi = clamp(segments[0], 0, R);`;
    return `
      ${WORKGROUP_INDEX_SNIPPET}
      fn main(index : i32) {
        let i = flatWorkgroupIndex() * 256 + i32(localIndex);
        let R = uniforms.outShape[0];
        let NV = uniforms.outShape[1] / 4;
        if (i >= R * NV) { return; }
        let r = i / NV;${bounds}
        var s = vec4<f32>(0.0);
        if (r >= lo && r < hi) {
          for (var p = 0; p < uniforms.splits; p++) { s = s + partials[p * R * NV + i]; }
        }
        result[i] = s;
      }`;
  }
}

/**
 * Whether runSplitKGemm takes this GEMM: MOE_WEBGPU_ROUTER_SPLIT_K on (> 0), float weights of one expert [1,K,N]
 * not transposed, no bias or epilogue, N % 4 == 0 and N <= SPLIT_K_MAX_WIDTH, K % 4 == 0.
 */
export function splitKApplies(target: number, s: {numExperts: number, depth: number, width: number,
                              transposeRhs: boolean, hasBias: boolean, swiglu: boolean, packed: boolean}): boolean {
  return target > 0 && s.numExperts === 1 && !s.packed && !s.transposeRhs && !s.hasBias && !s.swiglu &&
      s.width % 4 === 0 && s.width <= SPLIT_K_MAX_WIDTH && s.depth % 4 === 0;
}

/** The flag's value: target workgroups of the partials program (0: off). */
export function splitKTarget(get: (name: string) => unknown): number {
  return Number(get(MOE_WEBGPU_ROUTER_SPLIT_K));
}

/** out [R,N] = lhs [R,K] @ rhs [1,K,N] on the rows of the one segment (splitKApplies holds, R N K > 0). */
export function runSplitKGemm(backend: WebGPUBackendLike, lhs: TensorInfo, rhs: TensorInfo, segments: TensorInfo,
                              segmentsAreOffsets: boolean, target: number): TensorInfo {
  const [R, K] = lhs.shape;
  const N = rhs.shape[2];
  const {splits, chunk} = splitKPlan(R, K, N, target);
  const partials = backend.runWebGPUProgram(new SplitKPartialsProgram(R, N, splits), [lhs, rhs], 'float32',
                                            [{type: 'int32', data: [chunk]}]);
  try {
    return backend.runWebGPUProgram(new SplitKSumProgram(R, N, segmentsAreOffsets), [partials, segments], 'float32',
                                    [{type: 'int32', data: [splits]}]);
  } finally {
    disposeIntermediate(backend, partials);
  }
}
