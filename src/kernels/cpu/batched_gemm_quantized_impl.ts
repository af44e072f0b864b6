/**
 * batchedGemm over packed expert weights on host arrays (docs/formats.md): the float kernel's blocking
 * (batched_gemm_impl.ts) with each K_TILE x N_TILE weight tile decoded from its codes as it is packed, so at most
 * one tile of an expert is ever float32. Accumulation is float64, rounded to float32 once per output.
 */
import {decodeColumn, ExpertWeightData, ExpertWeightLayout} from '../expert_weight_formats.js';
import {multiplyTile} from './batched_gemm_impl.js';

const K_TILE = 128;
const N_TILE = 256;
const PANEL_ROWS = 64;

/** The tile of expert e's weights [k0, k0+kLen) x [n0, n0+nLen) in multiplyTile's 4-column groups. */
function decodeTile(
    l: ExpertWeightLayout, d: ExpertWeightData, e: number, k0: number, kLen: number, n0: number, nLen: number,
    tile: Float32Array): void {
  tile.fill(0, 0, Math.ceil(nLen / 4) * kLen * 4);
  for (let nn = 0; nn < nLen; nn++) {
    decodeColumn(l, d, e, n0 + nn, k0, kLen, tile, (nn >> 2) * kLen * 4 + (nn & 3), 4);
  }
}

/**
 * out[r] = lhs[r] @ W[e] (+ bias[e]) for r in [offsets[e], offsets[e+1]), W the weights of (l, d) as [K,N];
 * other rows are 0. lhs [numRows, K]; offsets validated by segmentOffsets.
 */
export function batchedGemmQuantizedImpl(
    lhs: Float32Array, numRows: number, l: ExpertWeightLayout, d: ExpertWeightData, offsets: Int32Array,
    bias: Float32Array | null): Float32Array {
  const {depth: k, width: n} = l;
  const out = new Float32Array(numRows * n);
  const acc = new Float64Array(PANEL_ROWS * n);
  const tile = new Float32Array(K_TILE * N_TILE);
  for (let e = 0; e < l.numExperts; e++) {
    const segStart = offsets[e], segEnd = offsets[e + 1];
    for (let p0 = segStart; p0 < segEnd; p0 += PANEL_ROWS) {
      const p1 = Math.min(p0 + PANEL_ROWS, segEnd);
      acc.fill(0, 0, (p1 - p0) * n);
      for (let k0 = 0; k0 < k; k0 += K_TILE) {
        const kLen = Math.min(K_TILE, k - k0);
        for (let n0 = 0; n0 < n; n0 += N_TILE) {
          const nLen = Math.min(N_TILE, n - n0);
          decodeTile(l, d, e, k0, kLen, n0, nLen, tile);
          multiplyTile(lhs, k, p0, p1, p0, acc, n, tile, k0, kLen, n0, nLen);
        }
      }
      for (let r = p0; r < p1; r++) {
        for (let j = 0; j < n; j++) {
          const a = acc[(r - p0) * n + j];
          out[r * n + j] = bias == null ? a : a + bias[e * n + j];
        }
      }
    }
  }
  return out;
}
