/** The float32 weights packed expert weights stand for (docs/formats.md), on host arrays. */
import {decodeColumn, ExpertWeightData, ExpertWeightLayout} from '../expert_weight_formats.js';

/** float32 [E,K,N], or [E,N,K] when l.transposed. */
export function dequantizeExpertWeightsImpl(l: ExpertWeightLayout, d: ExpertWeightData): Float32Array {
  const {numExperts, depth, width, transposed} = l;
  const out = new Float32Array(numExperts * depth * width);
  for (let e = 0; e < numExperts; e++) {
    for (let n = 0; n < width; n++) {
      if (transposed) decodeColumn(l, d, e, n, 0, depth, out, (e * width + n) * depth, 1);
      else decodeColumn(l, d, e, n, 0, depth, out, e * depth * width + n, width);
    }
  }
  return out;
}
