/** Weighted combine on host arrays (docs/semantics.md section 6), accumulated in float32 as the GPU kernels do. */

import {checkCombineIndices} from '../host_index_checks.js';

const f32 = Math.fround;

/**
 * out[t] = sum_j (weightsApplied ? y[rowMap[t,j]] : w[t,j] * y[rowMap[t,j]]) + w[t,j] * bias[ids[t,j]].
 * numExperts is the bias's row count (ids are only read when there is a bias).
 */
export function moeCombineImpl(
    y: Float32Array, numRows: number, hidden: number, rowMap: Int32Array, topkWeights: Float32Array,
    topkIds: Int32Array, numTokens: number, topK: number, bias: Float32Array | null, numExperts: number,
    weightsApplied: boolean): Float32Array {
  checkCombineIndices(rowMap.subarray(0, numTokens * topK), topkIds.subarray(0, numTokens * topK), topK, numRows,
                      bias != null ? numExperts : null);

  const out = new Float32Array(numTokens * hidden);
  const acc = new Float32Array(hidden);
  for (let t = 0; t < numTokens; t++) {
    acc.fill(0);
    for (let j = 0; j < topK; j++) {
      const w = topkWeights[t * topK + j];
      const yRow = rowMap[t * topK + j] * hidden;
      if (weightsApplied) {
        for (let d = 0; d < hidden; d++) acc[d] += y[yRow + d];  // Float32Array store rounds each add
      } else {
        for (let d = 0; d < hidden; d++) acc[d] += f32(w * y[yRow + d]);
      }
      if (bias != null) {
        const bRow = topkIds[t * topK + j] * hidden;
        for (let d = 0; d < hidden; d++) acc[d] += f32(w * bias[bRow + d]);
      }
    }
    out.set(acc, t * hidden);
  }
  return out;
}
