import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import type {MoeTopkSelectAttrs} from '../kernel_names.js';
import {selectTopKComposite, takeAlongRows} from './routing_select_composite.js';

/** Returns [topkIds int32 [T,k], topkWeights float32 [T,k]] (semantics doc section 1). */
export function moeTopkSelectComposite(
    gatingLogits: Tensor2D, bias: Tensor1D | null, attrs: MoeTopkSelectAttrs): [Tensor2D, Tensor2D] {
  return tf.tidy(() => {
    const numTokens = gatingLogits.shape[0];
    // tfjs's batched gather rejects empty batches: no tokens, nothing to select.
    if (numTokens === 0) return [tf.zeros([0, attrs.topK], 'int32'), tf.zeros([0, attrs.topK])] as [Tensor2D, Tensor2D];
    const probs = tf.softmax(gatingLogits, -1);
    const keys = bias == null ? probs : tf.add(probs, tf.reshape(bias, [1, -1])) as Tensor2D;
    const {ids} = selectTopKComposite(keys, attrs.topK);
    let weights = takeAlongRows(probs, ids);
    if (attrs.applyNormWeight) weights = tf.div(weights, tf.sum(weights, 1, true));
    return [tf.cast(ids, 'int32'), weights] as [Tensor2D, Tensor2D];
  });
}
