import {PLAIN_SWIGLU, SwigluActivationAttrs} from '../kernel_names.js';

/** SwiGLU (or its clamped variant) with an optional per-row scale on host arrays (docs/semantics.md section 5). */
export function fusedSwigluScaleImpl(
    x: Float32Array, numRows: number, intermediate: number, scale: Float32Array | null,
    act: SwigluActivationAttrs = PLAIN_SWIGLU): Float32Array {
  const out = new Float32Array(numRows * intermediate);
  if (out.length === 0) return out;  // [R,0] with a huge R: no row loop over nothing
  const clamped = act.activation === 'clamped_swiglu';
  const alpha = act.swigluAlpha, limit = act.swigluLimit;
  for (let r = 0; r < numRows; r++) {
    const gateRow = r * 2 * intermediate;
    const upRow = gateRow + intermediate;
    const s = scale == null ? 1 : scale[r];
    for (let i = 0; i < intermediate; i++) {
      const g = x[gateRow + i];
      const u = x[upRow + i];
      // f64 until the store: one rounding of the whole product.
      if (clamped) {
        const gc = Math.min(g, limit);
        const uc = Math.min(Math.max(u, -limit), limit);
        out[r * intermediate + i] = (uc + 1) * gc / (1 + Math.exp(-alpha * gc)) * s;
      } else {
        out[r * intermediate + i] = g / (1 + Math.exp(-g)) * u * s;
      }
    }
  }
  return out;
}
