import * as tf from '@tensorflow/tfjs-core';
import type {Tensor, Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import type {MoeTopkSelectAttrs} from '../kernel_names.js';
import {select, selectTopKComposite, takeAlongRows} from './routing_select_composite.js';
import {stopGradient} from './stop_gradient.js';

/** Returns [topkIds int32 [T,k], topkWeights float32 [T,k]] (docs/semantics.md section 1). */
export function moeTopkSelectComposite(
    gatingLogits: Tensor2D, bias: Tensor1D | null, attrs: MoeTopkSelectAttrs): [Tensor2D, Tensor2D] {
  return tf.tidy(() => {
    const numTokens = gatingLogits.shape[0];
    // tfjs's batched gather rejects empty batches: no tokens, nothing to select.
    if (numTokens === 0) return [tf.zeros([0, attrs.topK], 'int32'), tf.zeros([0, attrs.topK])] as [Tensor2D, Tensor2D];
    if (attrs.topkMethod === 'sparsemixer') {
      const {ids, weights} = sparsemixerComposite(gatingLogits, attrs.sparsemixerEpsilon, null);
      return [tf.cast(ids, 'int32'), finishWeights(weights, attrs)] as [Tensor2D, Tensor2D];
    }
    // A row with a NaN, or whose max is infinite, is NaN throughout (as max-subtracted softmax gives in IEEE
    // arithmetic); GPU backends do not promise that (webgpu on SwiftShader: exp(NaN) = Inf), so say it here.
    // (A mask: computed off the gradient tape, whose autodiff has no gradients for these predicates.)
    const logits = stopGradient(gatingLogits);
    const rowIsNaN =
        tf.logicalOr(tf.any(tf.isNaN(logits), 1, true), tf.logicalNot(tf.isFinite(tf.max(logits, 1, true))));
    let probs = select(rowIsNaN, tf.scalar(NaN), tf.softmax(gatingLogits, -1)) as Tensor2D;
    const {nGroup, topkGroup} = attrs;
    if (nGroup > 1) {
      // Groups scored by their best probability; the dropped groups' experts score 0 (selection: off the tape).
      const numExperts = probs.shape[1], groupSize = numExperts / nGroup;
      const grouped = tf.reshape(stopGradient(probs), [numTokens, nGroup, groupSize]);
      const best = tf.max(select(tf.isNaN(grouped), tf.scalar(-Infinity), grouped), 2) as Tensor2D;
      const {chosen: keptGroups} = selectTopKComposite(best, topkGroup);
      const keptExperts = tf.reshape(
          tf.tile(tf.reshape(keptGroups, [numTokens, nGroup, 1]), [1, 1, groupSize]), [numTokens, numExperts]);
      probs = select(keptExperts, probs, tf.scalar(0)) as Tensor2D;
    }
    const keys = bias == null ? probs : tf.add(probs, tf.reshape(bias, [1, -1])) as Tensor2D;
    const {ids} = selectTopKComposite(keys, attrs.topK);
    return [tf.cast(ids, 'int32'), finishWeights(takeAlongRows(probs, ids), attrs)] as [Tensor2D, Tensor2D];
  });
}

/** The chosen p [T,k] divided by (their sum + renormalizeEpsilon) when renormalize, times routedScalingFactor. */
function finishWeights(chosen: Tensor2D, attrs: MoeTopkSelectAttrs): Tensor2D {
  let weights: Tensor = chosen;
  // ERNIE's clamp (semantics 1.5): 0/0 when a bias picks experts whose p underflowed. A NaN sum stays NaN
  // through the weights themselves (the row is NaN), whatever maximum() does with NaN on a backend.
  // renormalizeEpsilon (section 11.7) adds to the sum inside the clamp.
  if (attrs.renormalize) {
    const sum = tf.sum(weights, 1, true);
    const withEps = attrs.renormalizeEpsilon === 0 ? sum : tf.add(sum, tf.scalar(attrs.renormalizeEpsilon));
    weights = tf.div(weights, tf.maximum(withEps, tf.scalar(1e-12)));
  }
  if (attrs.routedScalingFactor !== 1) weights = tf.mul(weights, tf.scalar(attrs.routedScalingFactor));
  return weights as Tensor2D;
}

/**
 * PhiMoE's sparsemixer (docs/semantics.md 11.8) from stock ops: the two picks (float32 ids [T,2], given or
 * selected: the row's two largest logits by the routers' rule), each round's masked softmax probs [T,E] (0 on the
 * masked experts and, in round 2, on the first pick) and the picks' probabilities as weights [T,2]. The masks
 * are computed off the tape, so the probs' gradient is the masked softmax's with the selection held fixed (the
 * layer's definition; routing_grad.ts uses the probs for the kernels' gradient).
 */
export function sparsemixerComposite(gatingLogits: Tensor2D, sparsemixerEpsilon: number, givenIds: Tensor2D | null):
    {ids: Tensor2D, weights: Tensor2D, probs: Tensor2D[]} {
  const logits = stopGradient(gatingLogits);
  const numExperts = logits.shape[1];
  const ids = givenIds ?? selectTopKComposite(logits, 2).ids;
  const index = tf.reshape(tf.range(0, numExperts, 1, 'float32'), [1, numExperts]);
  const threshold = tf.scalar(Math.fround(2 * Math.fround(sparsemixerEpsilon)));
  const rowNaN = tf.any(tf.isNaN(logits), 1, true);
  const probs: Tensor2D[] = [], weights: Tensor[] = [];
  let candidates: Tensor = tf.cast(tf.ones([1, numExperts]), 'bool');
  for (let round = 0; round < 2; round++) {
    const pick = tf.slice(ids, [0, round], [-1, 1]) as Tensor2D;
    const m = takeAlongRows(logits, pick);
    const scale = tf.maximum(tf.abs(logits), m);
    // The ratio is read only where scale > 0: 0 / 0 (m = l = 0) does not mask, and a GPU need not give NaN there.
    const masked = tf.logicalAnd(tf.greater(scale, tf.scalar(0)), tf.greater(tf.div(tf.sub(m, logits), scale), threshold));
    const keep = tf.logicalAnd(candidates, tf.logicalNot(masked));
    // exp(l - m) with m off the tape: the softmax is shift-invariant, so its gradient is the masked softmax's.
    const ex = select(keep, tf.exp(tf.sub(gatingLogits, m)), tf.scalar(0));
    const p = tf.div(ex, tf.sum(ex, 1, true)) as Tensor2D;
    probs.push(p);
    // NaN where the max-subtracted softmax is NaN in IEEE arithmetic (GPUs need not say so: exp(NaN) = Inf).
    const undefinedRound = tf.logicalOr(rowNaN, tf.logicalNot(tf.isFinite(m)));
    weights.push(select(undefinedRound, tf.scalar(NaN), takeAlongRows(p, pick)));
    candidates = tf.notEqual(index, pick);
  }
  return {ids, weights: tf.concat(weights, 1) as Tensor2D, probs};
}
