/**
 * batchedGemm over packed expert weights on host arrays (docs/formats.md): the float kernel's blocking
 * (batched_gemm_impl.ts) with each K_TILE x N_TILE weight tile decoded from its codes as it is packed, so at most
 * one tile of an expert is ever float32. Accumulation is float64, rounded to float32 once per output.
 */
import {decodeColumn, ExpertWeightData, ExpertWeightLayout} from '../expert_weight_formats.js';
import {groupedGemmTiles} from './batched_gemm_impl.js';

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
  return groupedGemmTiles(lhs, numRows, l.depth, l.numExperts, l.width, offsets, bias,
                          (e, k0, kLen, n0, nLen, tile) => decodeTile(l, d, e, k0, kLen, n0, nLen, tile));
}
