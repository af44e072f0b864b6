import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {BatchedGemmAttrs} from '../kernel_names.js';
import {select} from './routing_select_composite.js';

/**
 * Above this many gathered weight elements (R*K*N, 64 MiB of float32) the per-row weight gather stops being
 * worth its memory and the per-expert loop runs instead.
 */
const GATHER_LIMIT = 1 << 24;

/**
 * Returns float32 [R,N] (semantics doc section 4) without reading the segments back. Each row's expert is
 * the number of segment ends <= row ([R,E] compare); rows outside [offsets[0], offsets[E]) are 0.
 * Two formulations, chosen from static shapes:
 * - small R*K*N (decode): gather every row's expert weights, [R,K,N] in memory, one batched matMul: the
 *   FLOPs of the grouped GEMM, plus a weight copy of R*K*N.
 * - otherwise: one full [R,K]x[K,N] matMul per expert, kept only on that expert's rows: E times the FLOPs of
 *   the grouped GEMM, but only O(R*N) extra memory. Correct, not fast: backends that matter have a kernel.
 */
export function batchedGemmComposite(
    lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D, bias: Tensor2D | null, attrs: BatchedGemmAttrs): Tensor2D {
  const {transposeRhs, segmentsAreOffsets} = attrs;
  const [numRows, k] = lhs.shape;
  const numExperts = rhs.shape[0];
  const n = transposeRhs ? rhs.shape[1] : rhs.shape[2];
  return tf.tidy(() => {
    const offsets = segmentsAreOffsets ? segments : tf.concat([tf.zeros([1], 'int32'), tf.cumsum(segments)]);
    const row = tf.reshape(tf.range(0, numRows, 1, 'int32'), [numRows, 1]);
    const segmentEnds = tf.reshape(tf.slice(offsets, 1, numExperts), [1, numExperts]);
    const expertOfRow = tf.sum(tf.cast(tf.lessEqual(segmentEnds, row), 'int32'), 1);
    const inAnySegment = tf.logicalAnd(
        tf.greaterEqual(row, tf.slice(offsets, 0, 1)), tf.less(row, tf.slice(offsets, numExperts, 1)));

    if (numRows * k * n <= GATHER_LIMIT) {
      const expert = tf.minimum(expertOfRow, tf.scalar(numExperts - 1, 'int32'));
      const weights = tf.gather(rhs, expert);  // [R,K,N] or [R,N,K]
      let out: Tensor = tf.reshape(tf.matMul(tf.reshape(lhs, [numRows, 1, k]), weights, false, transposeRhs), [numRows, n]);
      if (bias != null) out = tf.add(out, tf.gather(bias, expert));
      return select(inAnySegment, out, tf.scalar(0)) as Tensor2D;
    }

    let out: Tensor = tf.zeros([numRows, n]);
    for (let e = 0; e < numExperts; e++) {
      // Per-expert tidy: only the running output survives an iteration.
      const next = tf.tidy(() => {
        const weights = tf.reshape(tf.slice(rhs, [e, 0, 0], [1, -1, -1]), transposeRhs ? [n, k] : [k, n]) as Tensor2D;
        let product: Tensor = tf.matMul(lhs, weights, false, transposeRhs);
        if (bias != null) product = tf.add(product, tf.slice(bias, [e, 0], [1, n]));
        const mine = tf.logicalAnd(inAnySegment, tf.equal(tf.reshape(expertOfRow, [numRows, 1]), tf.scalar(e, 'int32')));
        return select(mine, product, out);
      });
      out.dispose();
      out = next;
    }
    return out as Tensor2D;
  });
}
