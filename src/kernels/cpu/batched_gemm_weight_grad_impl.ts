/**
 * The weight gradient of the grouped GEMM on host arrays: out[e] = lhs[seg e]^T @ dy[seg e]. Each row adds one
 * outer product into its expert's [K,N] block; accumulation is float64 (JS numbers) over a whole expert, rounded
 * to float32 once, as the forward does.
 */
export function batchedGemmWeightGradImpl(
    lhs: Float32Array, dy: Float32Array, k: number, n: number, offsets: Int32Array, numExperts: number,
    transposeOut: boolean): Float32Array {
  const out = new Float32Array(numExperts * k * n);
  const acc = new Float64Array(k * n);
  for (let e = 0; e < numExperts; e++) {
    const start = offsets[e], end = offsets[e + 1];
    if (end <= start) continue;
    acc.fill(0);
    // [K,N] block, row kk = lhs column kk: the inner loop runs over a contiguous dy row.
    for (let r = start; r < end; r++) {
      const lhsRow = r * k, dyRow = r * n;
      for (let kk = 0; kk < k; kk++) {
        // No skip of a = 0: 0 * Inf must give NaN as the per-segment sum says (IEEE semantics).
        const a = lhs[lhsRow + kk];
        const base = kk * n;
        for (let nn = 0; nn < n; nn++) acc[base + nn] += a * dy[dyRow + nn];
      }
    }
    const block = e * k * n;
    if (transposeOut) {
      for (let kk = 0; kk < k; kk++) {
        for (let nn = 0; nn < n; nn++) out[block + nn * k + kk] = acc[kk * n + nn];
      }
    } else {
      out.set(acc, block);
    }
  }
  return out;
}
