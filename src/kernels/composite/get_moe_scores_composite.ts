import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import type {GetMoeScoresAttrs} from '../kernel_names.js';
import {select, selectTopKComposite, takeAlongRows} from './routing_select_composite.js';
import {stopGradient} from './stop_gradient.js';

/**
 * Sum of the two largest entries of each group (NaN ranking as -Infinity), from [T,G,S] biased scores.
 * The second largest is the max after removing ONE copy of the largest: a repeated maximum counts twice.
 */
function groupScores(grouped: Tensor): Tensor2D {
  const minusInf = tf.scalar(-Infinity);
  const clean = select(tf.isNaN(grouped), minusInf, grouped);
  const first = tf.max(clean, 2, true);
  if (grouped.shape[2] === 1) return tf.squeeze(first, [2]);
  const isFirst = tf.equal(clean, first);
  const repeated = tf.greater(tf.sum(tf.cast(isFirst, 'int32'), 2, true), 1);
  const second = select(repeated, first, tf.max(select(isFirst, minusInf, clean), 2, true));
  return tf.squeeze(tf.add(first, second), [2]);
}

/** Returns [scores float32 [T,E], topkWeights float32 [T,k], topkIds int32 [T,k]] (docs/semantics.md section 2). */
export function getMoeScoresComposite(
    gatingOutput: Tensor2D, bias: Tensor1D | null, attrs: GetMoeScoresAttrs): [Tensor2D, Tensor2D, Tensor2D] {
  const {nGroup, topkGroup, topK, routedScalingFactor, renormalize} = attrs;
  return tf.tidy(() => {
    const [numTokens, numExperts] = gatingOutput.shape;
    const groupSize = numExperts / nGroup;
    // NaN logits keep their NaN: webgpu's sigmoid (on SwiftShader) turns NaN into 0.
    // (The mask is computed off the gradient tape: tfjs's autodiff has no gradient for isNaN.)
    const scores = select(tf.isNaN(stopGradient(gatingOutput)), gatingOutput, tf.sigmoid(gatingOutput)) as Tensor2D;
    // tfjs's batched gather rejects empty batches: no tokens, nothing to select.
    if (numTokens === 0) return [scores, tf.zeros([0, topK]), tf.zeros([0, topK], 'int32')] as [Tensor2D, Tensor2D, Tensor2D];
    const biased = bias == null ? scores : tf.add(scores, tf.reshape(bias, [1, -1])) as Tensor2D;

    // Group choice is selection only: no gradient flows through it.
    const perGroup = groupScores(tf.reshape(stopGradient(biased), [numTokens, nGroup, groupSize]));
    const {chosen: keptGroups} = selectTopKComposite(perGroup, topkGroup);
    // Experts of dropped groups are never chosen, not even over a NaN of a kept group (semantics 2.5).
    const keptExperts =
        tf.reshape(tf.tile(tf.reshape(keptGroups, [numTokens, nGroup, 1]), [1, 1, groupSize]), [numTokens, numExperts]);
    const {ids} = selectTopKComposite(stopGradient(biased), topK, keptExperts);

    let weights: Tensor = takeAlongRows(scores, ids);
    if (renormalize) weights = tf.div(weights, tf.add(tf.sum(weights, 1, true), tf.scalar(1e-20)));
    weights = tf.mul(weights, tf.scalar(routedScalingFactor));

    // FastDeploy's fallback when no group score is finite (e.g. NaN logits): experts 0..k-1, weights 1/k.
    const nothingToRank = tf.logicalNot(tf.any(tf.isFinite(perGroup), 1, true));
    const firstIds = tf.reshape(tf.range(0, topK, 1, 'float32'), [1, topK]);
    const topkIds = tf.cast(select(nothingToRank, firstIds, ids), 'int32');
    const topkWeights = select(nothingToRank, tf.scalar(1 / topK), weights);
    return [scores, topkWeights, topkIds] as [Tensor2D, Tensor2D, Tensor2D];
  });
}
