import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import type {MoeTopkSelectAttrs} from '../kernel_names.js';
import {select, selectTopKComposite, takeAlongRows} from './routing_select_composite.js';
import {stopGradient} from './stop_gradient.js';

/** Returns [topkIds int32 [T,k], topkWeights float32 [T,k]] (docs/semantics.md section 1). */
export function moeTopkSelectComposite(
    gatingLogits: Tensor2D, bias: Tensor1D | null, attrs: MoeTopkSelectAttrs): [Tensor2D, Tensor2D] {
  return tf.tidy(() => {
    const numTokens = gatingLogits.shape[0];
    // tfjs's batched gather rejects empty batches: no tokens, nothing to select.
    if (numTokens === 0) return [tf.zeros([0, attrs.topK], 'int32'), tf.zeros([0, attrs.topK])] as [Tensor2D, Tensor2D];
    // A row with a NaN, or whose max is infinite, is NaN throughout (as max-subtracted softmax gives in IEEE
    // arithmetic); GPU backends do not promise that (webgpu on SwiftShader: exp(NaN) = Inf), so say it here.
    // (A mask: computed off the gradient tape, whose autodiff has no gradients for these predicates.)
    const logits = stopGradient(gatingLogits);
    const rowIsNaN =
        tf.logicalOr(tf.any(tf.isNaN(logits), 1, true), tf.logicalNot(tf.isFinite(tf.max(logits, 1, true))));
    let probs = select(rowIsNaN, tf.scalar(NaN), tf.softmax(gatingLogits, -1)) as Tensor2D;
    const {nGroup, topkGroup} = attrs;
    if (nGroup > 1) {
      // Groups scored by their best probability; the dropped groups' experts score 0 (selection: off the tape).
      const numExperts = probs.shape[1], groupSize = numExperts / nGroup;
      const grouped = tf.reshape(stopGradient(probs), [numTokens, nGroup, groupSize]);
      const best = tf.max(select(tf.isNaN(grouped), tf.scalar(-Infinity), grouped), 2) as Tensor2D;
      const {chosen: keptGroups} = selectTopKComposite(best, topkGroup);
      const keptExperts = tf.reshape(
          tf.tile(tf.reshape(keptGroups, [numTokens, nGroup, 1]), [1, 1, groupSize]), [numTokens, numExperts]);
      probs = select(keptExperts, probs, tf.scalar(0)) as Tensor2D;
    }
    const keys = bias == null ? probs : tf.add(probs, tf.reshape(bias, [1, -1])) as Tensor2D;
    const {ids} = selectTopKComposite(keys, attrs.topK);
    let weights: Tensor = takeAlongRows(probs, ids);
    if (attrs.renormalize) {
      weights = tf.div(weights, tf.add(tf.sum(weights, 1, true), tf.scalar(attrs.renormalizeEpsilon)));
    }
    if (attrs.routedScalingFactor !== 1) weights = tf.mul(weights, tf.scalar(attrs.routedScalingFactor));
    return [tf.cast(ids, 'int32'), weights] as [Tensor2D, Tensor2D];
  });
}
