import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import type {MoeCombineAttrs} from '../kernel_names.js';
import {stopGradient} from './stop_gradient.js';

/**
 * Returns float32 [T,D] (docs/semantics.md section 6): gathers each token's k rows of y, weights them (unless
 * already weighted), adds the weighted expert biases, sums over the k slots. Memory: one [T,k,D] gather.
 */
export function moeCombineComposite(
    y: Tensor2D, rowMap: Tensor2D, topkWeights: Tensor2D, topkIds: Tensor2D, bias: Tensor2D | null,
    attrs: MoeCombineAttrs): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, topK] = rowMap.shape;
    const hidden = y.shape[1];
    const weights = tf.reshape(topkWeights, [numTokens, topK, 1]);
    // int32 maps carry no gradient (they may descend from a router on the tape).
    const rowIndex = tf.reshape(stopGradient(rowMap), [-1]);
    let rows: Tensor = tf.reshape(tf.gather(y, rowIndex), [numTokens, topK, hidden]);
    if (!attrs.weightsApplied) rows = tf.mul(rows, weights);
    if (bias != null) {
      const biases = tf.reshape(tf.gather(bias, tf.reshape(stopGradient(topkIds), [-1])), [numTokens, topK, hidden]);
      rows = tf.add(rows, tf.mul(biases, weights));
    }
    return tf.sum(rows, 1) as Tensor2D;
  });
}
