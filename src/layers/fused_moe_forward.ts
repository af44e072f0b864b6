/**
 * The FusedMoE forward (docs/semantics.md section 7) composed from the public MoE ops and stock tfjs ops only, so it
 * runs on whichever kernels the ops dispatch to (ours on the active backend, or the composite path inside
 * withCompositeKernels). How each op runs (fused epilogue, expert ranges for oversized weights, program variant) is
 * its backend kernel's decision, not this file's. Nothing here reads data back to JS.
 */
import * as tf from '@tensorflow/tfjs-core';

import type {MoeForwardContext, MoeForwardResult} from '../executor/layer_executor.js';
import type {FusedMoEOptions, FusedMoEWeights} from '../executor/layer_schema.js';
import {batchedGemm} from '../ops/batched_gemm.js';
import {batchedGemmSwiglu} from '../ops/batched_gemm_swiglu.js';
import {fusedSwigluScale} from '../ops/fused_swiglu_scale.js';
import {getMoeScores} from '../ops/get_moe_scores.js';
import {moeCombine} from '../ops/moe_combine.js';
import {moePermute, weightPerRow} from '../ops/moe_permute.js';
import {moeTopkSelect} from '../ops/moe_topk_select.js';
import {routerLogits} from '../ops/router_logits.js';

/** Routing of precomputed router logits [T,E]: top-k expert ids and their weights (docs/semantics.md 7.2). */
export function routeLogits(logits: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions):
    {topkIds: tf.Tensor2D, topkWeights: tf.Tensor2D} {
  const bias = o.useCorrectionBias ? w.gate_correction_bias as tf.Tensor1D : null;
  if (o.topkMethod === 'noaux_tc') {
    const {scores, topkIds, topkWeights} = getMoeScores(
        logits, o.nGroup, o.topkGroup, o.topK, o.routedScalingFactor, bias, o.renormalize, o.renormalizeEpsilon);
    scores.dispose();
    return {topkIds, topkWeights};
  }
  // greedy has nGroup = topkGroup = 1 (validated), which is group_limited_greedy without groups.
  const sparsemixer = o.topkMethod === 'sparsemixer' ?
      {topkMethod: 'sparsemixer' as const, sparsemixerEpsilon: o.sparsemixerEpsilon} : {};
  return moeTopkSelect(logits, bias, o.topK, o.renormalize, {
    routedScalingFactor: o.routedScalingFactor, nGroup: o.nGroup, topkGroup: o.topkGroup,
    renormalizeEpsilon: o.renormalizeEpsilon, ...sparsemixer,
  });
}

/** Routing: top-k expert ids and their weights for every token of x [T,H]. */
export function routeTokens(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions):
    {topkIds: tf.Tensor2D, topkWeights: tf.Tensor2D} {
  return routeLogits(layerRouterLogits(x, w, o), w, o);
}

/** The router logits x Wr, plus gate_bias with routerBias (before any scoring, docs/semantics.md 11.1). */
export function layerRouterLogits(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): tf.Tensor2D {
  const logits = routerLogits(x, w.gate_weight);
  return o.routerBias ? tf.add(logits, w.gate_bias as tf.Tensor1D) : logits;
}

/** The gated-SwiGLU MLP every token passes through (optionally gated by sigmoid(x @ gate)). */
function sharedExperts(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): tf.Tensor2D {
  const hidden = fusedSwigluScale(tf.matMul(x, w.shared_up_gate_proj_weight as tf.Tensor2D) as tf.Tensor2D);
  const out = tf.matMul(hidden, w.shared_down_proj_weight as tf.Tensor2D) as tf.Tensor2D;
  if (!o.sharedExpertGate) return out;
  return tf.mul(out, tf.sigmoid(tf.matMul(x, w.shared_expert_gate_weight as tf.Tensor2D)));
}

/**
 * y [T,H] for x [T,H], with the routing ids and router logits it used (for the layer's load balancing). Call inside
 * tf.tidy: intermediates are left to the caller's scope.
 */
export function fusedMoeForwardWithRouting(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): MoeForwardResult {
  const gatingLogits = layerRouterLogits(x, w, o);
  const routed = routeLogits(gatingLogits, w, o);
  const {topkIds, topkWeights} = routed;
  // Routing always sees the full-width x; only the experts run in the latent space.
  const expertInput: tf.Tensor2D = o.latentSize != null ? tf.matMul(x, w.fc1_latent_proj_weight as tf.Tensor2D) : x;
  // routingWeightOn 'input': each expert sees w * x, and the combine sums its outputs unweighted.
  const onInput = o.routingWeightOn === 'input';
  // Identity experts (ids in [E, E+Z), section 11.5) get no row, so no FFN work: the combine adds w * x for them.
  const {permutedX, expertOffsets, rowMap} = moePermute(expertInput, topkIds, o.numExperts, 1,
      {weights: onInput ? topkWeights : null, zeroExperts: o.zeroExperts});
  let rowScale: tf.Tensor1D | null = null;
  // Each permuted row's routing weight, sent through rowMap (alignment 1: every row is used).
  if (o.probInAdvance) rowScale = weightPerRow(topkWeights, rowMap, permutedX.shape[0]);
  const activated = batchedGemmSwiglu(permutedX, w.up_gate_proj_weight, expertOffsets, {
    bias: o.withBias ? w.up_gate_proj_bias as tf.Tensor2D : null,
    scale: rowScale,
    activation: o.activation, swigluAlpha: o.swigluAlpha, swigluLimit: o.swigluLimit,
  });
  const down = batchedGemm(activated, w.down_proj_weight, expertOffsets);
  let output: tf.Tensor2D = moeCombine(down, rowMap, topkWeights, topkIds, {
    downProjBias: o.withBias ? w.down_proj_bias as tf.Tensor2D : null,
    weightsApplied: o.probInAdvance || onInput,
    // zeroExperts rules out latentSize, so x is in the combine's space.
    identityInput: o.zeroExperts > 0 ? x : null,
  });
  if (o.latentSize != null) output = tf.matMul(output, w.fc2_latent_proj_weight as tf.Tensor2D);
  if (o.sharedExpertIntermediateSize > 0) output = tf.add(output, sharedExperts(x, w, o));
  return {output, topkIds, gatingLogits};
}

/**
 * y [T,H] for x [T,H]. Call inside tf.tidy: intermediates are left to the caller's scope. (A fourth argument, the
 * caller's context, was once needed for oversized weights; the kernels handle those now, and it is ignored.)
 */
export function fusedMoeForward(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions,
                                ..._context: [MoeForwardContext?]): tf.Tensor2D {
  return fusedMoeForwardWithRouting(x, w, o).output;
}
