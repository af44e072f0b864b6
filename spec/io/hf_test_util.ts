/**
 * Builds Hugging Face-named MoE block tensors for the specs, in either layout, from random torch-layout values,
 * and the float64 reference's weights/config for the same block — written from docs/semantics.md (section 8),
 * independently of src/io.
 */
import * as tf from '@tensorflow/tfjs-core';

import {randn} from '../helpers/util.js';
import {RefMoeConfig, RefMoeWeights} from '../reference/moe_reference.js';

export interface HfBlockCase {
  family: string;
  config: Record<string, unknown>;
  H: number; E: number; I: number; k: number;
  /** Per-expert projection names on the hub. */
  proj: [gate: string, up: string, down: string];
  shared?: {module: string, S: number, gated: boolean};
  /** Selection bias: the name per layout and whether it is stored [1,E]. */
  bias?: {hub: string, fused: string, twoD: boolean};
  expertBiases?: boolean;
  /** What the routing means for this family (from the doc), besides sizes. */
  routing: Pick<RefMoeConfig, 'topkMethod' | 'nGroup' | 'topkGroup' | 'routedScalingFactor' | 'renormalize'>;
}

/** torch-layout values of one block: router [E,H], per expert gate/up [I,H], down [H,I], ... */
export interface HfBlockValues {
  router: Float32Array;
  gate: Float32Array[]; up: Float32Array[]; down: Float32Array[];
  gateBias?: Float32Array[]; upBias?: Float32Array[]; downBias?: Float32Array[];
  bias?: Float32Array;
  sharedGate?: Float32Array; sharedUp?: Float32Array; sharedDown?: Float32Array; sharedExpertGate?: Float32Array;
}

export function randomBlock(c: HfBlockCase, rand: () => number): HfBlockValues {
  const {H, E, I} = c;
  const v: HfBlockValues = {
    router: randn(rand, E * H, 0.8),
    gate: Array.from({length: E}, () => randn(rand, I * H, 0.4)),
    up: Array.from({length: E}, () => randn(rand, I * H, 0.4)),
    down: Array.from({length: E}, () => randn(rand, H * I, 0.4)),
  };
  if (c.expertBiases) {
    v.gateBias = Array.from({length: E}, () => randn(rand, I, 0.2));
    v.upBias = Array.from({length: E}, () => randn(rand, I, 0.2));
    v.downBias = Array.from({length: E}, () => randn(rand, H, 0.2));
  }
  // noaux_tc biases stay positive (HF and the doc differ only when all candidates are negative).
  if (c.bias) v.bias = Float32Array.from(randn(rand, E, 0.05), b => (c.routing.topkMethod === 'noaux_tc' ? Math.abs(b) : b));
  if (c.shared) {
    const S = c.shared.S;
    v.sharedGate = randn(rand, S * H, 0.4);
    v.sharedUp = randn(rand, S * H, 0.4);
    v.sharedDown = randn(rand, H * S, 0.4);
    if (c.shared.gated) v.sharedExpertGate = randn(rand, H, 0.5);
  }
  return v;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The block's tensors named as in its state dict, under `prefix`, in the 'hub' or 'fused' layout. */
export function hfTensors(c: HfBlockCase, v: HfBlockValues, layout: 'hub' | 'fused', prefix: string):
    Record<string, tf.Tensor> {
  const {H, E, I} = c;
  const t: Record<string, tf.Tensor> = {};
  t[`${prefix}gate.weight`] = tf.tensor(v.router, [E, H]);
  if (layout === 'hub') {
    for (let e = 0; e < E; e++) {
      t[`${prefix}experts.${e}.${c.proj[0]}.weight`] = tf.tensor(v.gate[e], [I, H]);
      t[`${prefix}experts.${e}.${c.proj[1]}.weight`] = tf.tensor(v.up[e], [I, H]);
      t[`${prefix}experts.${e}.${c.proj[2]}.weight`] = tf.tensor(v.down[e], [H, I]);
      if (v.gateBias) {
        t[`${prefix}experts.${e}.${c.proj[0]}.bias`] = tf.tensor(v.gateBias[e], [I]);
        t[`${prefix}experts.${e}.${c.proj[1]}.bias`] = tf.tensor(v.upBias![e], [I]);
        t[`${prefix}experts.${e}.${c.proj[2]}.bias`] = tf.tensor(v.downBias![e], [H]);
      }
    }
  } else {
    // transformers v5: gate rows then up rows per expert.
    t[`${prefix}experts.gate_up_proj`] =
        tf.tensor(concat(v.gate.flatMap((g, e) => [g, v.up[e]])), [E, 2 * I, H]);
    t[`${prefix}experts.down_proj`] = tf.tensor(concat(v.down), [E, H, I]);
    if (v.gateBias) {
      t[`${prefix}experts.gate_up_proj_bias`] = tf.tensor(concat(v.gateBias.flatMap((g, e) => [g, v.upBias![e]])),
          [E, 2 * I]);
      t[`${prefix}experts.down_proj_bias`] = tf.tensor(concat(v.downBias!), [E, H]);
    }
  }
  if (c.bias && v.bias) {
    t[`${prefix}${layout === 'hub' ? c.bias.hub : c.bias.fused}`] = tf.tensor(v.bias, c.bias.twoD ? [1, E] : [E]);
  }
  if (c.shared) {
    const {module: m, S} = c.shared;
    t[`${prefix}${m}.gate_proj.weight`] = tf.tensor(v.sharedGate!, [S, H]);
    t[`${prefix}${m}.up_proj.weight`] = tf.tensor(v.sharedUp!, [S, H]);
    t[`${prefix}${m}.down_proj.weight`] = tf.tensor(v.sharedDown!, [H, S]);
    if (v.sharedExpertGate) t[`${prefix}shared_expert_gate.weight`] = tf.tensor(v.sharedExpertGate, [1, H]);
  }
  return t;
}

/** torch Linear [out,in] -> the reference's [in,out], by index. */
function transposed(w: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
  return out;
}

export function refFromHf(c: HfBlockCase, v: HfBlockValues): {weights: RefMoeWeights, config: RefMoeConfig} {
  const {H, E, I} = c;
  const upGate = new Float64Array(E * H * 2 * I), down = new Float64Array(E * I * H);
  for (let e = 0; e < E; e++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < I; i++) {
        upGate[(e * H + h) * 2 * I + i] = v.gate[e][i * H + h];
        upGate[(e * H + h) * 2 * I + I + i] = v.up[e][i * H + h];
        down[(e * I + i) * H + h] = v.down[e][h * I + i];
      }
    }
  }
  const weights: RefMoeWeights = {gateWeight: transposed(v.router, E, H), upGateProjWeight: upGate, downProjWeight: down};
  if (v.gateBias) {
    weights.upGateProjBias = Float64Array.from({length: E * 2 * I},
        (_, n) => (n % (2 * I) < I ? v.gateBias![Math.floor(n / (2 * I))][n % (2 * I)] :
                                     v.upBias![Math.floor(n / (2 * I))][n % (2 * I) - I]));
    weights.downProjBias = concat(v.downBias!);
  }
  if (v.bias) weights.gateCorrectionBias = v.bias;
  const S = c.shared?.S ?? 0;
  if (c.shared) {
    const sg = new Float64Array(H * 2 * S);
    for (let h = 0; h < H; h++) {
      for (let s = 0; s < S; s++) {
        sg[h * 2 * S + s] = v.sharedGate![s * H + h];
        sg[h * 2 * S + S + s] = v.sharedUp![s * H + h];
      }
    }
    weights.sharedUpGateProjWeight = sg;
    weights.sharedDownProjWeight = transposed(v.sharedDown!, H, S);
    if (v.sharedExpertGate) weights.sharedExpertGateWeight = v.sharedExpertGate;
  }
  const config: RefMoeConfig = {numExperts: E, topK: c.k, intermediateSize: I, ...c.routing,
    useCorrectionBias: c.bias != null, latentSize: null, withBias: c.expertBiases === true, probInAdvance: false,
    sharedExpertIntermediateSize: S, sharedExpertGate: c.shared?.gated === true};
  return {weights, config};
}

const GREEDY = {topkMethod: 'greedy' as const, nGroup: 1, topkGroup: 1, routedScalingFactor: 1};

/** One small block per family, with each family's config spelled as its config.json spells it. */
export const FAMILY_CASES: HfBlockCase[] = [
  {family: 'qwen2_moe', H: 10, E: 6, I: 4, k: 2, proj: ['gate_proj', 'up_proj', 'down_proj'],
    config: {model_type: 'qwen2_moe', hidden_size: 10, num_experts: 6, num_experts_per_tok: 2, moe_intermediate_size: 4,
      shared_expert_intermediate_size: 7, norm_topk_prob: false, intermediate_size: 99},
    shared: {module: 'shared_expert', S: 7, gated: true}, routing: {...GREEDY, renormalize: false}},
  {family: 'qwen3_moe', H: 9, E: 8, I: 5, k: 3, proj: ['gate_proj', 'up_proj', 'down_proj'],
    config: {model_type: 'qwen3_moe', hidden_size: 9, num_experts: 8, num_experts_per_tok: 3, moe_intermediate_size: 5,
      norm_topk_prob: true, intermediate_size: 99}, routing: {...GREEDY, renormalize: true}},
  {family: 'mixtral', H: 8, E: 4, I: 6, k: 2, proj: ['w1', 'w3', 'w2'],
    config: {model_type: 'mixtral', hidden_size: 8, num_local_experts: 4, num_experts_per_tok: 2, intermediate_size: 6},
    routing: {...GREEDY, renormalize: true}},
  {family: 'olmoe', H: 7, E: 8, I: 3, k: 2, proj: ['gate_proj', 'up_proj', 'down_proj'],
    config: {model_type: 'olmoe', hidden_size: 7, num_experts: 8, num_experts_per_tok: 2, intermediate_size: 3,
      norm_topk_prob: false}, routing: {...GREEDY, renormalize: false}},
  {family: 'deepseek_v3', H: 11, E: 8, I: 4, k: 3, proj: ['gate_proj', 'up_proj', 'down_proj'],
    config: {model_type: 'deepseek_v3', hidden_size: 11, n_routed_experts: 8, num_experts_per_tok: 3,
      moe_intermediate_size: 4, n_shared_experts: 2, n_group: 4, topk_group: 2, routed_scaling_factor: 2.5,
      norm_topk_prob: true, topk_method: 'noaux_tc', scoring_func: 'sigmoid', intermediate_size: 99},
    shared: {module: 'shared_experts', S: 8, gated: false},
    bias: {hub: 'gate.e_score_correction_bias', fused: 'gate.e_score_correction_bias', twoD: false},
    routing: {topkMethod: 'noaux_tc', nGroup: 4, topkGroup: 2, routedScalingFactor: 2.5, renormalize: true}},
  {family: 'ernie4_5_moe', H: 10, E: 6, I: 4, k: 2, proj: ['gate_proj', 'up_proj', 'down_proj'],
    // Paddle-exported configs list sizes per modality; the text experts come first.
    config: {model_type: 'ernie4_5_moe', hidden_size: 10, moe_num_experts: [6, 6], moe_k: 2,
      moe_intermediate_size: [4, 2], moe_num_shared_experts: 1, intermediate_size: 99},
    shared: {module: 'shared_experts', S: 4, gated: false},
    bias: {hub: 'moe_statics.e_score_correction_bias', fused: 'gate.moe_statics.e_score_correction_bias', twoD: true},
    routing: {...GREEDY, renormalize: true}},
];
