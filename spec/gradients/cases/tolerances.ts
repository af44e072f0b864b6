/**
 * Bounds on relError (max |a - e| / max |e|) of a float32 gradient against float64 central differences.
 * The gradients are the same kinds of computation as the forwards, so they get the guide's forward bounds:
 * GEMM-shaped gradients (batchedGemm's lhs/rhs/bias, and every layer-level gradient, which chains GEMMs) 1e-4;
 * elementwise and gather/scatter gradients (SwiGLU, permute, combine) and routing gradients 1e-5.
 */
export const GRAD_TOL = {gemm: 1e-4, swiglu: 1e-5, permute: 1e-5, combine: 1e-5, routing: 1e-5, layer: 1e-4};
