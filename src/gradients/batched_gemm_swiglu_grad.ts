/**
 * batchedGemmSwiglu = fusedSwigluScale(h, scale) with h = batchedGemm(lhs, rhs, segments, bias): the chain rule
 * through the two documented ops. h is recomputed (the fused kernel never writes it), then dh comes from the
 * SwiGLU gradient and goes through batchedGemm's gradient.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs, PLAIN_SWIGLU} from '../kernels/kernel_names.js';
import {batchedGemm} from '../ops/batched_gemm.js';
import {batchedGemmWeightGrad} from '../ops/batched_gemm_weight_grad.js';
import {swigluScaleGrads} from './fused_swiglu_scale_grad.js';
import {zeroGrad} from './kernel_grad.js';

export interface BatchedGemmSwigluGrads {
  lhs: Tensor2D;
  rhs: Tensor3D;
  bias: Tensor2D | null;
  scale: Tensor1D | null;
}

/** Gradients for the output gradient dy [R,I]; bias / scale gradients only for the inputs given. */
export function batchedGemmSwigluGrads(dy: Tensor, lhs: Tensor2D, rhs: Tensor3D, segments: Tensor1D,
                                       bias: Tensor2D | null, scale: Tensor1D | null,
                                       attrs: BatchedGemmSwigluAttrs): BatchedGemmSwigluGrads {
  const {transposeRhs} = attrs;
  const act = attrs.activation == null ? PLAIN_SWIGLU : attrs;
  const numExperts = rhs.shape[0];
  if (lhs.shape[0] === 0) {
    // No rows: every gradient is zero (and tfjs's webgpu reductions fail on empty inputs).
    return {lhs: tf.zeros(lhs.shape), rhs: tf.zeros(rhs.shape), bias: bias == null ? null : tf.zeros(bias.shape),
            scale: scale == null ? null : tf.zeros([0])};
  }
  const out = tf.tidy(() => {
    const h = batchedGemm(lhs, rhs, segments, {transposeRhs, bias});
    const {dx: dh, dscale} = swigluScaleGrads(dy as Tensor2D, h, scale, act);
    const grads: Tensor[] = [
      batchedGemm(dh, rhs, segments, {transposeRhs: !transposeRhs}),
      batchedGemmWeightGrad(lhs, dh, segments, numExperts, {transposeOut: transposeRhs}),
    ];
    if (bias != null) {
      grads.push(tf.reshape(batchedGemmWeightGrad(tf.ones([lhs.shape[0], 1]), dh, segments, numExperts),
                            [numExperts, dh.shape[1]]));
    }
    if (dscale != null) grads.push(dscale);
    return grads;
  });
  return {
    lhs: out[0] as Tensor2D, rhs: out[1] as Tensor3D, bias: bias != null ? out[2] as Tensor2D : null,
    scale: scale != null ? out[out.length - 1] as Tensor1D : null,
  };
}

/** Kernel calls without bias and scale (the op differentiates the others through batchedGemmSwigluGrads). */
export const batchedGemmSwigluGradConfig: GradConfig = {
  kernelName: BatchedGemmSwiglu,
  inputsToSave: ['lhs', 'rhs', 'segments'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [lhs, rhs, segments] = saved as [Tensor2D, Tensor3D, Tensor1D];
    const gemmAttrs = attrs as unknown as BatchedGemmSwigluAttrs;
    const optionalInput = (name: string) => () => {
      throw new Error(`batchedGemmSwiglu: the gradient of a BatchedGemmSwiglu kernel call with a ${name} needs its ` +
          'values: differentiate the batchedGemmSwiglu op, not a direct runKernel call');
    };
    // Each thunk runs in its own tidy, so each recomputes what it needs (the unused gradient is disposed there).
    const all = () => batchedGemmSwigluGrads(dy as Tensor, lhs, rhs, segments, null, null, gemmAttrs);
    return {
      lhs: () => all().lhs,
      rhs: () => all().rhs,
      segments: () => zeroGrad(segments),
      bias: optionalInput('bias'),
      scale: optionalInput('scale'),
    };
  },
};
