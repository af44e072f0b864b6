// loadHuggingFaceMoe: every family in both layouts against the float64 reference (weights built by the test),
// against transformers 5.17's own MoE blocks (spec/fixtures, made by make_hf_fixtures.py), and its errors.
import * as tf from '@tensorflow/tfjs-core';
import {FusedMoE, huggingFaceMoeSpec, loadHuggingFaceMoe, readSafetensors} from 'tfjs-moe';

import {expectNoLeak, expectThrowsNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {refFusedMoE} from '../reference/moe_reference.js';
import {applyAndRead, randn} from '../layers/layer_util.js';
import {LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {base64Bytes, fixtureNames, HfFixture, readFixture} from './hf_fixtures.js';
import {FAMILY_CASES, hfTensors, randomBlock, refFromHf} from './hf_test_util.js';

describe('loadHuggingFaceMoe, test-built weights vs float64 reference', () => {
  for (const c of FAMILY_CASES) {
    for (const layout of ['hub', 'fused'] as const) {
      for (const withExpertBiases of c.family === 'qwen3_moe' ? [false, true] : [false]) {
        const label = `${c.family}, ${layout} layout${withExpertBiases ? ', expert biases' : ''}`;
        it(label, async () => {
          const cc = {...c, expertBiases: withExpertBiases};
          const rand = rng(c.family.length * 101 + (layout === 'hub' ? 1 : 2));
          const values = randomBlock(cc, rand);
          const prefix = c.family === 'mixtral' && layout === 'hub' ? 'model.layers.2.block_sparse_moe.' :
                                                                      'model.layers.2.mlp.';
          const tensors = hfTensors(cc, values, layout, prefix);
          // Unrelated tensors of the same checkpoint must be ignored.
          tensors['model.layers.2.self_attn.q_proj.weight'] = tf.zeros([3, 3]);
          const before = tf.memory().numTensors;
          const layer = loadHuggingFaceMoe(c.config, tensors, {prefix: prefix.slice(0, -1), name: `hf_${c.family}`});
          try {
            expect(tf.memory().numTensors).toBe(before + layer.weights.length);
            const {weights, config} = refFromHf(cc, values);
            expect(layer.options).toEqual(jasmine.objectContaining({numExperts: c.E, topK: c.k,
              moeIntermediateSize: c.I, withBias: withExpertBiases, useCorrectionBias: c.bias != null,
              sharedExpertIntermediateSize: c.shared?.S ?? 0, sharedExpertGate: c.shared?.gated === true,
              ...c.routing}));
            const T = 7;
            const x = randn(rand, T * c.H);
            const y = await expectNoLeak(() => applyAndRead(layer, x, [T, c.H]));
            const err = relError(y, refFusedMoE(x, T, c.H, weights, config));
            recordError(`loadHuggingFaceMoe test-built [${layout}]`, err);
            expect(err).toBeLessThan(LAYER_TOLERANCE);
          } finally {
            layer.dispose();
            tf.dispose(Object.values(tensors));
          }
        });
      }
    }
  }
});

/** Bound for the layer (f32) against transformers' float64 forward of the same block. */
const TRANSFORMERS_TOLERANCE = 1e-5;

describe('loadHuggingFaceMoe vs transformers 5.17 MoE blocks (spec/fixtures)', () => {
  for (const name of fixtureNames()) {
    const layouts = (f: HfFixture) => ({
      'hub file': [f.hub_safetensors_b64, f.hub_prefix] as const,
      'in-memory names': [f.fused_safetensors_b64!, f.prefix] as const,
    });
    // gpt_oss_mxfp4 has hub files only (transformers dequantizes MXFP4 when it loads).
    const present = readFixture(name).fused_safetensors_b64 != null;
    for (const layout of present ? ['hub file', 'in-memory names'] as const : ['hub file'] as const) {
      for (const backend of ['cpu', 'composite'] as const) {
        it(`${name}: ${layout}, ${backend}`, async () => {
          const f = readFixture(name);
          expect(f.output_dtype).toBe('float64');
          const [b64, prefix] = layouts(f)[layout];
          const weights = readSafetensors(base64Bytes(b64));
          if (layout === 'hub file' && f.hub_per_expert) {
            expect(Object.keys(weights).some(k => /experts\.0\.(gate_proj|w1)\.weight$/.test(k))).toBeTrue();
          }
          let layer: FusedMoE | null = null;
          try {
            layer = loadHuggingFaceMoe(f.config, weights, {prefix, backend});
            const y = await expectNoLeak(() => applyAndRead(layer!, Float32Array.from(f.input.data), f.input.shape));
            const err = relError(y, f.output.data);
            recordError(`transformers ${name} [${layout}, ${backend}]`, err);
            recordError(`transformers, every family [${layout}, ${backend}]`, err);
            expect(err).withContext(`${name} ${layout} ${backend}`).toBeLessThan(TRANSFORMERS_TOLERANCE);
          } finally {
            layer?.dispose();
            tf.dispose(Object.values(weights));
          }
        });
      }
    }
  }
});

describe('loadHuggingFaceMoe, multimodal llama4 through text_config', () => {
  it('loads the llama4_text fixture wrapped as model_type llama4 under the language model\'s prefix', async () => {
    const f = readFixture('llama4_text');
    const inner = readSafetensors(base64Bytes(f.fused_safetensors_b64!));
    const prefix = 'language_model.model.layers.0.feed_forward.';
    const weights: Record<string, tf.Tensor> = {};
    for (const [k, v] of Object.entries(inner)) weights[prefix + k.slice(f.prefix.length)] = v;
    const {model_type: _, ...text} = f.config;
    let layer: FusedMoE | null = null;
    try {
      // text_config without its own model_type: the wrapper's 'llama4' names the family.
      layer = loadHuggingFaceMoe({model_type: 'llama4', text_config: text}, weights, {prefix, backend: 'cpu'});
      expect(layer.options).toEqual(jasmine.objectContaining({routingWeightOn: 'input', topkMethod: 'noaux_tc',
        renormalize: false, sharedExpertIntermediateSize: f.config.intermediate_size as number}));
      const y = await expectNoLeak(() => applyAndRead(layer!, Float32Array.from(f.input.data), f.input.shape));
      const err = relError(y, f.output.data);
      recordError('transformers llama4 (multimodal config) [in-memory names, cpu]', err);
      expect(err).toBeLessThan(TRANSFORMERS_TOLERANCE);
    } finally {
      layer?.dispose();
      tf.dispose(Object.values(inner));
    }
  });
});

describe('loadHuggingFaceMoe errors on the fixtures\' families', () => {
  const without = (name: string, drop: RegExp, pattern: RegExp) => {
    const f = readFixture(name);
    const weights = readSafetensors(base64Bytes(f.hub_safetensors_b64));
    for (const k of Object.keys(weights).filter(k => drop.test(k))) {
      weights[k].dispose();
      delete weights[k];
    }
    try {
      expectThrowsNoLeak(() => loadHuggingFaceMoe(f.config, weights, {prefix: f.hub_prefix}), pattern);
    } finally {
      tf.dispose(Object.values(weights));
    }
  };

  it('names a missing selection bias of a sigmoid family', () => {
    without('minimax_m2', /e_score_correction_bias$/,
        /missing weight 'model.layers.0.block_sparse_moe.e_score_correction_bias' \(minimax_m2 selection bias/);
    without('afmoe', /expert_bias$/, /missing weight 'model.layers.0.mlp.expert_bias' \(afmoe selection bias/);
  });

  it('names gpt-oss\'s router bias and MXFP4 scales', () => {
    without('gpt_oss', /router\.bias$/, /missing weight 'model.layers.0.mlp.router.bias' \(router bias \[E\], expected shape \[8\]\)/);
    without('gpt_oss_mxfp4', /gate_up_proj_scales$/,
        /missing weight 'model.layers.0.mlp.experts.gate_up_proj_scales' \(experts gate_up_proj MXFP4 scales, expected shape \[4,64,1\]\)/);
  });

  it('names granitemoeshared\'s shared MLP beside the block', () => {
    without('granitemoeshared', /shared_mlp.input_linear/,
        /missing weight 'model.layers.0.shared_mlp.input_linear.weight' \(shared MLP input_linear \[2S,H\], expected shape \[20,12\]\)/);
  });
});

describe('loadHuggingFaceMoe config aliases', () => {
  it('reads each family\'s spelling of the sizes and routing', () => {
    const spec = (config: Record<string, unknown>) => huggingFaceMoeSpec(config).options;
    expect(spec({model_type: 'mixtral', hidden_size: 8, num_local_experts: 4, num_experts_per_tok: 2,
      intermediate_size: 6})).toEqual(jasmine.objectContaining({numExperts: 4, topK: 2, moeIntermediateSize: 6,
      renormalize: true}));
    expect(spec({model_type: 'olmoe', hidden_size: 8, num_experts: 64, num_experts_per_tok: 8, intermediate_size: 1024}))
        .toEqual(jasmine.objectContaining({numExperts: 64, topK: 8, moeIntermediateSize: 1024, renormalize: false}));
    expect(spec({model_type: 'deepseek_v3', hidden_size: 7168, n_routed_experts: 256, num_experts_per_tok: 8,
      moe_intermediate_size: 2048, n_shared_experts: 1, n_group: 8, topk_group: 4, routed_scaling_factor: 2.5}))
        .toEqual(jasmine.objectContaining({numExperts: 256, topkMethod: 'noaux_tc', nGroup: 8, topkGroup: 4,
          routedScalingFactor: 2.5, renormalize: true, useCorrectionBias: true, sharedExpertIntermediateSize: 2048}));
    expect(spec({model_type: 'ernie4_5_moe', hidden_size: 2560, moe_num_experts: 64, moe_k: 6,
      moe_intermediate_size: 1536, moe_num_shared_experts: 2})).toEqual(jasmine.objectContaining({numExperts: 64,
      topK: 6, moeIntermediateSize: 1536, sharedExpertIntermediateSize: 3072, useCorrectionBias: true}));
    // Multimodal wrappers keep the language model under text_config.
    expect(spec({model_type: 'some_vl_wrapper', text_config: {model_type: 'qwen3_moe', hidden_size: 8, num_experts: 4,
      num_experts_per_tok: 2, moe_intermediate_size: 3, norm_topk_prob: true}}))
        .toEqual(jasmine.objectContaining({numExperts: 4, moeIntermediateSize: 3, renormalize: true}));
  });

  it('reads the families that are other families under other names', () => {
    const spec = (config: Record<string, unknown>) => huggingFaceMoeSpec(config);
    // HunYuan: per-layer lists, experts and shared MLP sized by intermediate_size (moe_intermediate_size ignored).
    expect(spec({model_type: 'hunyuan_v1_moe', hidden_size: 8, num_experts: [16, 16], moe_topk: [8, 8],
      intermediate_size: 6, moe_intermediate_size: 99}).options).toEqual(jasmine.objectContaining({numExperts: 16,
      topK: 8, moeIntermediateSize: 6, sharedExpertIntermediateSize: 6, sharedExpertGate: false, renormalize: true}));
    // AFMoE: sigmoid + bias + one group, route_scale as rsf, shared width = I * num_shared_experts.
    const af = spec({model_type: 'afmoe', hidden_size: 8, num_experts: 8, num_experts_per_tok: 2,
      moe_intermediate_size: 3, num_shared_experts: 2, route_scale: 2.5});
    expect(af.options).toEqual(jasmine.objectContaining({topkMethod: 'noaux_tc', nGroup: 1, topkGroup: 1,
      routedScalingFactor: 2.5, renormalize: true, useCorrectionBias: true, sharedExpertIntermediateSize: 6}));
    expect(af.naming.router).toEqual(['router.gate.weight']);
    expect(af.biasRequired).toBeTrue();
    expect(spec({model_type: 'lfm2_moe', hidden_size: 8, num_experts: 8, num_experts_per_tok: 2,
      moe_intermediate_size: 3, norm_topk_prob: false, use_expert_bias: false, routed_scaling_factor: 1.5}).options)
        .toEqual(jasmine.objectContaining({topkMethod: 'noaux_tc', renormalize: false, useCorrectionBias: false,
          routedScalingFactor: 1.5}));
    expect(spec({model_type: 'lfm2_moe', hidden_size: 8, num_experts: 8, num_experts_per_tok: 2,
      moe_intermediate_size: 3, routed_scaling_factor: 1.5}).options).toEqual(jasmine.objectContaining(
        {topkMethod: 'noaux_tc', renormalize: true, renormalizeEpsilon: 1e-6, useCorrectionBias: true}));
    // DeepSeek-V2: norm_topk_prob is not read; greedy scales too; mlp_bias (shared-expert biases) is refused.
    const v2 = {model_type: 'deepseek_v2', hidden_size: 8, n_routed_experts: 8, num_experts_per_tok: 2,
      moe_intermediate_size: 3, n_shared_experts: 2, routed_scaling_factor: 16, norm_topk_prob: true};
    expect(spec({...v2, topk_method: 'group_limited_greedy', n_group: 4, topk_group: 2}).options).toEqual(
        jasmine.objectContaining({topkMethod: 'group_limited_greedy', nGroup: 4, topkGroup: 2, renormalize: false,
          routedScalingFactor: 16, sharedExpertIntermediateSize: 6, useCorrectionBias: false}));
    expect(spec({...v2, topk_method: 'greedy'}).options).toEqual(jasmine.objectContaining(
        {topkMethod: 'greedy', nGroup: 1, renormalize: false, routedScalingFactor: 16}));
    expect(() => spec({...v2, mlp_bias: true})).toThrowError(/deepseek_v2 with mlp_bias true is not supported yet/);
    expect(() => spec({...v2, topk_method: 'noaux_tc'})).toThrowError(
        /deepseek_v2 with topk_method 'noaux_tc' is not supported \(greedy or group_limited_greedy\)/);
    expect(spec({model_type: 'granitemoeshared', hidden_size: 8, num_local_experts: 4, num_experts_per_tok: 2,
      intermediate_size: 3, shared_intermediate_size: 5}).naming).toEqual(jasmine.objectContaining({
      shared: '../shared_mlp', sharedFused: true}));
    expect(spec({model_type: 'jamba', hidden_size: 8, num_experts: 4, num_experts_per_tok: 2, intermediate_size: 3})
        .options.renormalize).toBeFalse();
    // A multimodal wrapper's language model under text_config.
    expect(spec({model_type: 'some_vl_wrapper', text_config: {model_type: 'glm4_moe', hidden_size: 8,
      n_routed_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 3, n_group: 2, topk_group: 1}}).options)
        .toEqual(jasmine.objectContaining({topkMethod: 'noaux_tc', nGroup: 2, renormalize: true}));
    expect(spec({model_type: 'llama4', text_config: {model_type: 'llama4_text', hidden_size: 8,
      num_local_experts: 4, num_experts_per_tok: 1, intermediate_size: 3}}).options)
        .toEqual(jasmine.objectContaining({routingWeightOn: 'input', topkMethod: 'noaux_tc', nGroup: 1,
          renormalize: false, sharedExpertIntermediateSize: 3}));
  });

  it('rejects unknown model types and incomplete configs', () => {
    expect(() => huggingFaceMoeSpec({model_type: 'llama', hidden_size: 8})).toThrowError(
        /unknown model_type 'llama' \(supported: qwen2_moe, qwen3_moe, mixtral, olmoe, deepseek_v3, ernie4_5_moe/);
    expect(() => huggingFaceMoeSpec({hidden_size: 8})).toThrowError(/config has no 'model_type'/);
    expect(() => huggingFaceMoeSpec({model_type: 'qwen3_moe', hidden_size: 8, num_experts_per_tok: 2,
      moe_intermediate_size: 3})).toThrowError(/config needs the routed expert count .* under 'num_experts' or/);
    expect(() => huggingFaceMoeSpec({model_type: 'deepseek_v3', hidden_size: 8, n_routed_experts: 4,
      num_experts_per_tok: 2, moe_intermediate_size: 3, scoring_func: 'softmax'})).toThrowError(/scoring_func 'softmax'/);
    expect(() => huggingFaceMoeSpec('config.json')).toThrowError(/argument 'config' must be a parsed config.json/);
  });
});

describe('loadHuggingFaceMoe errors', () => {
  const c = FAMILY_CASES.find(f => f.family === 'deepseek_v3')!;
  const prefix = 'model.layers.0.mlp.';
  let tensors: Record<string, tf.Tensor>;
  beforeEach(() => {
    tensors = hfTensors(c, randomBlock(c, rng(5)), 'hub', prefix);
  });
  afterEach(() => {
    tf.dispose(Object.values(tensors));
  });

  it('names a missing expert weight with its expected shape', () => {
    tensors[`${prefix}experts.3.up_proj.weight`].dispose();
    delete tensors[`${prefix}experts.3.up_proj.weight`];
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {prefix}),
        /missing weight 'model.layers.0.mlp.experts.3.up_proj.weight' \(expert 3 up_proj.weight, expected shape \[4,11\]\)/);
  });

  it('names a mis-shaped weight', () => {
    const name = `${prefix}gate.weight`;
    const t = tensors[name];
    tensors[name] = tf.transpose(t);
    t.dispose();
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {prefix}),
        /weight 'model.layers.0.mlp.gate.weight' \(router weight \[E,H\]\) must have shape \[8,11\], got \[11,8\]/);
  });

  it('rejects a non-float32 weight and a missing selection bias', () => {
    const name = `${prefix}shared_experts.down_proj.weight`;
    const t = tensors[name];
    tensors[name] = tf.cast(t, 'int32');
    t.dispose();
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {prefix}), /must be float32, got int32/);
    const bias = `${prefix}gate.e_score_correction_bias`;
    tensors[bias].dispose();
    delete tensors[bias];
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {prefix}),
        /missing weight 'model.layers.0.mlp.gate.e_score_correction_bias' \(deepseek_v3 selection bias/);
  });

  it('explains a wrong prefix', () => {
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {prefix: 'model.layers.1.mlp'}),
        /found neither fused experts \('model.layers.1.mlp.experts.gate_up_proj'\) nor per-expert weights .*is the prefix right/);
  });

  it('rejects shared expert biases it cannot represent', () => {
    tensors[`${prefix}shared_experts.up_proj.bias`] = tf.zeros([8]);
    expectThrowsNoLeak(() => loadHuggingFaceMoe(c.config, tensors, {prefix}), /shared expert biases are not supported/);
  });
});
