import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {moeTopkSelectComposite} from '../kernels/composite/moe_topk_select_composite.js';
import {MoeTopkSelect, MoeTopkSelectAttrs, MoeTopkSelectMethod} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {checkElementCount, checkExpertCount, describeValue} from './limits.js';
import {
  argError, checkBoolean, checkFiniteNumber, checkInt, checkOptionalTensor, checkOptions, checkRenormalizeEpsilon,
  checkShape, checkTensor,
} from './validate.js';

const OP = 'moeTopkSelect';

/** The optional parts of softmax routing (docs/semantics.md section 1). */
export interface MoeTopkSelectOptions {
  /** Multiplies every weight (after renormalisation). Default 1. */
  routedScalingFactor?: number;
  /**
   * DeepSeek-V2's group_limited_greedy: the E experts form nGroup groups scored by their best probability; the
   * topkGroup best groups are kept and the other groups' experts score 0. Default 1 and 1 (no groups).
   */
  nGroup?: number;
  topkGroup?: number;
  /** Renormalised weights are w / (sum + renormalizeEpsilon); null (default): w / sum. */
  renormalizeEpsilon?: number | null;
  /**
   * 'greedy' (default): softmax top-k. 'sparsemixer': PhiMoE's two rounds (docs/semantics.md 11.8): round r picks
   * the largest logit m_r not yet chosen, masks every logit l with (m_r - l) / max(|l|, m_r) > 2 * sparsemixerEpsilon
   * and weighs the pick by its softmax over the unmasked rest. topK must be 2, no bias, no groups.
   */
  topkMethod?: MoeTopkSelectMethod;
  /** sparsemixer's threshold (PhiMoE's router_jitter_noise); default 0.01. */
  sparsemixerEpsilon?: number;
}

/**
 * Softmax top-k routing (docs/semantics.md section 1): p = softmax(logits); choose the k largest p + bias
 * (ties to the lower expert, NaN never wins); weights are the un-biased p, divided by their sum when renormalize,
 * times routedScalingFactor. With nGroup > 1, the experts outside the kept groups score 0 (no bias allowed).
 * With options.topkMethod 'sparsemixer' the two experts and their p come from PhiMoE's masked rounds (section
 * 11.8); renormalize and routedScalingFactor then apply as above (PhiMoE itself does not renormalise).
 */
export function moeTopkSelect(
    gatingLogits: Tensor2D, bias: Tensor1D | null, topK: number, renormalize = true,
    options: MoeTopkSelectOptions = {}): {topkIds: Tensor2D, topkWeights: Tensor2D} {
  const logits = checkTensor(OP, 'gatingLogits', gatingLogits, 2, 'float32', '[T,E]') as Tensor2D;
  const [, numExperts] = logits.shape;
  const $bias = checkOptionalTensor(OP, 'bias', bias, 1, 'float32', '[E]') as Tensor1D | null;
  if ($bias != null) checkShape(OP, 'bias', $bias, [numExperts], '[E]');
  checkExpertCount(OP, 'gatingLogits', numExperts);
  checkInt(OP, 'topK', topK, 1, numExperts);
  checkElementCount(OP, 'topkIds', [logits.shape[0], topK]);
  checkBoolean(OP, 'renormalize', renormalize);
  const opts = checkOptions(OP, 'options', options,
      ['routedScalingFactor', 'nGroup', 'topkGroup', 'renormalizeEpsilon', 'topkMethod', 'sparsemixerEpsilon']);
  const routedScalingFactor = checkFiniteNumber(OP, 'routedScalingFactor', opts.routedScalingFactor ?? 1);
  const nGroup = checkInt(OP, 'nGroup', opts.nGroup ?? 1, 1, Math.max(1, numExperts));
  if (numExperts % nGroup !== 0) {
    throw argError(OP, 'nGroup', `a divisor of the expert count E = ${numExperts}`, `${nGroup}`);
  }
  const topkGroup = checkInt(OP, 'topkGroup', opts.topkGroup ?? 1, 1, nGroup);
  if (nGroup > 1 && $bias != null) {
    throw argError(OP, 'bias', 'null when nGroup > 1 (group-limited softmax routing has no selection bias)',
                   `a tensor of shape [${$bias.shape}]`);
  }
  const renormalizeEpsilon = checkRenormalizeEpsilon(OP, opts.renormalizeEpsilon, 0);
  const topkMethod = opts.topkMethod ?? 'greedy';
  if (topkMethod !== 'greedy' && topkMethod !== 'sparsemixer') {
    throw argError(OP, 'topkMethod', '\'greedy\' or \'sparsemixer\'', describeValue(topkMethod));
  }
  const sparsemixerEpsilon = checkFiniteNumber(OP, 'sparsemixerEpsilon', opts.sparsemixerEpsilon ?? 0.01);
  if (sparsemixerEpsilon < 0) throw argError(OP, 'sparsemixerEpsilon', 'a finite number >= 0', `${sparsemixerEpsilon}`);
  if (topkMethod === 'sparsemixer') {
    if (topK !== 2) throw argError(OP, 'topK', '2 with topkMethod \'sparsemixer\' (it always picks two experts)', `${topK}`);
    if ($bias != null) {
      throw argError(OP, 'bias', 'null with topkMethod \'sparsemixer\' (it has no selection bias)',
                     `a tensor of shape [${$bias.shape}]`);
    }
    if (nGroup !== 1) throw argError(OP, 'nGroup', '1 with topkMethod \'sparsemixer\' (it has no groups)', `${nGroup}`);
  } else if (opts.sparsemixerEpsilon !== undefined) {
    throw argError(OP, 'sparsemixerEpsilon', 'absent unless topkMethod is \'sparsemixer\'', `${sparsemixerEpsilon}`);
  }

  const attrs: MoeTopkSelectAttrs = {
    topK, renormalize, renormalizeEpsilon, routedScalingFactor, nGroup, topkGroup, topkMethod, sparsemixerEpsilon};
  const inputs: Record<string, Tensor> = {gatingLogits: logits};
  if ($bias != null) inputs.bias = $bias;
  const [topkIds, topkWeights] = runMoeKernel(
      MoeTopkSelect, inputs, attrs, () => moeTopkSelectComposite(logits, $bias, attrs)) as Tensor2D[];
  return {topkIds, topkWeights};
}
