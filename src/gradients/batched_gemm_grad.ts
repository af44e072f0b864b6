/**
 * batchedGemm: out[r] = lhs[r] @ W[e] + b[e] for r in segment e (W = rhs[e], or rhs[e]^T with transposeRhs).
 * - lhs: dy[r] @ W[e]^T: the same grouped GEMM with the other rhs orientation (rows in no segment get 0,
 *   as their output never depended on lhs).
 * - rhs: the segment-wise lhs^T @ dy (batchedGemmWeightGrad), laid out like rhs.
 * - bias: the segment-wise column sums of dy, i.e. the weight gradient of an all-ones [R,1] lhs.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {BatchedGemm, BatchedGemmAttrs} from '../kernels/kernel_names.js';
import {batchedGemm} from '../ops/batched_gemm.js';
import {batchedGemmWeightGrad} from '../ops/batched_gemm_weight_grad.js';
import {zeroGrad} from './kernel_grad.js';

export const batchedGemmGradConfig: GradConfig = {
  kernelName: BatchedGemm,
  inputsToSave: ['lhs', 'rhs', 'segments'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [lhs, rhs, segments] = saved as [Tensor2D, Tensor3D, Tensor1D];
    const out = dy as Tensor2D;
    const {transposeRhs} = attrs as unknown as BatchedGemmAttrs;
    const numExperts = rhs.shape[0];
    return {
      lhs: () => batchedGemm(out, rhs, segments, {transposeRhs: !transposeRhs}),
      rhs: () => batchedGemmWeightGrad(lhs, out, segments, numExperts, {transposeOut: transposeRhs}),
      bias: () => tf.tidy(() => tf.reshape(
          batchedGemmWeightGrad(tf.ones([lhs.shape[0], 1]), out, segments, numExperts), [numExperts, out.shape[1]])),
      segments: () => zeroGrad(segments),
    };
  },
};
