import type {Tensor, Tensor2D} from '@tensorflow/tfjs-core';

import {moeCombineComposite} from '../kernels/composite/moe_combine_composite.js';
import {MoeCombine, MoeCombineAttrs} from '../kernels/kernel_names.js';
import {moeCombineGradBias, moeCombineGradIdentity, moeCombineGradWeights, moeCombineGradY} from '../gradients/moe_combine_grad.js';
import {runWithGradient, zeroGrad} from '../gradients/kernel_grad.js';
import {runMoeKernel, usesMoeKernel} from './dispatch.js';
import {checkElementCount, checkExpertCount} from './limits.js';
import {checkBoolean, checkOptionalTensor, checkOptions, checkShape, checkTensor} from './validate.js';

const OP = 'moeCombine';

/** Options of {@link moeCombine}. */
export interface MoeCombineOptions {
  /** float32 [E,D]: each expert's down-projection bias, always weighted by the routing weight. */
  downProjBias?: Tensor2D | null;
  /** The rows of y were already scaled by their routing weights (probInAdvance). */
  weightsApplied?: boolean;
  /**
   * float32 [T,D]: the input of the identity experts (zeroExperts, section 11.5). A slot with no row (rowMap -1, as
   * moePermute's zeroExperts gives an identity id) adds w[t,j] * identityInput[t] in place of a row, and no bias.
   */
  identityInput?: Tensor2D | null;
}

/**
 * Weighted combine (docs/semantics.md section 6): out[t] = sum_j (weightsApplied ? y[rowMap[t,j]] :
 * w[t,j] * y[rowMap[t,j]]) + w[t,j] * bias[id[t,j]], accumulated in float32. With options.identityInput, a slot
 * with no row (rowMap -1) contributes w[t,j] * identityInput[t] instead (section 11.5).
 */
export function moeCombine(
    y: Tensor2D, rowMap: Tensor2D, topkWeights: Tensor2D, topkIds: Tensor2D, options: MoeCombineOptions = {}): Tensor2D {
  const $y = checkTensor(OP, 'y', y, 2, 'float32', '[R,D]') as Tensor2D;
  const $rowMap = checkTensor(OP, 'rowMap', rowMap, 2, 'int32', '[T,k]') as Tensor2D;
  const [numTokens, topK] = $rowMap.shape;
  checkElementCount(OP, 'the output', [numTokens, $y.shape[1]]);
  const $weights = checkTensor(OP, 'topkWeights', topkWeights, 2, 'float32', '[T,k]') as Tensor2D;
  checkShape(OP, 'topkWeights', $weights, [numTokens, topK], '[T,k] (as rowMap)');
  const $ids = checkTensor(OP, 'topkIds', topkIds, 2, 'int32', '[T,k]') as Tensor2D;
  checkShape(OP, 'topkIds', $ids, [numTokens, topK], '[T,k] (as rowMap)');
  const opts = checkOptions(OP, 'options', options, ['downProjBias', 'weightsApplied', 'identityInput']);
  const weightsApplied =
      opts.weightsApplied == null ? false : checkBoolean(OP, 'options.weightsApplied', opts.weightsApplied);
  const bias = checkOptionalTensor(OP, 'options.downProjBias', opts.downProjBias, 2, 'float32', '[E,D]') as
      Tensor2D | null;
  if (bias != null) checkShape(OP, 'options.downProjBias', bias, [bias.shape[0], $y.shape[1]], '[E,D]');
  if (bias != null) checkExpertCount(OP, 'options.downProjBias', bias.shape[0]);
  const identity = checkOptionalTensor(OP, 'options.identityInput', opts.identityInput, 2, 'float32', '[T,D]') as
      Tensor2D | null;
  if (identity != null) checkShape(OP, 'options.identityInput', identity, [numTokens, $y.shape[1]], '[T,D]');

  const attrs: MoeCombineAttrs = {weightsApplied};
  const inputs: Record<string, Tensor> = {y: $y, rowMap: $rowMap, topkWeights: $weights, topkIds: $ids};
  if (bias != null) inputs.downProjBias = bias;
  if (identity != null) inputs.identityInput = identity;
  const run = () => runMoeKernel(
      MoeCombine, inputs, attrs, () => moeCombineComposite($y, $rowMap, $weights, $ids, bias, attrs, identity));
  if ((bias == null && identity == null) || !usesMoeKernel(MoeCombine)) return run();
  // The bias's and the identity input's values are part of the weights' gradient, and a registered gradient cannot
  // be handed an optional input.
  const optional = [bias, identity].filter((t): t is Tensor2D => t != null);
  return runWithGradient([$y, $rowMap, $weights, $ids, ...optional], run, (dout, [ys, rows, ws, ids, ...rest]) => {
    const b = bias != null ? rest[0] as Tensor2D : null;
    const x = identity != null ? rest[rest.length - 1] as Tensor2D : null;
    const grads = [
      moeCombineGradY(dout, ys.shape[0], rows as Tensor2D, ws as Tensor2D, weightsApplied),
      zeroGrad(rows),
      moeCombineGradWeights(dout, ys as Tensor2D, rows as Tensor2D, ids as Tensor2D, b, weightsApplied, x),
      zeroGrad(ids),
    ];
    if (b != null) {
      grads.push(moeCombineGradBias(dout, ws as Tensor2D, ids as Tensor2D, b.shape[0], x != null ? rows as Tensor2D : null));
    }
    if (x != null) grads.push(moeCombineGradIdentity(dout, ws as Tensor2D, rows as Tensor2D));
    return grads;
  });
}
