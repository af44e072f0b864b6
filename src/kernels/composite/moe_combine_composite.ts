import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import type {MoeCombineAttrs} from '../kernel_names.js';
import {select} from './routing_select_composite.js';
import {stopGradient} from './stop_gradient.js';

/** index in [0, n), elementwise (bool); y.shape[0] = 0 makes every index invalid. */
function inRange(index: Tensor, n: number): Tensor {
  return tf.logicalAnd(tf.greaterEqual(index, tf.scalar(0, 'int32')), tf.less(index, tf.scalar(n, 'int32')));
}

/**
 * Returns float32 [T,D] (docs/semantics.md section 6): gathers each token's k rows of y, weights them (unless
 * already weighted), adds the weighted expert biases, sums over the k slots. Memory: one [T,k,D] gather.
 * A rowMap entry outside [0,R) (moePermute's -1 for an invalid id) adds no y row, and an id outside the bias's
 * experts adds no bias, as the webgpu and cuda kernels do: the gathers read index 0 there and the term is masked.
 */
export function moeCombineComposite(
    y: Tensor2D, rowMap: Tensor2D, topkWeights: Tensor2D, topkIds: Tensor2D, bias: Tensor2D | null,
    attrs: MoeCombineAttrs, identity: Tensor2D | null = null): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, topK] = rowMap.shape;
    const hidden = y.shape[1];
    // k = 0: an empty sum (webgpu's sum over an empty axis allocates a buffer of a bogus size).
    if (topK === 0) return tf.zeros([numTokens, hidden]) as Tensor2D;
    const weights = tf.reshape(topkWeights, [numTokens, topK, 1]);
    // int32 maps carry no gradient (they may descend from a router on the tape).
    const rowIndex = tf.reshape(stopGradient(rowMap), [-1]);
    const validRow = inRange(rowIndex, y.shape[0]);
    // An empty y has no row 0 to read in place of an invalid one: gather from one zero row then.
    const source = y.shape[0] === 0 ? tf.zeros([1, hidden]) : y;
    let rows: Tensor =
        tf.reshape(tf.gather(source, select(validRow, rowIndex, tf.scalar(0, 'int32'))), [numTokens, topK, hidden]);
    if (!attrs.weightsApplied) rows = tf.mul(rows, weights);
    rows = select(tf.reshape(validRow, [numTokens, topK, 1]), rows, tf.scalar(0));
    if (identity != null) {
      // An identity expert's slot (no row, section 11.5): w * x[t], and no bias term below.
      const noRow = tf.reshape(tf.less(rowIndex, tf.scalar(0, 'int32')), [numTokens, topK, 1]);
      rows = tf.add(rows, select(noRow, tf.mul(weights, tf.reshape(identity, [numTokens, 1, hidden])), tf.scalar(0)));
    }
    if (bias != null) {
      const ids = tf.reshape(stopGradient(topkIds), [-1]);
      const inBias = inRange(ids, bias.shape[0]);
      const validId = identity != null ? tf.logicalAnd(inBias, tf.greaterEqual(rowIndex, tf.scalar(0, 'int32'))) : inBias;
      const biasSource = bias.shape[0] === 0 ? tf.zeros([1, hidden]) : bias;
      const biases =
          tf.reshape(tf.gather(biasSource, select(validId, ids, tf.scalar(0, 'int32'))), [numTokens, topK, hidden]);
      rows = tf.add(rows, select(tf.reshape(validId, [numTokens, topK, 1]), tf.mul(biases, weights), tf.scalar(0)));
    }
    return tf.sum(rows, 1) as Tensor2D;
  });
}
