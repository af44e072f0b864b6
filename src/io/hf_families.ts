/**
 * Per-family knowledge of Hugging Face MoE configs: which config keys mean what (names differ between families
 * and between hub files and transformers), how each family routes, and how its MoE block names its tensors.
 * Turning a parsed config.json into FusedMoE options happens here; weight mapping is in hf_import.ts.
 */
import type {FusedMoEOptions} from '../layers/fused_moe_config.js';
import {describeValue} from '../ops/limits.js';

/** The model_types loadHuggingFaceMoe maps onto FusedMoE (moe-families.md: the same function under other names). */
export type HfFamily = 'qwen2_moe' | 'qwen3_moe' | 'mixtral' | 'olmoe' | 'deepseek_v3' | 'ernie4_5_moe' |
    'qwen3_next' | 'minimax' | 'flex_olmo' | 'dots1' | 'glm4_moe' | 'jamba' | 'granitemoe' | 'granitemoeshared' |
    'hunyuan_v1_moe' | 'minimax_m2' | 'afmoe' | 'lfm2_moe' | 'deepseek_v2' | 'longcat_flash' | 'gpt_oss' |
    'llama4_text' | 'phimoe';

/**
 * How a family's MoE block names its tensors, relative to the block (e.g. 'model.layers.3.mlp.'). Lists are
 * candidates, the first present wins (transformers' in-memory name first, then the hub files' spellings).
 */
export interface HfNaming {
  /** Per-expert projection names on the hub: gate, up, down (Mixtral: w1, w3, w2). */
  expertProj: {gate: string, up: string, down: string};
  /** Fused experts [E,2I,H] (gate rows first) and [E,H,I]: transformers v5's names, Granite's hub names. */
  fusedGateUp: string[];
  fusedDown: string[];
  /** Router weight [E,H]. */
  router: string[];
  /** Candidate names of the selection bias, first match wins ([E] or [1,E]). */
  correctionBias: string[];
  /** Shared expert MLP module; '../name' is a sibling of the block in the decoder layer (granitemoeshared). */
  shared: string;
  /** The shared MLP is one fused input_linear [2S,H] (gate rows first) + output_linear [H,S] (Granite). */
  sharedFused: boolean;
  /** Qwen2-MoE's shared expert gate [1,H]. */
  sharedGate: string;
  /** The router's bias [E] (gpt-oss), null: none. */
  routerBias: string | null;
  /**
   * The fused experts' layout: 'out_in' gate_up_proj [E,2I,H] gate rows first, down_proj [E,H,I] (torch Linear);
   * 'in_out_interleaved' (gpt-oss) gate_up_proj [E,H,2I] with column 2i = gate i, 2i+1 = up i (its bias
   * likewise), down_proj [E,I,H]; on the hub also as MXFP4 `<name>_blocks` / `<name>_scales` in [E,out,in] rows;
   * 'in_out' (Llama-4) gate_up_proj [E,H,2I] gate columns first, down_proj [E,I,H].
   */
  fusedLayout: 'out_in' | 'in_out' | 'in_out_interleaved';
}

/** What a model's config.json says about its MoE block: family, hidden size, layer options, tensor names. */
export interface HfMoeSpec {
  family: HfFamily;
  hiddenSize: number;
  options: Omit<FusedMoEOptions, 'backend' | 'computeDtype' | 'expertWeightFormat' | 'quantGroupSize' | 'quantZeroPoint'>;
  naming: HfNaming;
  /** The selection bias is part of the routing: a checkpoint without it is an error, not plain routing. */
  biasRequired: boolean;
}

/** A parsed config.json. */
export type Config = Record<string, unknown>;

const STANDARD_NAMING: HfNaming = {
  expertProj: {gate: 'gate_proj', up: 'up_proj', down: 'down_proj'},
  fusedGateUp: ['experts.gate_up_proj'],
  fusedDown: ['experts.down_proj'],
  router: ['gate.weight'],
  correctionBias: [],
  shared: 'shared_experts',
  sharedFused: false,
  sharedGate: 'shared_expert_gate.weight',
  routerBias: null,
  fusedLayout: 'out_in',
};

function fail(what: string): never {
  throw new Error(`loadHuggingFaceMoe: ${what}`);
}

/** The first of `keys` present in config (null/undefined count as absent); ERNIE lists use their first entry. */
function pick(config: Config, keys: string[]): unknown {
  for (const key of keys) {
    const value = config[key];
    if (value !== undefined && value !== null) return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

function intKey(config: Config, keys: string[], what: string, fallback?: number): number {
  const value = pick(config, keys) ?? fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    fail(`config needs ${what} as a non-negative integer under ${keys.map(k => `'${k}'`).join(' or ')}, got ${
        describeValue(value)}`);
  }
  return value;
}

function numKey(config: Config, keys: string[], what: string, fallback: number): number {
  const value = pick(config, keys) ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    fail(`config needs ${what} as a number under ${keys.map(k => `'${k}'`).join(' or ')}, got ${describeValue(value)}`);
  }
  return value;
}

function boolKey(config: Config, keys: string[], what: string, fallback: boolean): boolean {
  const value = pick(config, keys) ?? fallback;
  if (typeof value !== 'boolean') {
    fail(`config needs ${what} as a boolean under ${keys.map(k => `'${k}'`).join(' or ')}, got ${describeValue(value)}`);
  }
  return value;
}

// Aliases across families (hub files and transformers spell some of these differently).
const NUM_EXPERTS = ['num_experts', 'num_local_experts', 'n_routed_experts', 'moe_num_experts'];
const TOP_K = ['num_experts_per_tok', 'moe_k', 'moe_top_k', 'top_k'];
const HIDDEN = ['hidden_size', 'd_model', 'hidden_dim'];

type Options = HfMoeSpec['options'];

/** One family: its config keys, what its routing means, its tensor names (moe-families.md sections 3 and 4). */
interface FamilyEntry {
  /** Expert width keys, first present wins. */
  width: string[];
  /** Experts-per-token keys when the family has its own (default TOP_K). */
  topK?: string[];
  /** Routing options read from the config (sizes aside); may reject what FusedMoE cannot express yet. */
  routing: (config: Config, family: HfFamily) => Partial<Options>;
  /** Shared expert width from the config and the expert width (absent: none). */
  shared?: (config: Config, I: number) => number;
  sharedGate?: boolean;
  naming?: Partial<HfNaming>;
  biasRequired?: (config: Config) => boolean;
}

const softmax = (renormalize: boolean): Partial<Options> => ({renormalize});
const normTopk = (fallback: boolean) => (c: Config) =>
  softmax(boolKey(c, ['norm_topk_prob'], 'norm_topk_prob', fallback));
/** Sigmoid scores, selection bias, no groups: getMoeScores with one group (afmoe, minimax_m2, lfm2_moe). */
const sigmoidOneGroup = (renormalize: boolean, routedScalingFactor: number): Partial<Options> => ({
  topkMethod: 'noaux_tc', nGroup: 1, topkGroup: 1, renormalize, routedScalingFactor, useCorrectionBias: true});

/** DeepSeek-V3's noaux_tc: sigmoid, selection bias, groups by the top-2 sum (also dots1, glm4_moe). */
function noauxTc(config: Config, family: HfFamily): Partial<Options> {
  const topkMethod = pick(config, ['topk_method']) ?? 'noaux_tc';
  if (topkMethod !== 'noaux_tc') fail(`${family} with topk_method '${topkMethod}' is not supported (only noaux_tc)`);
  const scoring = pick(config, ['scoring_func']) ?? 'sigmoid';
  if (scoring !== 'sigmoid') fail(`${family} with scoring_func '${scoring}' is not supported (only sigmoid)`);
  return {topkMethod: 'noaux_tc', nGroup: intKey(config, ['n_group'], 'n_group', 1),
    topkGroup: intKey(config, ['topk_group'], 'topk_group', 1),
    routedScalingFactor: numKey(config, ['routed_scaling_factor'], 'routed_scaling_factor', 1),
    renormalize: boolKey(config, ['norm_topk_prob'], 'norm_topk_prob', family !== 'dots1'), useCorrectionBias: true};
}

/**
 * DeepSeek-V2: softmax, weights times routed_scaling_factor, never renormalised (norm_topk_prob is not read);
 * group_limited_greedy keeps the topk_group groups of best probability.
 */
function deepseekV2(config: Config): Partial<Options> {
  if (boolKey(config, ['mlp_bias'], 'mlp_bias', false)) {
    fail(`deepseek_v2 with mlp_bias true is not supported yet (biases on the shared experts)`);
  }
  const routedScalingFactor = numKey(config, ['routed_scaling_factor'], 'routed_scaling_factor', 1);
  const topkMethod = pick(config, ['topk_method']) ?? 'greedy';
  if (topkMethod === 'greedy') return {renormalize: false, routedScalingFactor};
  if (topkMethod !== 'group_limited_greedy') {
    fail(`deepseek_v2 with topk_method '${topkMethod}' is not supported (greedy or group_limited_greedy)`);
  }
  return {topkMethod: 'group_limited_greedy', nGroup: intKey(config, ['n_group'], 'n_group', 1),
    topkGroup: intKey(config, ['topk_group'], 'topk_group', 1), renormalize: false, routedScalingFactor};
}

const MIXTRAL_PROJ = {expertProj: {gate: 'w1', up: 'w3', down: 'w2'}};
const QWEN2_MOE: FamilyEntry = {width: ['moe_intermediate_size'], routing: normTopk(false),
  shared: c => intKey(c, ['shared_expert_intermediate_size'], 'the shared expert size', 0), sharedGate: true,
  naming: {shared: 'shared_expert'}};
// OLMoE's experts are sized by intermediate_size (it has no moe_intermediate_size).
const OLMOE: FamilyEntry = {width: ['moe_intermediate_size', 'intermediate_size'], routing: normTopk(false)};
// Mixtral always renormalises the top-k softmax weights.
const MIXTRAL: FamilyEntry = {width: ['intermediate_size'], routing: () => softmax(true), naming: MIXTRAL_PROJ};
const DEEPSEEK_V3: FamilyEntry = {width: ['moe_intermediate_size'], routing: noauxTc,
  shared: (c, I) => I * intKey(c, ['n_shared_experts'], 'the shared expert count', 1),
  naming: {correctionBias: ['gate.e_score_correction_bias']}, biasRequired: () => true};
// Granite: router and fused experts under their hub names too; softmax over the top-k logits = renormalised.
const GRANITE: FamilyEntry = {width: ['intermediate_size'], routing: () => softmax(true),
  naming: {router: ['router.weight', 'router.layer.weight'], fusedGateUp: ['experts.gate_up_proj', 'input_linear.weight'],
    fusedDown: ['experts.down_proj', 'output_linear.weight']}};

const FAMILIES: Record<HfFamily, FamilyEntry> = {
  qwen2_moe: QWEN2_MOE,
  qwen3_moe: {width: ['moe_intermediate_size'], routing: normTopk(false)},
  mixtral: MIXTRAL,
  olmoe: OLMOE,
  deepseek_v3: DEEPSEEK_V3,
  ernie4_5_moe: {width: ['moe_intermediate_size'],
    // Selection-only bias, weights renormalised (denominator clamped at 1e-12, which p > 0 never reaches).
    routing: () => ({renormalize: true, useCorrectionBias: true}),
    shared: (c, I) => I * intKey(c, ['moe_num_shared_experts'], 'the shared expert count', 0),
    // transformers v5 keeps the statistics under the router; older checkpoints beside it.
    naming: {correctionBias: ['gate.moe_statics.e_score_correction_bias', 'moe_statics.e_score_correction_bias']}},
  qwen3_next: {...QWEN2_MOE, routing: normTopk(true)},
  minimax: MIXTRAL,
  flex_olmo: OLMOE,
  dots1: DEEPSEEK_V3,
  glm4_moe: DEEPSEEK_V3,
  // Softmax top-k, not renormalised.
  jamba: {width: ['intermediate_size'], routing: () => softmax(false), naming: {router: ['router.weight']}},
  granitemoe: GRANITE,
  // The shared MLP lives in the decoder layer beside the block and is added to its output there.
  granitemoeshared: {...GRANITE, shared: c => intKey(c, ['shared_intermediate_size'], 'the shared MLP size', 0),
    naming: {...GRANITE.naming, shared: '../shared_mlp', sharedFused: true}},
  // HunYuan sizes experts and its ungated shared MLP by intermediate_size; moe_intermediate_size is not read.
  hunyuan_v1_moe: {width: ['intermediate_size'], topK: ['moe_topk', 'num_experts_per_tok'],
    routing: () => softmax(true), shared: (_, I) => I, naming: {router: ['gate.wg.weight'], shared: 'shared_mlp'}},
  minimax_m2: {width: ['intermediate_size'], routing: () => sigmoidOneGroup(true, 1), biasRequired: () => true,
    naming: {...MIXTRAL_PROJ, correctionBias: ['e_score_correction_bias']}},
  afmoe: {width: ['moe_intermediate_size'],
    routing: c => sigmoidOneGroup(true, numKey(c, ['route_scale'], 'route_scale', 1)),
    shared: (c, I) => I * intKey(c, ['num_shared_experts'], 'the shared expert count', 0), biasRequired: () => true,
    naming: {router: ['router.gate.weight'], correctionBias: ['expert_bias']}},
  lfm2_moe: {width: ['moe_intermediate_size'], routing: c => {
    const useBias = boolKey(c, ['use_expert_bias'], 'use_expert_bias', true);
    // LFM2 divides by sum + 1e-6, not getMoeScores' own 1e-20.
    const renormalize = boolKey(c, ['norm_topk_prob'], 'norm_topk_prob', true);
    return {...sigmoidOneGroup(renormalize, numKey(c, ['routed_scaling_factor'], 'routed_scaling_factor', 1)),
      useCorrectionBias: useBias, renormalizeEpsilon: renormalize ? 1e-6 : null};
  }, biasRequired: c => boolKey(c, ['use_expert_bias'], 'use_expert_bias', true),
  naming: {...MIXTRAL_PROJ, correctionBias: ['expert_bias']}},
  // LongCat-Flash: softmax over E+Z (Z identity experts), biased choice, weights * rsf, not renormalised.
  longcat_flash: {width: ['expert_ffn_hidden_size'], topK: ['moe_topk'], routing: c => ({renormalize: false,
    useCorrectionBias: true, zeroExperts: intKey(c, ['zero_expert_num'], 'zero_expert_num', 0),
    routedScalingFactor: numKey(c, ['routed_scaling_factor'], 'routed_scaling_factor', 1)}),
  biasRequired: () => true,
  naming: {router: ['router.classifier.weight'], correctionBias: ['router.e_score_correction_bias']}},
  deepseek_v2: {width: ['moe_intermediate_size'], routing: deepseekV2,
    shared: (c, I) => I * intKey(c, ['n_shared_experts'], 'the shared expert count', 0)},
  // Softmax over the top-k biased logits = softmax top-k renormalised; alpha is a constant of transformers' block.
  gpt_oss: {width: ['intermediate_size'], routing: c => ({renormalize: true, routerBias: true,
    activation: 'clamped_swiglu', swigluAlpha: 1.702, swigluLimit: numKey(c, ['swiglu_limit'], 'swiglu_limit', 7)}),
  naming: {router: ['router.weight'], routerBias: 'router.bias', fusedLayout: 'in_out_interleaved'}},
  // Top-k logits, then sigmoid of the chosen ones, not renormalised = sigmoid scores with one group and no bias;
  // the weight multiplies the expert's input. The shared expert is as wide as intermediate_size.
  llama4_text: {width: ['intermediate_size'], routing: () => ({topkMethod: 'noaux_tc', nGroup: 1, topkGroup: 1,
    renormalize: false, routedScalingFactor: 1, routingWeightOn: 'input'}), shared: (_, I) => I,
  naming: {router: ['router.weight'], shared: 'shared_expert', fusedLayout: 'in_out'}},
  // Sparsemixer routing always picks two experts (num_experts_per_tok is not read); its eval-mode threshold is
  // router_jitter_noise. The hub files name the router gate.weight under block_sparse_moe (the caller's prefix).
  phimoe: {width: ['intermediate_size'], routing: c => ({topK: 2, topkMethod: 'sparsemixer', renormalize: false,
    sparsemixerEpsilon: numKey(c, ['router_jitter_noise'], 'router_jitter_noise', 0.01)}),
  naming: {...MIXTRAL_PROJ, router: ['router.weight', 'gate.weight']}},
};

const MODEL_TYPE_ALIASES: Record<string, HfFamily> = {
  ...Object.fromEntries(Object.keys(FAMILIES).map(f => [f, f as HfFamily])), ernie4_5_moe_pt: 'ernie4_5_moe',
  // Multimodal Llama-4: its language model's config (text_config) is llama4_text's.
  llama4: 'llama4_text',
};

/** Multimodal wrappers keep the language model's config under text_config. */
function languageConfig(config: Config): Config {
  const text = config.text_config;
  if (text != null && typeof text === 'object' && pick(config, NUM_EXPERTS) === undefined) return text as Config;
  return config;
}

/** The MoE family of a parsed config.json (its model_type, or text_config's when multimodal); throws when unknown. */
export function familyOf(config: Config): HfFamily {
  const modelType = config.model_type;
  if (typeof modelType !== 'string') fail(`config has no 'model_type' (got ${describeValue(modelType)})`);
  // Own keys only: 'toString' or '__proto__' must not find Object.prototype's members.
  const family = Object.prototype.hasOwnProperty.call(MODEL_TYPE_ALIASES, modelType) ? MODEL_TYPE_ALIASES[modelType] : null;
  if (family == null) {
    fail(`unknown model_type '${modelType}' (supported: ${Object.keys(MODEL_TYPE_ALIASES).join(', ')})`);
  }
  return family;
}

/** Reads a parsed config.json into FusedMoE options plus the family's tensor naming. */
export function hfMoeSpec(rawConfig: unknown): HfMoeSpec {
  if (rawConfig == null || typeof rawConfig !== 'object' || Array.isArray(rawConfig)) {
    fail(`argument 'config' must be a parsed config.json object, got ${describeValue(rawConfig)}`);
  }
  const outer = rawConfig as Config;
  const config = languageConfig(outer);
  const family = familyOf(config.model_type !== undefined ? config : outer);
  const hiddenSize = intKey(config, HIDDEN, 'the hidden size');
  const entry = FAMILIES[family];
  const numExperts = intKey(config, NUM_EXPERTS, 'the routed expert count');
  const topK = intKey(config, entry.topK ?? TOP_K, 'the experts per token');
  const moeIntermediateSize = intKey(config, entry.width, 'the expert intermediate size');
  const shared = entry.shared?.(config, moeIntermediateSize) ?? 0;
  const options: Options = {
    numExperts, topK, moeIntermediateSize, topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, sparsemixerEpsilon: 0.01,
    renormalize: true, renormalizeEpsilon: null, useCorrectionBias: false, zeroExperts: 0, latentSize: null, withBias: false, probInAdvance: false,
    routingWeightOn: 'output', routerBias: false, activation: 'swiglu', swigluAlpha: 1.702, swigluLimit: 7,
    sharedExpertIntermediateSize: shared, sharedExpertGate: shared > 0 && entry.sharedGate === true,
    ...entry.routing(config, family),
  };
  return {family, hiddenSize, options, naming: {...STANDARD_NAMING, ...entry.naming},
    biasRequired: entry.biasRequired?.(config) ?? false};
}
