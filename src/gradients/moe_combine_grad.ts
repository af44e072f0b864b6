/**
 * moeCombine: out[t] = sum_j c[t,j] * y[rowMap[t,j]] + w[t,j] * bias[id[t,j]], c = weightsApplied ? 1 : w.
 * - y: row rowMap[t,j] receives c[t,j] * dout[t] (each used row belongs to one (t,j); other rows get 0).
 * - weights: <dout[t], y[row]> (unless weightsApplied) + <dout[t], bias[id]>.
 * - bias: expert e receives the sum of w[t,j] * dout[t] over the slots routed to it.
 * rowMap and ids are int32: no gradient. A slot whose row or id is invalid adds nothing (section 6): it takes no gradient.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {GradConfig, Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs} from '../kernels/kernel_names.js';
import {gatherRowsOrZero, segmentSumValid, zeroGrad} from './kernel_grad.js';

/** dout[t] repeated for each of the k slots, [T,k,D] by broadcasting. */
function perSlot(dout: Tensor2D): Tensor {
  return tf.reshape(dout, [dout.shape[0], 1, dout.shape[1]]);
}

/** d/dy [R,D]. */
export function moeCombineGradY(
    dout: Tensor2D, numRows: number, rowMap: Tensor2D, weights: Tensor2D, weightsApplied: boolean): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, topK] = rowMap.shape;
    const [entries, hidden] = [numTokens * topK, dout.shape[1]];
    if (entries === 0) return tf.zeros([numRows, hidden]) as Tensor2D;
    const slotGrad = weightsApplied ? tf.tile(perSlot(dout), [1, topK, 1]) :
                                      tf.mul(perSlot(dout), tf.reshape(weights, [numTokens, topK, 1]));
    return segmentSumValid(tf.reshape(slotGrad, [entries, hidden]) as Tensor2D, tf.reshape(rowMap, [entries]), numRows);
  });
}

/** d/dtopkWeights [T,k]. */
export function moeCombineGradWeights(
    dout: Tensor2D, y: Tensor2D, rowMap: Tensor2D, ids: Tensor2D, bias: Tensor2D | null,
    weightsApplied: boolean): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, topK] = rowMap.shape;
    const [entries, hidden] = [numTokens * topK, dout.shape[1]];
    let grad: Tensor = tf.zeros([numTokens, topK]);
    if (entries === 0) return grad as Tensor2D;
    if (!weightsApplied) {
      const rows = tf.reshape(gatherRowsOrZero(y, tf.reshape(rowMap, [entries])), [numTokens, topK, hidden]);
      grad = tf.sum(tf.mul(rows, perSlot(dout)), 2);
    }
    if (bias != null) {
      const biasRows = tf.reshape(gatherRowsOrZero(bias, tf.reshape(ids, [entries])), [numTokens, topK, hidden]);
      grad = tf.add(grad, tf.sum(tf.mul(biasRows, perSlot(dout)), 2));
    }
    return grad as Tensor2D;
  });
}

/** d/ddownProjBias [E,D]. */
export function moeCombineGradBias(dout: Tensor2D, weights: Tensor2D, ids: Tensor2D, numExperts: number): Tensor2D {
  return tf.tidy(() => {
    const [numTokens, topK] = ids.shape;
    const [entries, hidden] = [numTokens * topK, dout.shape[1]];
    if (entries === 0) return tf.zeros([numExperts, hidden]) as Tensor2D;
    const slotGrad = tf.mul(perSlot(dout), tf.reshape(weights, [numTokens, topK, 1]));
    return segmentSumValid(tf.reshape(slotGrad, [entries, hidden]) as Tensor2D, tf.reshape(ids, [entries]), numExperts);
  });
}

/** Kernel calls without downProjBias (the op differentiates calls with a bias through the functions above itself). */
export const moeCombineGradConfig: GradConfig = {
  kernelName: MoeCombine,
  inputsToSave: ['y', 'rowMap', 'topkWeights', 'topkIds'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs) => {
    const [y, rowMap, weights, ids] = saved as Tensor2D[];
    const dout = dy as Tensor2D;
    const {weightsApplied} = attrs as unknown as MoeCombineAttrs;
    return {
      y: () => moeCombineGradY(dout, y.shape[0], rowMap, weights, weightsApplied),
      topkWeights: () => moeCombineGradWeights(dout, y, rowMap, ids, null, weightsApplied),
      rowMap: () => zeroGrad(rowMap),
      topkIds: () => zeroGrad(ids),
      downProjBias: () => {
        throw new Error('moeCombine: the gradient of a MoeCombine kernel call with downProjBias needs the bias ' +
            'values: differentiate the moeCombine op, not a direct runKernel call');
      },
    };
  },
};
