/** SwiGLU with an optional per-row scale on host arrays (docs/semantics.md section 5): gate half first. */
export function fusedSwigluScaleImpl(
    x: Float32Array, numRows: number, intermediate: number, scale: Float32Array | null): Float32Array {
  const out = new Float32Array(numRows * intermediate);
  if (out.length === 0) return out;  // [R,0] with a huge R: no row loop over nothing
  for (let r = 0; r < numRows; r++) {
    const gateRow = r * 2 * intermediate;
    const upRow = gateRow + intermediate;
    const s = scale == null ? 1 : scale[r];
    for (let i = 0; i < intermediate; i++) {
      const g = x[gateRow + i];
      // f64 until the store: one rounding of the whole product.
      out[r * intermediate + i] = g / (1 + Math.exp(-g)) * x[upRow + i] * s;
    }
  }
  return out;
}
