import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

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
    const probs = select(rowIsNaN, tf.scalar(NaN), tf.softmax(gatingLogits, -1)) as Tensor2D;
    const keys = bias == null ? probs : tf.add(probs, tf.reshape(bias, [1, -1])) as Tensor2D;
    const {ids} = selectTopKComposite(keys, attrs.topK);
    let weights = takeAlongRows(probs, ids);
    // ERNIE's clamp (semantics 1.5): 0/0 when a bias picks experts whose p underflowed. A NaN sum stays NaN
    // through the weights themselves (the row is NaN), whatever maximum() does with NaN on a backend.
    if (attrs.renormalize) weights = tf.div(weights, tf.maximum(tf.sum(weights, 1, true), tf.scalar(1e-12)));
    return [tf.cast(ids, 'int32'), weights] as [Tensor2D, Tensor2D];
  });
}
