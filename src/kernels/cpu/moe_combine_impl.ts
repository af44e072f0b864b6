/** Weighted combine on host arrays (docs/semantics.md section 6), accumulated in float32 as the GPU kernels do. */

const f32 = Math.fround;

/**
 * out[t] = sum_j (weightsApplied ? y[rowMap[t,j]] : w[t,j] * y[rowMap[t,j]]) + w[t,j] * bias[ids[t,j]]; with
 * `identity` [T,D], a slot whose rowMap is -1 adds w[t,j] * identity[t] instead (and no bias).
 * numExperts is the bias's row count (ids are only read when there is a bias).
 */
export function moeCombineImpl(
    y: Float32Array, numRows: number, hidden: number, rowMap: Int32Array, topkWeights: Float32Array,
    topkIds: Int32Array, numTokens: number, topK: number, bias: Float32Array | null, numExperts: number,
    weightsApplied: boolean, identity: Float32Array | null = null): Float32Array {
  for (let i = 0; i < numTokens * topK; i++) {
    const row = rowMap[i];
    // With identityInput, -1 (no row: an identity expert's slot, section 11.5) is a valid entry.
    if (row === -1 && identity != null) continue;
    if (!(row >= 0 && row < numRows)) {
      throw new Error(`moeCombine: argument 'rowMap' must hold rows of y in [0, R = ${numRows}), ` +
          `got rowMap[${Math.floor(i / topK)},${i % topK}] = ${row}`);
    }
    const e = topkIds[i];
    if (bias != null && !(e >= 0 && e < numExperts)) {
      throw new Error(`moeCombine: argument 'topkIds' must hold expert ids in [0, E = ${numExperts}) ` +
          `(the rows of downProjBias), got topkIds[${Math.floor(i / topK)},${i % topK}] = ${e}`);
    }
  }

  const out = new Float32Array(numTokens * hidden);
  const acc = new Float32Array(hidden);
  for (let t = 0; t < numTokens; t++) {
    acc.fill(0);
    for (let j = 0; j < topK; j++) {
      const w = topkWeights[t * topK + j];
      if (rowMap[t * topK + j] === -1) {
        // An identity expert's slot: w * x[t], weighted in every mode, no bias.
        for (let d = 0; d < hidden; d++) acc[d] += f32(w * identity![t * hidden + d]);
        continue;
      }
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
