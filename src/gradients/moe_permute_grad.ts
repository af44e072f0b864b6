/**
 * moePermute: permutedX[rowMap[t,j]] = x[t]. Token t's gradient is the sum of the gradients of its k rows
 * (padding and unused rows copy nothing, so their gradient goes nowhere). Only permutedX is differentiable;
 * topkIds is int32.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import {MoePermute} from '../kernels/kernel_names.js';
import {gatherRowsOrZero, zeroGrad} from './kernel_grad.js';

/** d/dx [T,D] from the gradient of permutedX [R,D]. */
export function moePermuteGradX(dPermuted: Tensor2D, rowMap: Tensor2D): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, topK] = rowMap.shape;
    const hidden = dPermuted.shape[1];
    if (numTokens * topK === 0) return tf.zeros([numTokens, hidden]) as Tensor2D;
    // rowMap -1 (an id outside [0,E) on a device path, section 3) copied nothing: no gradient.
    const rows = gatherRowsOrZero(dPermuted, tf.reshape(rowMap, [numTokens * topK]));
    return tf.sum(tf.reshape(rows, [numTokens, topK, hidden]), 1) as Tensor2D;
  });
}

export const moePermuteGradConfig: GradConfig = {
  kernelName: MoePermute,
  // Outputs: permutedX, tokensPerExpert, expertOffsets, rowMap.
  outputsToSave: [false, false, false, true],
  gradFunc: (dys: Tensor | Tensor[], saved: Tensor[]) => {
    const [rowMap] = saved as [Tensor2D];
    const dPermuted = (dys as Tensor[])[0] as Tensor2D;
    return {
      x: () => moePermuteGradX(dPermuted, rowMap),
      topkIds: () => zeroGrad(rowMap),  // topkIds has rowMap's shape [T,k]
    };
  },
};
