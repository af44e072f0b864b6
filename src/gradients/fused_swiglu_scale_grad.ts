/**
 * fusedSwigluScale: out = silu(g) * u * s, g = x[:, :I], u = x[:, I:], s = scale[r] (1 without scale).
 * silu'(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
 * dg = dy * s * u * silu'(g), du = dy * s * silu(g), dscale[r] = sum_i dy * silu(g) * u.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {FusedSwigluScale} from '../kernels/kernel_names.js';

/** Gradients of fusedSwigluScale(x, scale) for the output gradient dy [R,I]: {dx [R,2I], dscale [R] | null}. */
export function swigluScaleGrads(dy: Tensor2D, x: Tensor2D, scale: Tensor1D | null):
    {dx: Tensor2D, dscale: Tensor1D | null} {
  const [dx, dscale] = tf.tidy(() => {
    const [numRows, twiceIntermediate] = x.shape;
    const intermediate = twiceIntermediate / 2;
    const gate = tf.slice(x, [0, 0], [numRows, intermediate]);
    const up = tf.slice(x, [0, intermediate], [numRows, intermediate]);
    const sig = tf.sigmoid(gate);
    const silu = tf.mul(gate, sig);
    const siluPrime = tf.mul(sig, tf.add(tf.scalar(1), tf.mul(gate, tf.sub(tf.scalar(1), sig))));
    const scaled = scale == null ? dy : tf.mul(dy, tf.reshape(scale, [numRows, 1]));
    const dxAll = tf.concat([tf.mul(tf.mul(scaled, up), siluPrime), tf.mul(scaled, silu)], 1) as Tensor2D;
    if (scale == null) return [dxAll];
    return [dxAll, tf.sum(tf.mul(tf.mul(dy, silu), up), 1) as Tensor1D];
  });
  return {dx: dx as Tensor2D, dscale: (dscale ?? null) as Tensor1D | null};
}

/** Kernel calls without scale (the op differentiates calls with a scale through swigluScaleGrads itself). */
export const fusedSwigluScaleGradConfig: GradConfig = {
  kernelName: FusedSwigluScale,
  inputsToSave: ['x'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
    const [x] = saved as [Tensor2D];
    return {
      x: () => swigluScaleGrads(dy as Tensor2D, x, null).dx,
      scale: () => {
        throw new Error('fusedSwigluScale: the gradient of a FusedSwigluScale kernel call with a scale needs the ' +
            'scale values: differentiate the fusedSwigluScale op, not a direct runKernel call');
      },
    };
  },
};
