/**
 * Routing gradients: the chosen experts' weights with respect to the gate logits, through the chosen
 * probabilities only (the ids are a fixed, non-differentiable choice; the selection bias only chooses).
 *
 * Both: v_j = the chosen value; u_j = v_j / D (D = S + eps, S = sum_j v_j) if renormalize, else v_j; w_j = rsf u_j.
 *   dv_j = rsf * (dw_j / D - sum_i dw_i v_i / D^2) (renormalised) or rsf * dw_j. moeTopkSelect clamps D at
 *   1e-12 (docs/semantics.md section 1): below it w_j = rsf v_j / 1e-12 and dv_j = rsf dw_j / 1e-12.
 * moeTopkSelect: p = softmax(logits); v_j = p[id_j], or 0 for an expert of a dropped group (nGroup > 1: such a
 *   slot has w_j = 0 and carries no gradient); dp = scatter of dv onto the kept ids;
 *   dlogits = p * (dp - sum_e p_e dp_e).
 * moeTopkSelect with topkMethod 'sparsemixer' (docs/semantics.md 11.8), the derivative of the forward formula with
 *   the selection held fixed (the picks e_r and each round's mask): v_r = q_r[e_r] with q_r the round's masked
 *   softmax (0 outside its kept experts), so dlogits = sum_r dv_r v_r (onehot(e_r) - q_r). The training-time
 *   estimator of PhiMoE's paper (Heun's method through a sampled choice) is not this, and not provided.
 * getMoeScores: s = sigmoid(logits); v_j = s[id_j]; ds = dscores + scatter of dv; dlogits = ds * s * (1 - s).
 * Rows that took getMoeScores' non-finite fallback (NaN logits) get NaN gradients, as tfjs's own ops would.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import {sparsemixerComposite} from '../kernels/composite/moe_topk_select_composite.js';
import {GetMoeScores, GetMoeScoresAttrs, MoeTopkSelect, MoeTopkSelectAttrs} from '../kernels/kernel_names.js';

/** [T,k,E] float one-hot of the chosen ids (by comparison: tf.oneHot rejects a depth of 1, i.e. E = 1). */
function chosenOneHot(ids: Tensor2D, numExperts: number): Tensor {
  const [numTokens, topK] = ids.shape;
  const experts = tf.reshape(tf.range(0, numExperts, 1, 'int32'), [1, 1, numExperts]);
  return tf.cast(tf.equal(tf.reshape(ids, [numTokens, topK, 1]), experts), 'float32');
}

/** values[t, ids[t,j]] as [T,k] through the one-hot (no gather of int32 ids needed). */
function atChosen(values: Tensor2D, oneHot: Tensor): Tensor2D {
  const [numTokens, numExperts] = values.shape;
  return tf.sum(tf.mul(oneHot, tf.reshape(values, [numTokens, 1, numExperts])), 2) as Tensor2D;
}

/** sum_j oneHot[t,j,e] * dv[t,j]: [T,E]. */
function scatterChosen(dv: Tensor2D, oneHot: Tensor): Tensor2D {
  const [numTokens, topK] = dv.shape;
  return tf.sum(tf.mul(oneHot, tf.reshape(dv, [numTokens, topK, 1])), 1) as Tensor2D;
}

/** d/dv [T,k] of w = rsf * (renormalize ? v / (sum v + eps) : v). */
function chosenValueGrad(
    dw: Tensor2D, chosen: Tensor2D, routedScalingFactor: number, renormalize: boolean, epsilon: number,
    minDenominator = 0): Tensor2D {
  const rsf = tf.scalar(routedScalingFactor);
  if (!renormalize) return tf.mul(dw, rsf) as Tensor2D;
  const denom = tf.add(tf.sum(chosen, 1, true), tf.scalar(epsilon));
  const cross = tf.div(tf.sum(tf.mul(dw, chosen), 1, true), tf.square(denom));
  let dv = tf.sub(tf.div(dw, denom), cross);
  if (minDenominator > 0) {
    const floor = tf.scalar(minDenominator);
    dv = tf.where(tf.less(denom, floor), tf.div(dw, floor), dv);
  }
  return tf.mul(dv, rsf) as Tensor2D;
}

/**
 * d/dlogits [T,E] of moeTopkSelect's weights. `weights` (the op's output) tells the slots of dropped groups apart
 * when nGroup > 1: their weight is exactly 0 (a kept expert's p can be 0 only by underflow, where p's own
 * Jacobian row is 0 anyway).
 */
export function topkSelectGradLogits(
    dw: Tensor2D, logits: Tensor2D, ids: Tensor2D, weights: Tensor2D, attrs: MoeTopkSelectAttrs): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, numExperts] = logits.shape;
    if (numTokens === 0) return tf.zeros([0, numExperts]) as Tensor2D;
    if (attrs.topkMethod === 'sparsemixer') return sparsemixerGradLogits(dw, logits, ids, attrs);
    const probs = tf.softmax(logits, -1) as Tensor2D;
    const oneHot = chosenOneHot(ids, numExperts);
    const kept = attrs.nGroup > 1 ? tf.cast(tf.notEqual(weights, tf.scalar(0)), 'float32') : null;
    let chosen = atChosen(probs, oneHot);
    if (kept != null) chosen = tf.mul(chosen, kept);
    let dv: Tensor = chosenValueGrad(
        dw, chosen, attrs.routedScalingFactor, attrs.renormalize, attrs.renormalizeEpsilon, 1e-12);
    if (kept != null) dv = tf.mul(dv, kept);
    const dp = scatterChosen(dv as Tensor2D, oneHot);
    return tf.mul(probs, tf.sub(dp, tf.sum(tf.mul(probs, dp), 1, true))) as Tensor2D;
  });
}

function sparsemixerGradLogits(dw: Tensor2D, logits: Tensor2D, ids: Tensor2D, attrs: MoeTopkSelectAttrs): Tensor2D {
  const {weights: chosen, probs} =
      sparsemixerComposite(logits, attrs.sparsemixerEpsilon, tf.cast(ids, 'float32') as Tensor2D);
  const dv = chosenValueGrad(dw, chosen, attrs.routedScalingFactor, attrs.renormalize, attrs.renormalizeEpsilon, 1e-12);
  const oneHot = chosenOneHot(ids, logits.shape[1]);
  let dlogits: Tensor | null = null;
  for (let round = 0; round < 2; round++) {
    const scale = tf.mul(tf.slice(dv, [0, round], [-1, 1]), tf.slice(chosen, [0, round], [-1, 1]));
    const pick = tf.reshape(tf.slice(oneHot, [0, round, 0], [-1, 1, -1]), logits.shape);
    const term = tf.mul(scale, tf.sub(pick, probs[round]));
    dlogits = dlogits == null ? term : tf.add(dlogits, term);
  }
  return dlogits as Tensor2D;
}

/** d/dgatingOutput [T,E] of getMoeScores' dense scores and chosen weights. */
export function moeScoresGradLogits(
    dScores: Tensor2D, dw: Tensor2D, scores: Tensor2D, ids: Tensor2D, routedScalingFactor: number,
    renormalize: boolean, renormalizeEpsilon = 1e-20): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, numExperts] = scores.shape;
    if (numTokens === 0) return tf.zeros([0, numExperts]) as Tensor2D;
    const oneHot = chosenOneHot(ids, numExperts);
    const dv = chosenValueGrad(dw, atChosen(scores, oneHot), routedScalingFactor, renormalize, renormalizeEpsilon);
    const ds = tf.add(dScores, scatterChosen(dv as Tensor2D, oneHot));
    return tf.mul(ds, tf.mul(scores, tf.sub(tf.scalar(1), scores))) as Tensor2D;
  });
}

export const moeTopkSelectGradConfig: GradConfig = {
  kernelName: MoeTopkSelect,
  inputsToSave: ['gatingLogits'],
  // Outputs: topkIds, topkWeights.
  outputsToSave: [true, true],
  gradFunc: (dys: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [logits, ids, weights] = saved as Tensor2D[];
    const dw = (dys as Tensor[])[1] as Tensor2D;
    return {
      gatingLogits: () => topkSelectGradLogits(dw, logits, ids, weights, attrs as unknown as MoeTopkSelectAttrs),
      bias: () => tf.zeros([logits.shape[1]]),  // selection only
    };
  },
};

export const getMoeScoresGradConfig: GradConfig = {
  kernelName: GetMoeScores,
  // Outputs: scores, topkWeights, topkIds.
  outputsToSave: [true, false, true],
  gradFunc: (dys: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [scores, ids] = saved as Tensor2D[];
    const [dScores, dw] = dys as Tensor2D[];
    const {routedScalingFactor, renormalize, renormalizeEpsilon} = attrs as unknown as GetMoeScoresAttrs;
    return {
      gatingOutput: () =>
          moeScoresGradLogits(dScores, dw, scores, ids, routedScalingFactor, renormalize, renormalizeEpsilon),
      eScoreCorrectionBias: () => tf.zeros([scores.shape[1]]),  // selection only
    };
  },
};
