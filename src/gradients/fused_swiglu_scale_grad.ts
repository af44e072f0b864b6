/**
 * fusedSwigluScale: out = silu(g) * u * s, g = x[:, :I], u = x[:, I:], s = scale[r] (1 without scale).
 * silu'(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
 * dg = dy * s * u * silu'(g), du = dy * s * silu(g), dscale[r] = sum_i dy * silu(g) * u.
 * clamped_swiglu: out = (uc + 1) * gc * sigmoid(a gc) * s with gc = min(g, L), uc = clamp(u, -L, L); with
 * f(gc) = gc * sigmoid(a gc), f'(gc) = sigmoid(a gc) * (1 + a gc (1 - sigmoid(a gc))):
 * dg = dy * s * (uc + 1) * f'(gc) where g <= L (else 0), du = dy * s * f(gc) where |u| <= L (else 0), as torch's
 * clamp passes the gradient on the closed interval.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleAttrs, PLAIN_SWIGLU, SwigluActivationAttrs} from '../kernels/kernel_names.js';

/** Gradients of fusedSwigluScale(x, scale) for the output gradient dy [R,I]: {dx [R,2I], dscale [R] | null}. */
export function swigluScaleGrads(dy: Tensor2D, x: Tensor2D, scale: Tensor1D | null,
                                 act: SwigluActivationAttrs = PLAIN_SWIGLU): {dx: Tensor2D, dscale: Tensor1D | null} {
  const [dx, dscale] = tf.tidy(() => {
    const [numRows, twiceIntermediate] = x.shape;
    const intermediate = twiceIntermediate / 2;
    let gate = tf.slice(x, [0, 0], [numRows, intermediate]);
    let up = tf.slice(x, [0, intermediate], [numRows, intermediate]);
    // Plain SwiGLU is the clamped form's algebra with alpha 1, no clamp and no +1 on up.
    const clamped = act.activation === 'clamped_swiglu';
    const alpha = clamped ? act.swigluAlpha : 1;
    let gateMask: tf.Tensor | null = null, upMask: tf.Tensor | null = null;
    if (clamped) {
      const limit = act.swigluLimit;
      gateMask = tf.cast(tf.lessEqual(gate, limit), 'float32');
      upMask = tf.cast(tf.lessEqual(tf.abs(up), limit), 'float32');
      gate = tf.minimum(gate, limit);
      up = tf.add(tf.clipByValue(up, -limit, limit), 1);
    }
    const sig = tf.sigmoid(alpha === 1 ? gate : tf.mul(gate, alpha));
    const silu = tf.mul(gate, sig);
    const agate = alpha === 1 ? gate : tf.mul(gate, alpha);
    let siluPrime = tf.mul(sig, tf.add(tf.scalar(1), tf.mul(agate, tf.sub(tf.scalar(1), sig))));
    let upFactor = silu;
    if (gateMask != null) siluPrime = tf.mul(siluPrime, gateMask);
    if (upMask != null) upFactor = tf.mul(upFactor, upMask);
    const scaled = scale == null ? dy : tf.mul(dy, tf.reshape(scale, [numRows, 1]));
    const dxAll = tf.concat([tf.mul(tf.mul(scaled, up), siluPrime), tf.mul(scaled, upFactor)], 1) as Tensor2D;
    if (scale == null) return [dxAll];
    return [dxAll, tf.sum(tf.mul(tf.mul(dy, silu), up), 1) as Tensor1D];
  });
  return {dx: dx as Tensor2D, dscale: (dscale ?? null) as Tensor1D | null};
}

/** Kernel calls without scale (the op differentiates calls with a scale through swigluScaleGrads itself). */
export const fusedSwigluScaleGradConfig: GradConfig = {
  kernelName: FusedSwigluScale,
  inputsToSave: ['x'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [x] = saved as [Tensor2D];
    const act = attrs as unknown as FusedSwigluScaleAttrs;
    return {
      x: () => swigluScaleGrads(dy as Tensor2D, x, null, act.activation == null ? PLAIN_SWIGLU : act).dx,
      scale: () => {
        throw new Error('fusedSwigluScale: the gradient of a FusedSwigluScale kernel call with a scale needs the ' +
            'scale values: differentiate the fusedSwigluScale op, not a direct runKernel call');
      },
    };
  },
};
