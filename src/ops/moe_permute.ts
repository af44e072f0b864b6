import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {moePermuteComposite} from '../kernels/composite/moe_permute_composite.js';
import {MoePermute, MoePermuteAttrs, permutedRowCount} from '../kernels/kernel_names.js';
import {runMoeKernel, usesMoeKernel} from './dispatch.js';
import {checkDerivedSize, checkElementCount, MAX_EXPERTS} from './limits.js';
import {keptOr} from '../gradients/kernel_grad.js';
import {stopGradient} from './stop_gradient.js';
import {checkInt, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

const OP = 'moePermute';

/** The optional parts of moePermute (docs/semantics.md sections 3 and 11.6). */
export interface MoePermuteOptions {
  /** float32 [T,k]: row rowMap[t,j] holds x[t] * weights[t,j] (the routing weight on the expert input). */
  weights?: Tensor2D | null;
  /**
   * Z identity experts after the E real ones (section 11.5): an id in [E, E+Z) gets no row (rowMap -1) and is not
   * counted, on every path (the cpu kernels accept it instead of rejecting it). Default 0.
   */
  zeroExperts?: number;
}

/**
 * Dispatch (docs/semantics.md section 3): rows grouped by ascending expert then token, each expert's segment
 * padded to a multiple of `alignment`. The row count R is static (T*k, plus E*(alignment-1) when aligned) so
 * no backend reads data back to size it; unused and padding rows are zero. With options.weights each row is
 * scaled by its (token, slot)'s weight.
 */
export function moePermute(x: Tensor2D, topkIds: Tensor2D, numExperts: number, alignment = 1,
                           options: MoePermuteOptions = {}): {
  permutedX: Tensor2D, tokensPerExpert: Tensor1D, expertOffsets: Tensor1D, rowMap: Tensor2D
} {
  const $x = checkTensor(OP, 'x', x, 2, 'float32', '[T,D]') as Tensor2D;
  const ids = checkTensor(OP, 'topkIds', topkIds, 2, 'int32', '[T,k]') as Tensor2D;
  if (ids.shape[0] !== $x.shape[0]) checkShape(OP, 'topkIds', ids, [$x.shape[0], ids.shape[1]], '[T,k]');
  checkInt(OP, 'numExperts', numExperts, 1, MAX_EXPERTS);
  checkInt(OP, 'alignment', alignment, 1);
  // R bounds every offset, so one check covers expertOffsets as well.
  const numRows = checkDerivedSize(OP, 'the permuted row count R',
      permutedRowCount($x.shape[0], ids.shape[1], numExperts, alignment), undefined, 'T*k + E*(alignment-1)');
  checkElementCount(OP, 'permutedX', [numRows, $x.shape[1]]);
  const opts = checkOptions(OP, 'options', options, ['weights', 'zeroExperts']);
  const zeroExperts = checkInt(OP, 'options.zeroExperts', opts.zeroExperts ?? 0, 0, MAX_EXPERTS);
  const weights = checkOptionalTensor(OP, 'options.weights', opts.weights, 2, 'float32', '[T,k]') as Tensor2D | null;
  if (weights != null) checkShape(OP, 'options.weights', weights, ids.shape, '[T,k]');

  const attrs: MoePermuteAttrs = {numExperts, alignment, zeroExperts};
  if (weights != null && usesMoeKernel(MoePermute) && tf.engine().isTapeOn()) {
    // Differentiating: the unweighted kernel (whose registered gradient is x's) times each row's weight sent
    // through rowMap by stock ops, which carry the weights' gradient. The same products as the weighted kernel.
    const plain = moePermute($x, ids, numExperts, alignment, {zeroExperts});
    const rowWeight = weightPerRow(weights, plain.rowMap, numRows);
    const permutedX = tf.mul(plain.permutedX, tf.reshape(rowWeight, [numRows, 1])) as Tensor2D;
    return {...plain, permutedX};
  }
  const inputs: Record<string, Tensor> = {x: $x, topkIds: ids};
  if (weights != null) inputs.weights = weights;
  const [permutedX, tokensPerExpert, expertOffsets, rowMap] = runMoeKernel(
      MoePermute, inputs, attrs, () => moePermuteComposite($x, ids, attrs, weights)) as Tensor2D[];
  return {
    permutedX,
    tokensPerExpert: tokensPerExpert as unknown as Tensor1D,
    expertOffsets: expertOffsets as unknown as Tensor1D,
    rowMap,
  };
}

/**
 * weights [T,k] sent to their rows through rowMap, [R]: a segment sum (tfjs cannot differentiate tf.scatterND;
 * rowMap is int32 and carries no gradient). Slots with no row (rowMap -1) go to one extra segment, dropped.
 */
export function weightPerRow(weights: Tensor2D, rowMap: Tensor2D, numRows: number): Tensor1D {
  const entries = rowMap.shape[0] * rowMap.shape[1];
  // (tfjs's cpu segment sum fails on an empty input: no entries, no row to scale.)
  if (entries === 0) return tf.zeros([numRows]);
  const rows = tf.reshape(stopGradient(rowMap), [entries]);
  const segment = keptOr(rows, tf.greaterEqual(rows, tf.scalar(0, 'int32')), numRows) as Tensor1D;
  return tf.slice(tf.unsortedSegmentSum(tf.reshape(weights, [entries]) as Tensor1D, segment, numRows + 1), 0, numRows);
}
