import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {BatchedGemmWeightGradAttrs} from '../kernel_names.js';
import {select} from './routing_select_composite.js';
import {segmentBoundsComposite} from './segment_bounds_composite.js';

/** Above this many elements (R*E*max(K,N)) the expert-expanded operand stops being worth its memory. */
const EXPAND_LIMIT = 1 << 24;

/**
 * Returns float32 [E,K,N] (or [E,N,K]): out[e] = lhs[seg e]^T @ dy[seg e], without reading segments back.
 * A row's expert is the number of segment ends <= row; rows outside [offsets[0], offsets[E]) belong to none.
 * - small: lhs and dy spread into expert-expanded [E,K,R] and [E,R,N] operands (zeros outside the row's expert),
 *   one batched matMul: E times the FLOPs, one matMul call.
 * - otherwise: one masked lhs^T @ dy per expert.
 * Both operands are masked with where(), not multiplied by the membership: 0 * NaN (or 0 * Inf) of another
 * expert's row, or of a row in no segment, must not reach this expert's sum.
 */
export function batchedGemmWeightGradComposite(
    lhs: Tensor2D, dy: Tensor2D, segments: Tensor1D, attrs: BatchedGemmWeightGradAttrs): Tensor3D {
  const {numExperts, transposeOut, segmentsAreOffsets} = attrs;
  const [numRows, k] = lhs.shape;
  const n = dy.shape[1];
  // No rows: an empty sum. tfjs's webgpu matMul would bind zero-size buffers (a validation error that drops the
  // command buffer and leaves the output as whatever its pooled buffer held).
  if (numRows === 0 || k === 0 || n === 0) return tf.zeros(transposeOut ? [numExperts, n, k] : [numExperts, k, n]) as Tensor3D;
  return tf.tidy(() => {
    // Monotone bounds in [0, R] for any segments (section 4's rule for invalid ones): no row in two experts.
    const offsets = segmentBoundsComposite(segments, segmentsAreOffsets, numRows);
    const row = tf.reshape(tf.range(0, numRows, 1, 'int32'), [numRows, 1]);
    const starts = tf.reshape(tf.slice(offsets, 0, numExperts), [1, numExperts]);
    const ends = tf.reshape(tf.slice(offsets, 1, numExperts), [1, numExperts]);
    // [R,E] one-hot of each row's expert (all zero for a row in no segment).
    const member = tf.logicalAnd(tf.greaterEqual(row, starts), tf.less(row, ends));
    const zero = tf.scalar(0);

    let out: tf.Tensor;
    if (numRows * numExperts * Math.max(k, n) <= EXPAND_LIMIT) {
      // [E,R,1] built directly: webgpu's transpose of a bool tensor fails to compile (WGSL type mismatch).
      const memberE = tf.logicalAnd(tf.greaterEqual(tf.reshape(row, [1, numRows, 1]), tf.reshape(starts, [numExperts, 1, 1])),
          tf.less(tf.reshape(row, [1, numRows, 1]), tf.reshape(ends, [numExperts, 1, 1])));
      const lhsE = select(memberE, tf.reshape(lhs, [1, numRows, k]), zero);  // [E,R,K]
      const dyE = select(memberE, tf.reshape(dy, [1, numRows, n]), zero);    // [E,R,N]
      out = tf.matMul(lhsE as tf.Tensor3D, dyE as tf.Tensor3D, true, false);
    } else {
      const blocks: tf.Tensor[] = [];
      for (let e = 0; e < numExperts; e++) {
        const mask = tf.slice(member, [0, e], [numRows, 1]);
        blocks.push(tf.matMul(select(mask, lhs, zero) as Tensor2D, select(mask, dy, zero) as Tensor2D, true, false));
      }
      out = tf.stack(blocks);
    }
    return (transposeOut ? tf.transpose(out, [0, 2, 1]) : out) as Tensor3D;
  });
}
