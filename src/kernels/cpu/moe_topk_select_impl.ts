/** Softmax top-k routing on host arrays (docs/semantics.md section 1), in float32 arithmetic. */
import {selectTopK} from './routing_select.js';

const f32 = Math.fround;
/** The renormalisation denominator's floor (ERNIE-4.5's moe_norm_min), as float32. */
const MIN_NORM_DENOMINATOR = f32(1e-12);

/**
 * p = softmax(logits) per token (max-subtracted); choose the topK largest p + bias (bias only selects);
 * weights are the chosen p, divided by their sum when renormalize. A row containing NaN has NaN p
 * everywhere (as tf.softmax gives), so it selects experts 0..k-1 with NaN weights.
 */
export function moeTopkSelectImpl(
    logits: Float32Array, numTokens: number, numExperts: number, bias: Float32Array | null, topK: number,
    renormalize: boolean): {topkIds: Int32Array, topkWeights: Float32Array} {
  const topkIds = new Int32Array(numTokens * topK);
  const topkWeights = new Float32Array(numTokens * topK);
  const probs = new Float32Array(numExperts);
  const keys = bias == null ? probs : new Float32Array(numExperts);
  const taken = new Uint8Array(numExperts);

  for (let t = 0; t < numTokens; t++) {
    const row = t * numExperts;
    let max = -Infinity;
    for (let e = 0; e < numExperts; e++) {
      if (logits[row + e] > max) max = logits[row + e];
    }
    let sum = 0;
    for (let e = 0; e < numExperts; e++) {
      // The difference stays f64: rounding it to f32 would cost up to |x - max| * 2^-24 relative in exp().
      const ex = f32(Math.exp(logits[row + e] - max));
      probs[e] = ex;
      sum = f32(sum + ex);
    }
    for (let e = 0; e < numExperts; e++) probs[e] = probs[e] / sum;  // stored f32: rounded once
    if (bias != null) {
      for (let e = 0; e < numExperts; e++) keys[e] = probs[e] + bias[e];
    }

    const out = t * topK;
    selectTopK(keys, 0, numExperts, topK, topkIds, out, taken);
    let chosenSum = 0;
    for (let j = 0; j < topK; j++) {
      const p = probs[topkIds[out + j]];
      topkWeights[out + j] = p;
      chosenSum = f32(chosenSum + p);
    }
    if (renormalize) {
      // ERNIE's clamp (semantics 1.5): a bias may pick experts whose p underflowed to 0; 0/0 would be NaN.
      const denom = Math.max(chosenSum, MIN_NORM_DENOMINATOR);
      for (let j = 0; j < topK; j++) topkWeights[out + j] = topkWeights[out + j] / denom;
    }
  }
  return {topkIds, topkWeights};
}
