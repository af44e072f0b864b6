import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {moeTopkSelectComposite} from '../kernels/composite/moe_topk_select_composite.js';
import {MoeTopkSelect, MoeTopkSelectAttrs} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {checkElementCount, checkExpertCount} from './limits.js';
import {checkBoolean, checkInt, checkOptionalTensor, checkShape, checkTensor} from './validate.js';

const OP = 'moeTopkSelect';

/**
 * Softmax top-k routing (docs/semantics.md section 1): p = softmax(logits); choose the k largest p + bias
 * (ties to the lower expert, NaN never wins); weights are the un-biased p, divided by their sum when renormalize.
 */
export function moeTopkSelect(
    gatingLogits: Tensor2D, bias: Tensor1D | null, topK: number,
    renormalize = true): {topkIds: Tensor2D, topkWeights: Tensor2D} {
  const logits = checkTensor(OP, 'gatingLogits', gatingLogits, 2, 'float32', '[T,E]') as Tensor2D;
  const [, numExperts] = logits.shape;
  const $bias = checkOptionalTensor(OP, 'bias', bias, 1, 'float32', '[E]') as Tensor1D | null;
  if ($bias != null) checkShape(OP, 'bias', $bias, [numExperts], '[E]');
  checkExpertCount(OP, 'gatingLogits', numExperts);
  checkInt(OP, 'topK', topK, 1, numExperts);
  checkElementCount(OP, 'topkIds', [logits.shape[0], topK]);
  checkBoolean(OP, 'renormalize', renormalize);

  const attrs: MoeTopkSelectAttrs = {topK, renormalize};
  const inputs: Record<string, Tensor> = {gatingLogits: logits};
  if ($bias != null) inputs.bias = $bias;
  const [topkIds, topkWeights] = runMoeKernel(
      MoeTopkSelect, inputs, attrs, () => moeTopkSelectComposite(logits, $bias, attrs)) as Tensor2D[];
  return {topkIds, topkWeights};
}
