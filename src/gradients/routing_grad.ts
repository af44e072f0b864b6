/**
 * Routing gradients: the chosen experts' weights with respect to the gate logits, through the chosen
 * probabilities only (the ids are a fixed, non-differentiable choice; the selection bias only chooses).
 *
 * moeTopkSelect: p = softmax(logits); v_j = p[id_j]; w_j = v_j / max(S, 1e-12) (S = sum_j v_j) with renormalize, else v_j.
 *   dv_j = (dw_j - sum_i dw_i w_i) / S (normalised) or dw_j; dp = scatter of dv onto the ids;
 *   dlogits = p * (dp - sum_e p_e dp_e).
 * getMoeScores: s = sigmoid(logits); v_j = s[id_j]; u_j = v_j / (S + 1e-20) if renormalize, else v_j; w_j = rsf u_j.
 *   dv_j = rsf * (dw_j / (S + eps) - sum_i dw_i v_i / (S + eps)^2) (renormalised) or rsf * dw_j;
 *   ds = dscores + scatter of dv; dlogits = ds * s * (1 - s).
 * Rows that took getMoeScores' non-finite fallback (NaN logits) get NaN gradients, as tfjs's own ops would.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor2D} from '@tensorflow/tfjs-core';

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

/** d/dlogits [T,E] of moeTopkSelect's weights. */
export function topkSelectGradLogits(dw: Tensor2D, logits: Tensor2D, ids: Tensor2D, renormalize: boolean): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, numExperts] = logits.shape;
    if (numTokens === 0) return tf.zeros([0, numExperts]) as Tensor2D;
    const probs = tf.softmax(logits, -1) as Tensor2D;
    const oneHot = chosenOneHot(ids, numExperts);
    let dv: Tensor = dw;
    if (renormalize) {
      const chosen = atChosen(probs, oneHot);
      const total = tf.sum(chosen, 1, true);
      const normalised = tf.div(chosen, total);
      dv = tf.div(tf.sub(dw, tf.sum(tf.mul(dw, normalised), 1, true)), total);
      // The forward clamps S at 1e-12 (docs/semantics.md section 1): below it w_j = v_j / 1e-12, dv_j = dw_j / 1e-12.
      const eps = tf.scalar(1e-12);
      dv = tf.where(tf.less(total, eps), tf.div(dw, eps), dv as Tensor2D);
    }
    const dp = scatterChosen(dv as Tensor2D, oneHot);
    return tf.mul(probs, tf.sub(dp, tf.sum(tf.mul(probs, dp), 1, true))) as Tensor2D;
  });
}

/** d/dgatingOutput [T,E] of getMoeScores' dense scores and chosen weights. */
export function moeScoresGradLogits(
    dScores: Tensor2D, dw: Tensor2D, scores: Tensor2D, ids: Tensor2D, routedScalingFactor: number,
    renormalize: boolean): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, numExperts] = scores.shape;
    if (numTokens === 0) return tf.zeros([0, numExperts]) as Tensor2D;
    const oneHot = chosenOneHot(ids, numExperts);
    const rsf = tf.scalar(routedScalingFactor);
    let dv: Tensor = tf.mul(dw, rsf);
    if (renormalize) {
      const chosen = atChosen(scores, oneHot);
      const denom = tf.add(tf.sum(chosen, 1, true), tf.scalar(1e-20));
      const cross = tf.div(tf.sum(tf.mul(dw, chosen), 1, true), tf.square(denom));
      dv = tf.mul(tf.sub(tf.div(dw, denom), cross), rsf);
    }
    const ds = tf.add(dScores, scatterChosen(dv as Tensor2D, oneHot));
    return tf.mul(ds, tf.mul(scores, tf.sub(tf.scalar(1), scores))) as Tensor2D;
  });
}

export const moeTopkSelectGradConfig: GradConfig = {
  kernelName: MoeTopkSelect,
  inputsToSave: ['gatingLogits'],
  // Outputs: topkIds, topkWeights.
  outputsToSave: [true, false],
  gradFunc: (dys: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [logits, ids] = saved as Tensor2D[];
    const dw = (dys as Tensor[])[1] as Tensor2D;
    const {renormalize} = attrs as unknown as MoeTopkSelectAttrs;
    return {
      gatingLogits: () => topkSelectGradLogits(dw, logits, ids, renormalize),
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
    const {routedScalingFactor, renormalize} = attrs as unknown as GetMoeScoresAttrs;
    return {
      gatingOutput: () => moeScoresGradLogits(dScores, dw, scores, ids, routedScalingFactor, renormalize),
      eScoreCorrectionBias: () => tf.zeros([scores.shape[1]]),  // selection only
    };
  },
};
