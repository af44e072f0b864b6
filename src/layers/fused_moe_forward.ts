/**
 * The FusedMoE forward (semantics doc section 7) composed from the public MoE ops, so it runs on whichever
 * kernels the ops dispatch to (ours on the active backend, or the composite path inside withCompositeKernels).
 * Nothing here reads data back to JS.
 */
import * as tf from '@tensorflow/tfjs-core';

import {batchedGemm} from '../ops/batched_gemm.js';
import {fusedSwigluScale} from '../ops/fused_swiglu_scale.js';
import {getMoeScores} from '../ops/get_moe_scores.js';
import {moeCombine} from '../ops/moe_combine.js';
import {moePermute} from '../ops/moe_permute.js';
import {moeTopkSelect} from '../ops/moe_topk_select.js';
import {stopGradient} from '../kernels/composite/stop_gradient.js';
import {batchedGemmSwiglu, canFuseSwiglu} from '../kernels/webgpu/BatchedGemmSwiglu.js';
import {shardedBatchedGemm} from '../kernels/webgpu/expert_shards.js';
import {getKernelPath} from '../ops/dispatch.js';
import {decodeActive, webgpuDecodeForward} from '../kernels/webgpu/decode/decode_forward.js';
import {expertShardsFor} from './expert_shard_cache.js';
import type {FusedMoEOptions, FusedMoEWeights} from './fused_moe_config.js';

/** Routing: top-k expert ids and their weights for every token of x [T,H]. */
export function routeTokens(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions):
    {topkIds: tf.Tensor2D, topkWeights: tf.Tensor2D} {
  const logits = tf.matMul(x, w.gate_weight) as tf.Tensor2D;
  const bias = o.useCorrectionBias ? w.gate_correction_bias as tf.Tensor1D : null;
  if (o.topkMethod === 'noaux_tc') {
    const {scores, topkIds, topkWeights} =
        getMoeScores(logits, o.nGroup, o.topkGroup, o.topK, o.routedScalingFactor, bias, o.renormalize);
    scores.dispose();
    return {topkIds, topkWeights};
  }
  return moeTopkSelect(logits, bias, o.topK, o.renormalize);
}

/** The gated-SwiGLU MLP every token passes through (optionally gated by sigmoid(x @ gate)). */
function sharedExperts(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): tf.Tensor2D {
  const hidden = fusedSwigluScale(tf.matMul(x, w.shared_up_gate_proj_weight as tf.Tensor2D) as tf.Tensor2D);
  const out = tf.matMul(hidden, w.shared_down_proj_weight as tf.Tensor2D) as tf.Tensor2D;
  if (!o.sharedExpertGate) return out;
  return tf.mul(out, tf.sigmoid(tf.matMul(x, w.shared_expert_gate_weight as tf.Tensor2D)));
}

/**
 * An expert GEMM over the layer's weight `name`: per expert-range shard when the weight exceeds the storage
 * binding limit (expert_shard_cache.ts; needs the calling layer as `owner`), else one batchedGemm.
 */
function expertGemm(lhs: tf.Tensor2D, name: 'up_gate_proj_weight' | 'down_proj_weight', w: FusedMoEWeights,
                    expertOffsets: tf.Tensor1D, bias: tf.Tensor2D | null, owner?: object): tf.Tensor2D {
  const sharded = owner == null ? null : expertShardsFor(owner, name, w[name]);
  return sharded == null ? batchedGemm(lhs, w[name], expertOffsets, {bias}) :
                           shardedBatchedGemm(lhs, sharded.shards, sharded.ranges, expertOffsets, {bias});
}

/**
 * y [T,H] for x [T,H]. Call inside tf.tidy: intermediates are left to the caller's scope. `context.owner` (the
 * calling layer) lets oversized expert weights be sharded once per layer instead of per call.
 */
export function fusedMoeForward(x: tf.Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions,
                                context?: {owner: object}): tf.Tensor2D {
  // Decode on webgpu: the whole layer in four programs (kernels/webgpu/decode), where it applies.
  if (context != null && decodeActive(getKernelPath() === 'composite')) {
    const y = webgpuDecodeForward(x, w, o, context.owner);
    if (y != null) return y;
  }
  const [numTokens] = x.shape;
  const {topkIds, topkWeights} = routeTokens(x, w, o);
  // Routing always sees the full-width x; only the experts run in the latent space.
  const expertInput: tf.Tensor2D = o.latentSize != null ? tf.matMul(x, w.fc1_latent_proj_weight as tf.Tensor2D) : x;
  const {permutedX, expertOffsets, rowMap} = moePermute(expertInput, topkIds, o.numExperts);
  let rowScale: tf.Tensor1D | null = null;
  if (o.probInAdvance) {
    // Each permuted row's routing weight, sent through rowMap (alignment 1: every row is used). A segment sum,
    // not tf.scatterND, which tfjs cannot differentiate; rowMap is int32 and carries no gradient.
    const rows = permutedX.shape[0];
    // (tfjs's cpu segment sum fails on an empty input: no tokens, no rows to scale.)
    rowScale = numTokens === 0 ? tf.zeros([rows]) : tf.unsortedSegmentSum(
        tf.reshape(topkWeights, [-1]), tf.reshape(stopGradient(rowMap), [numTokens * o.topK]), rows) as tf.Tensor1D;
  }
  const upGateBias = o.withBias ? w.up_gate_proj_bias as tf.Tensor2D : null;
  const sharded = context == null ? null : expertShardsFor(context.owner, 'up_gate_proj_weight', w.up_gate_proj_weight);
  const [rows, depth] = permutedX.shape;
  // One program instead of two where the webgpu kernels run (decode is bound by the cost of each dispatch).
  const activated = sharded == null && canFuseSwiglu(rows, depth, w.up_gate_proj_weight.shape[2], o.numExperts,
                                                     getKernelPath() === 'composite') ?
      batchedGemmSwiglu(permutedX, w.up_gate_proj_weight, expertOffsets, upGateBias, rowScale) :
      fusedSwigluScale(expertGemm(permutedX, 'up_gate_proj_weight', w, expertOffsets, upGateBias, context?.owner),
                       rowScale);
  const down = expertGemm(activated, 'down_proj_weight', w, expertOffsets, null, context?.owner);
  let out: tf.Tensor2D = moeCombine(down, rowMap, topkWeights, topkIds, {
    downProjBias: o.withBias ? w.down_proj_bias as tf.Tensor2D : null,
    weightsApplied: o.probInAdvance,
  });
  if (o.latentSize != null) out = tf.matMul(out, w.fc2_latent_proj_weight as tf.Tensor2D);
  if (o.sharedExpertIntermediateSize > 0) out = tf.add(out, sharedExperts(x, w, o));
  return out;
}
