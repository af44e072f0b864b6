import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {BatchedGemmWeightGradAttrs} from '../kernel_names.js';
import {stopGradient} from './stop_gradient.js';

/** Above this many elements (R*E*max(K,N)) the expert-expanded operand stops being worth its memory. */
const EXPAND_LIMIT = 1 << 24;

/**
 * Returns float32 [E,K,N] (or [E,N,K]): out[e] = lhs[seg e]^T @ dy[seg e], without reading segments back.
 * A row's expert is the number of segment ends <= row; rows outside [offsets[0], offsets[E]) belong to none.
 * - small: lhs spread into an expert-expanded [R, E*K] operand (zeros outside the row's expert), one matMul
 *   [E*K, R] x [R, N]: E times the FLOPs, one matMul call.
 * - otherwise: one masked lhs^T @ dy per expert.
 */
export function batchedGemmWeightGradComposite(
    lhs: Tensor2D, dy: Tensor2D, segments: Tensor1D, attrs: BatchedGemmWeightGradAttrs): Tensor3D {
  const {numExperts, transposeOut, segmentsAreOffsets} = attrs;
  const [numRows, k] = lhs.shape;
  const n = dy.shape[1];
  // No rows: an empty sum. tfjs's webgpu matMul would bind zero-size buffers (a validation error that drops the
  // command buffer and leaves the output as whatever its pooled buffer held).
  if (numRows === 0) return tf.zeros(transposeOut ? [numExperts, n, k] : [numExperts, k, n]) as Tensor3D;
  return tf.tidy(() => {
    const segs = stopGradient(segments);
    const offsets = segmentsAreOffsets ? segs : tf.concat([tf.zeros([1], 'int32'), tf.cumsum(segs)]);
    const row = tf.reshape(tf.range(0, numRows, 1, 'int32'), [numRows, 1]);
    const starts = tf.reshape(tf.slice(offsets, 0, numExperts), [1, numExperts]);
    const ends = tf.reshape(tf.slice(offsets, 1, numExperts), [1, numExperts]);
    // [R,E] one-hot of each row's expert (all zero for a row in no segment).
    const member = tf.cast(tf.logicalAnd(tf.greaterEqual(row, starts), tf.less(row, ends)), 'float32');

    let out: tf.Tensor;
    if (numRows * numExperts * Math.max(k, n) <= EXPAND_LIMIT) {
      const expanded = tf.reshape(tf.mul(tf.reshape(member, [numRows, numExperts, 1]), tf.reshape(lhs, [numRows, 1, k])),
          [numRows, numExperts * k]);
      out = tf.reshape(tf.matMul(expanded, dy, true, false), [numExperts, k, n]);
    } else {
      const blocks: tf.Tensor[] = [];
      for (let e = 0; e < numExperts; e++) {
        const mask = tf.slice(member, [0, e], [numRows, 1]);
        blocks.push(tf.matMul(tf.mul(lhs, mask), dy, true, false));
      }
      out = tf.stack(blocks);
    }
    return (transposeOut ? tf.transpose(out, [0, 2, 1]) : out) as Tensor3D;
  });
}
