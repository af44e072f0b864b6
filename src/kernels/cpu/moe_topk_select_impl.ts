/** Softmax top-k routing on host arrays (docs/semantics.md section 1), in float32 arithmetic. */
import type {MoeTopkSelectMethod} from '../kernel_names.js';
import {selectTopK} from './routing_select.js';

const f32 = Math.fround;
/** The renormalisation denominator's floor (ERNIE-4.5's moe_norm_min), as float32. */
const MIN_NORM_DENOMINATOR = f32(1e-12);

/** Largest member of the group (NaN ranking last, so a group of NaN scores -Infinity). */
function groupMax(probs: Float32Array, begin: number, size: number): number {
  let best = -Infinity;
  for (let e = begin; e < begin + size; e++) if (probs[e] > best) best = probs[e];
  return best;
}

/**
 * p = softmax(logits) per token (max-subtracted); choose the topK largest p + bias (bias only selects);
 * weights are the chosen p, divided by (their sum + renormalizeEpsilon) when renormalize, times
 * routedScalingFactor. nGroup > 1 (no bias): the experts outside the topkGroup groups with the largest member p
 * get p = 0 before choosing. A row containing NaN has NaN p everywhere (as tf.softmax gives), so it selects
 * experts 0..k-1 with NaN weights.
 */
export function moeTopkSelectImpl(
    logits: Float32Array, numTokens: number, numExperts: number, bias: Float32Array | null, topK: number,
    renormalize: boolean, renormalizeEpsilon = 0, routedScalingFactor = 1, nGroup = 1,
    topkGroup = 1, topkMethod: MoeTopkSelectMethod = 'greedy',
    sparsemixerEpsilon = 0.01): {topkIds: Int32Array, topkWeights: Float32Array} {
  const topkIds = new Int32Array(numTokens * topK);
  const topkWeights = new Float32Array(numTokens * topK);
  const probs = new Float32Array(numExperts);
  const keys = bias == null ? probs : new Float32Array(numExperts);
  const taken = new Uint8Array(numExperts);
  const groupSize = numExperts / nGroup;
  const groupScores = new Float32Array(nGroup);
  const keptGroups = new Int32Array(topkGroup);
  const kept = new Uint8Array(nGroup);
  const rsf = f32(routedScalingFactor);
  const threshold = f32(2 * f32(sparsemixerEpsilon));

  for (let t = 0; t < numTokens; t++) {
    const row = t * numExperts;
    const out = t * topK;
    if (topkMethod === 'sparsemixer') {
      sparsemixerRow(logits, row, numExperts, threshold, topkIds, topkWeights, out);
      finishWeights(topkWeights, out, topK, renormalize, renormalizeEpsilon, rsf);
      continue;
    }
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
    if (nGroup > 1) {
      for (let g = 0; g < nGroup; g++) groupScores[g] = groupMax(probs, g * groupSize, groupSize);
      selectTopK(groupScores, 0, nGroup, topkGroup, keptGroups, 0, taken);
      kept.fill(0);
      for (let i = 0; i < topkGroup; i++) kept[keptGroups[i]] = 1;
      // Dropped experts score 0, not -Infinity: with k above the kept experts they are chosen, weighing 0.
      for (let e = 0; e < numExperts; e++) if (kept[Math.floor(e / groupSize)] === 0) probs[e] = 0;
    }

    selectTopK(keys, 0, numExperts, topK, topkIds, out, taken);
    for (let j = 0; j < topK; j++) topkWeights[out + j] = probs[topkIds[out + j]];
    finishWeights(topkWeights, out, topK, renormalize, renormalizeEpsilon, rsf);
  }
  return {topkIds, topkWeights};
}

/** The chosen p of one token, in place: divided by (their sum + renormalizeEpsilon) when renormalize, times rsf. */
function finishWeights(
    weights: Float32Array, out: number, topK: number, renormalize: boolean, renormalizeEpsilon: number,
    rsf: number): void {
  let chosenSum = 0;
  for (let j = 0; j < topK; j++) chosenSum = f32(chosenSum + weights[out + j]);
  // ERNIE's clamp (semantics 1.5): a bias may pick experts whose p underflowed to 0; 0/0 would be NaN.
  // renormalizeEpsilon (section 11.7) adds to the sum inside the clamp.
  const denom = Math.max(f32(chosenSum + renormalizeEpsilon), MIN_NORM_DENOMINATOR);
  for (let j = 0; j < topK; j++) {
    const w = renormalize ? f32(weights[out + j] / denom) : weights[out + j];
    weights[out + j] = w * rsf;
  }
}

/**
 * PhiMoE's sparsemixer for one token (docs/semantics.md 11.8): two rounds, each choosing the largest logit m not
 * chosen yet (ties to the lower expert, NaN never wins) and weighing it by its softmax over the experts not chosen
 * before whose logit l is not masked, (m - l) / max(|l|, m) > threshold. A NaN ratio (0 / 0 when m = l = 0) does
 * not mask. A row with a NaN, or a round whose m is infinite, weighs NaN (as the max-subtracted softmax would).
 */
function sparsemixerRow(
    logits: Float32Array, row: number, numExperts: number, threshold: number, ids: Int32Array, weights: Float32Array,
    out: number): void {
  let rowNaN = false;
  for (let e = 0; e < numExperts; e++) if (Number.isNaN(logits[row + e])) rowNaN = true;
  let first = -1;
  for (let round = 0; round < 2; round++) {
    // The arg-max among the experts not chosen yet (selectTopK's rule, one pick).
    let best = -1;
    for (let e = 0; e < numExperts; e++) {
      if (e === first) continue;
      const v = logits[row + e];
      if (best < 0 || v > logits[row + best] || (Number.isNaN(logits[row + best]) && !Number.isNaN(v))) best = e;
    }
    const m = logits[row + best];
    let sum = 0;
    for (let e = 0; e < numExperts; e++) {
      if (e === first) continue;
      const l = logits[row + e];
      const scale = Math.max(Math.abs(l), m);
      if (scale > 0 && f32(f32(m - l) / scale) > threshold) continue;
      sum = f32(sum + f32(Math.exp(l - m)));
    }
    ids[out + round] = best;
    weights[out + round] = rowNaN || !Number.isFinite(m) ? NaN : f32(1 / sum);
    first = best;
  }
}
