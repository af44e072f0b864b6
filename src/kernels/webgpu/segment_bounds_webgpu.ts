/**
 * The segment bounds every webgpu grouped GEMM program reads (docs/semantics.md section 4), computed on the GPU
 * from whatever segments tensor the caller passed: offsets [E+1] clamped to [previous bound, R], or counts [E]
 * clamped to [0, R - previous bound]. The programs then see monotone bounds in [0, R], so whatever the values, no
 * two tiles write one row, no row is left unwritten and no expert range adds into another's rows.
 *
 * expertOffsets made by our webgpu moePermute are monotone and end at most at its static row count by
 * construction: they are recorded here and used as they are by a GEMM of at least that many rows (tfjs tensor data
 * never changes, and a reshape or clone shares the record), which keeps the layer's forward at its dispatch count.
 */
import type {DataId, TensorInfo} from '@tensorflow/tfjs-core';

import {FLAT_LAYOUT, WebGPUBackendLike, WebGPUProgram, workgroupScanSnippet} from './webgpu_util.js';

const SCAN_WG = 256;

/** One workgroup; thread i scans a contiguous chunk, then the chunk aggregates are scanned across threads. */
export class SegmentBoundsProgram implements WebGPUProgram {
  variableNames = ['segments'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number] = [1, 1, 1];
  workgroupSize: [number, number, number] = [SCAN_WG, 1, 1];
  uniforms = 'numRows : i32,';
  private readonly numExperts: number;
  private readonly fromOffsets: boolean;

  constructor(numExperts: number, segmentsAreOffsets: boolean) {
    this.numExperts = numExperts;
    this.fromOffsets = segmentsAreOffsets;
    this.outputShape = [numExperts + 1];
    this.shaderKey = `moeSegmentBounds_E${numExperts}_${segmentsAreOffsets ? 'offsets' : 'counts'}`;
  }

  getUserCode(): string {
    const n = this.fromOffsets ? this.numExperts + 1 : this.numExperts;
    // Values and aggregates stay in [0, R]: the saturating sum adds b + min(a, R - b), which cannot wrap.
    const combine = this.fromOffsets ? 'max(a, b)' : 'b + min(a, uniforms.numRows - b)';
    return `
      const N = ${n};
      const CHUNK = ${Math.ceil(n / SCAN_WG)};
      fn combine(a : i32, b : i32) -> i32 { return ${combine}; }
      ${workgroupScanSnippet('wgScan', 'combine(a, b)', SCAN_WG)}
      fn clamped(i : i32) -> i32 { return clamp(segments[i], 0, uniforms.numRows); }
      fn main(index : i32) {
        let lid = i32(localId.x);
        let first = lid * CHUNK;
        var local = 0;
        for (var i = 0; i < CHUNK; i++) {
          if (first + i < N) { local = combine(local, clamped(first + i)); }
        }
        var run = wgScan(local).x;
        ${this.fromOffsets ? '' : 'if (lid == 0) { result[0] = 0; }'}
        for (var i = 0; i < CHUNK; i++) {
          let e = first + i;
          if (e < N) {
            run = combine(run, clamped(e));
            result[e + ${this.fromOffsets ? 0 : 1}] = run;
          }
        }
      }`;
  }
}

/** dataId of expertOffsets known to be valid bounds -> the largest row count they may end at. */
const validBounds = new WeakMap<DataId, number>();

/** Records offsets that are monotone, start at >= 0 and end at <= numRows (moePermute's own). */
export function markValidBounds(offsets: TensorInfo, numRows: number): void {
  validBounds.set(offsets.dataId, numRows);
}

/**
 * The bounds [E+1] of `segments` for a GEMM of numRows rows: `segments` itself when it is recorded valid offsets
 * for that many rows, else a new tensor (the caller disposes it when it differs from `segments`).
 */
export function segmentBounds(backend: WebGPUBackendLike, segments: TensorInfo, segmentsAreOffsets: boolean,
                              numExperts: number, numRows: number): TensorInfo {
  const recorded = validBounds.get(segments.dataId);
  if (segmentsAreOffsets && recorded != null && recorded <= numRows) return segments;
  return backend.runWebGPUProgram(new SegmentBoundsProgram(numExperts, segmentsAreOffsets), [segments], 'int32',
                                  [{type: 'int32', data: [numRows]}]);
}
