/** What the CPU benchmark and its QMoE check share: seeded data, the comparison, the layer's options. */
import type {FusedMoEOptions} from '../src/index.js';

/** Seeded uniform values in [-scale, scale) (xorshift; identical on both sides because the arrays are shared). */
export function uniform(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = (s / 4294967296 * 2 - 1) * scale;
  }
  return out;
}

/** max |a - b| / max |b|. */
export function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

/** Qwen3-style routing (softmax over all experts, top-k renormalised, SwiGLU), float32 experts, cpu backend. */
export function moeBenchOptions(E: number, k: number, I: number): FusedMoEOptions {
  return {numExperts: E, topK: k, moeIntermediateSize: I, topkMethod: 'greedy', nGroup: 1,
    topkGroup: 1, routedScalingFactor: 1, renormalize: true, renormalizeEpsilon: null, useCorrectionBias: false,
    zeroExperts: 0, latentSize: null, withBias: false, probInAdvance: false, routingWeightOn: 'output',
    routerBias: false, activation: 'swiglu', swigluAlpha: 1.702, swigluLimit: 7, sharedExpertIntermediateSize: 0,
    sharedExpertGate: false, backend: 'cpu', computeDtype: 'float32', expertWeightFormat: 'float32',
    quantGroupSize: null, quantZeroPoint: false};
}
