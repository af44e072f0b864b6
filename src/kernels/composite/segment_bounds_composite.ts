import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D} from '@tensorflow/tfjs-core';

import {stopGradient} from './stop_gradient.js';

/**
 * The segment bounds [E+1] of docs/semantics.md section 4 for any segments tensor of a GEMM with numRows rows, with
 * stock int32 ops and no readback: offsets clamped to [previous bound, R] (a running maximum of the values clamped
 * to [0, R]), counts clamped to [0, R - previous bound] (a running sum of the clamped counts that saturates at R).
 * Valid segments come back unchanged. Both scans double their stride (Hillis-Steele): about 4 log2(E) ops on E + 1
 * values. The saturating step adds b + min(a, R - b), so no intermediate leaves [0, R] and nothing wraps in int32.
 */
export function segmentBoundsComposite(segments: Tensor1D, segmentsAreOffsets: boolean, numRows: number): Tensor1D {
  return tf.tidy(() => {
    const rows = tf.scalar(numRows, 'int32');
    // int32, from a router's ids on the tape perhaps: no gradient.
    let run = tf.minimum(tf.maximum(stopGradient(segments), tf.scalar(0, 'int32')), rows);
    const n = run.shape[0];
    for (let stride = 1; stride < n; stride *= 2) {
      const earlier = tf.concat([tf.zeros([stride], 'int32'), tf.slice(run, 0, n - stride)]);
      run = segmentsAreOffsets ? tf.maximum(run, earlier) : tf.add(run, tf.minimum(earlier, tf.sub(rows, run)));
    }
    return (segmentsAreOffsets ? run : tf.concat([tf.zeros([1], 'int32'), run])) as Tensor1D;
  });
}
