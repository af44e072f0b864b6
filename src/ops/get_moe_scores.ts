import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {getMoeScoresComposite} from '../kernels/composite/get_moe_scores_composite.js';
import {GetMoeScores, GetMoeScoresAttrs} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {checkElementCount, checkExpertCount} from './limits.js';
import {argError, checkBoolean, checkFiniteNumber, checkInt, checkOptionalTensor, checkShape, checkTensor} from './validate.js';

const OP = 'getMoeScores';

/**
 * DeepSeek-V3 noaux_tc routing (docs/semantics.md section 2): sigmoid scores, group-limited top-k on the
 * bias-corrected scores, weights from the un-biased scores, renormalized, times routedScalingFactor.
 */
export function getMoeScores(
    gatingOutput: Tensor2D, nGroup: number, topkGroup: number, topK: number, routedScalingFactor: number,
    eScoreCorrectionBias: Tensor1D | null, renormalize = true):
    {scores: Tensor2D, topkWeights: Tensor2D, topkIds: Tensor2D} {
  const logits = checkTensor(OP, 'gatingOutput', gatingOutput, 2, 'float32', '[T,E]') as Tensor2D;
  const [, numExperts] = logits.shape;
  checkExpertCount(OP, 'gatingOutput', numExperts);
  checkInt(OP, 'nGroup', nGroup, 1, Math.max(1, numExperts));
  if (numExperts % nGroup !== 0) {
    throw argError(OP, 'nGroup', `a divisor of the expert count E = ${numExperts}`, `${nGroup}`);
  }
  checkInt(OP, 'topkGroup', topkGroup, 1, nGroup);
  const expertsPerGroup = numExperts / nGroup;
  checkInt(OP, 'topK', topK, 1, Math.min(numExperts, topkGroup * expertsPerGroup));
  checkElementCount(OP, 'topkIds', [logits.shape[0], topK]);
  checkFiniteNumber(OP, 'routedScalingFactor', routedScalingFactor);
  const $bias = checkOptionalTensor(OP, 'eScoreCorrectionBias', eScoreCorrectionBias, 1, 'float32', '[E]') as
      Tensor1D | null;
  if ($bias != null) checkShape(OP, 'eScoreCorrectionBias', $bias, [numExperts], '[E]');
  checkBoolean(OP, 'renormalize', renormalize);

  const attrs: GetMoeScoresAttrs = {nGroup, topkGroup, topK, routedScalingFactor, renormalize};
  const inputs: Record<string, Tensor> = {gatingOutput: logits};
  if ($bias != null) inputs.eScoreCorrectionBias = $bias;
  const [scores, topkWeights, topkIds] = runMoeKernel(
      GetMoeScores, inputs, attrs, () => getMoeScoresComposite(logits, $bias, attrs)) as Tensor2D[];
  return {scores, topkWeights, topkIds};
}
