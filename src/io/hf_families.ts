/**
 * Per-family knowledge of Hugging Face MoE configs: which config keys mean what (names differ between families
 * and between hub files and transformers), how each family routes, and how its MoE block names its tensors.
 * Turning a parsed config.json into FusedMoE options happens here; weight mapping is in hf_import.ts.
 */
import type {FusedMoEOptions} from '../layers/fused_moe_config.js';

/** The Hugging Face model families whose MoE blocks loadHuggingFaceMoe imports. */
export type HfFamily = 'qwen2_moe' | 'qwen3_moe' | 'mixtral' | 'olmoe' | 'deepseek_v3' | 'ernie4_5_moe';

/** How a family's MoE block names its tensors (relative to the block, e.g. 'model.layers.3.mlp.'). */
export interface HfNaming {
  /** Per-expert projection names on the hub: gate, up, down (Mixtral: w1, w3, w2). */
  expertProj: {gate: string, up: string, down: string};
  /** Router weight [E,H]. */
  router: string;
  /** Candidate names of the selection bias, first match wins ([E] or [1,E]). */
  correctionBias: string[];
  /** Shared expert MLP module name. */
  shared: string;
  /** Qwen2-MoE's shared expert gate [1,H]. */
  sharedGate: string;
}

/** What a model's config.json says about its MoE block: family, hidden size, layer options, tensor names. */
export interface HfMoeSpec {
  family: HfFamily;
  hiddenSize: number;
  options: Omit<FusedMoEOptions, 'backend' | 'computeDtype'>;
  naming: HfNaming;
}

/** A parsed config.json. */
export type Config = Record<string, unknown>;

const STANDARD_NAMING: HfNaming = {
  expertProj: {gate: 'gate_proj', up: 'up_proj', down: 'down_proj'},
  router: 'gate.weight',
  correctionBias: [],
  shared: 'shared_experts',
  sharedGate: 'shared_expert_gate.weight',
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
        JSON.stringify(value)}`);
  }
  return value;
}

function numKey(config: Config, keys: string[], what: string, fallback: number): number {
  const value = pick(config, keys) ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    fail(`config needs ${what} as a number under ${keys.map(k => `'${k}'`).join(' or ')}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function boolKey(config: Config, keys: string[], what: string, fallback: boolean): boolean {
  const value = pick(config, keys) ?? fallback;
  if (typeof value !== 'boolean') {
    fail(`config needs ${what} as a boolean under ${keys.map(k => `'${k}'`).join(' or ')}, got ${JSON.stringify(value)}`);
  }
  return value;
}

// Aliases across families (hub files and transformers spell some of these differently).
const NUM_EXPERTS = ['num_experts', 'num_local_experts', 'n_routed_experts', 'moe_num_experts'];
const TOP_K = ['num_experts_per_tok', 'moe_k', 'moe_top_k', 'top_k'];
const HIDDEN = ['hidden_size', 'd_model', 'hidden_dim'];

const MODEL_TYPE_ALIASES: Record<string, HfFamily> = {
  qwen2_moe: 'qwen2_moe', qwen3_moe: 'qwen3_moe', mixtral: 'mixtral', olmoe: 'olmoe', deepseek_v3: 'deepseek_v3',
  ernie4_5_moe: 'ernie4_5_moe', ernie4_5_moe_pt: 'ernie4_5_moe',
};

/** Multimodal wrappers keep the language model's config under text_config. */
function languageConfig(config: Config): Config {
  const text = config.text_config;
  if (text != null && typeof text === 'object' && pick(config, NUM_EXPERTS) === undefined) return text as Config;
  return config;
}

/** The MoE family of a parsed config.json (its model_type, or text_config's for multimodal configs); throws for unknown types. */
export function familyOf(config: Config): HfFamily {
  const modelType = config.model_type;
  if (typeof modelType !== 'string') fail(`config has no 'model_type' (got ${JSON.stringify(modelType)})`);
  const family = MODEL_TYPE_ALIASES[modelType];
  if (family == null) {
    fail(`unknown model_type '${modelType}' (supported: ${Object.keys(MODEL_TYPE_ALIASES).join(', ')})`);
  }
  return family;
}

/** Reads a parsed config.json into FusedMoE options plus the family's tensor naming. */
export function hfMoeSpec(rawConfig: unknown): HfMoeSpec {
  if (rawConfig == null || typeof rawConfig !== 'object' || Array.isArray(rawConfig)) {
    fail(`argument 'config' must be a parsed config.json object, got ${JSON.stringify(rawConfig)}`);
  }
  const outer = rawConfig as Config;
  const config = languageConfig(outer);
  const family = familyOf(config.model_type !== undefined ? config : outer);
  const hiddenSize = intKey(config, HIDDEN, 'the hidden size');
  const numExperts = intKey(config, NUM_EXPERTS, 'the routed expert count');
  const topK = intKey(config, TOP_K, 'the experts per token');
  const base = {
    numExperts, topK, topkMethod: 'greedy' as const, nGroup: 1, topkGroup: 1, routedScalingFactor: 1,
    renormalize: true, useCorrectionBias: false, latentSize: null, withBias: false, probInAdvance: false,
    sharedExpertIntermediateSize: 0, sharedExpertGate: false,
  };
  switch (family) {
    case 'qwen2_moe': {
      const shared = intKey(config, ['shared_expert_intermediate_size'], 'the shared expert size', 0);
      return {family, hiddenSize, naming: {...STANDARD_NAMING, shared: 'shared_expert'}, options: {...base,
        moeIntermediateSize: intKey(config, ['moe_intermediate_size'], 'the expert intermediate size'),
        renormalize: boolKey(config, ['norm_topk_prob'], 'norm_topk_prob', false),
        sharedExpertIntermediateSize: shared, sharedExpertGate: shared > 0,
      }};
    }
    case 'qwen3_moe':
    case 'olmoe':
      return {family, hiddenSize, naming: STANDARD_NAMING, options: {...base,
        // OLMoE's experts are sized by intermediate_size (it has no moe_intermediate_size).
        moeIntermediateSize: intKey(config, family === 'olmoe' ? ['moe_intermediate_size', 'intermediate_size'] :
                                                                 ['moe_intermediate_size'],
            'the expert intermediate size'),
        renormalize: boolKey(config, ['norm_topk_prob'], 'norm_topk_prob', false),
      }};
    case 'mixtral':
      return {family, hiddenSize, naming: {...STANDARD_NAMING, expertProj: {gate: 'w1', up: 'w3', down: 'w2'}},
        // Mixtral always renormalises the top-k softmax weights.
        options: {...base, moeIntermediateSize: intKey(config, ['intermediate_size'], 'the expert intermediate size')}};
    case 'deepseek_v3': {
      const nShared = intKey(config, ['n_shared_experts'], 'the shared expert count', 1);
      const moeIntermediateSize = intKey(config, ['moe_intermediate_size'], 'the expert intermediate size');
      const topkMethod = pick(config, ['topk_method']) ?? 'noaux_tc';
      if (topkMethod !== 'noaux_tc') fail(`deepseek_v3 with topk_method '${topkMethod}' is not supported (only noaux_tc)`);
      const scoring = pick(config, ['scoring_func']) ?? 'sigmoid';
      if (scoring !== 'sigmoid') fail(`deepseek_v3 with scoring_func '${scoring}' is not supported (only sigmoid)`);
      return {family, hiddenSize, naming: {...STANDARD_NAMING, correctionBias: ['gate.e_score_correction_bias']},
        options: {...base, moeIntermediateSize, topkMethod: 'noaux_tc',
          nGroup: intKey(config, ['n_group'], 'n_group', 1),
          topkGroup: intKey(config, ['topk_group'], 'topk_group', 1),
          routedScalingFactor: numKey(config, ['routed_scaling_factor'], 'routed_scaling_factor', 1),
          renormalize: boolKey(config, ['norm_topk_prob'], 'norm_topk_prob', true),
          useCorrectionBias: true, sharedExpertIntermediateSize: nShared * moeIntermediateSize,
        }};
    }
    case 'ernie4_5_moe': {
      const nShared = intKey(config, ['moe_num_shared_experts'], 'the shared expert count', 0);
      const moeIntermediateSize = intKey(config, ['moe_intermediate_size'], 'the expert intermediate size');
      return {family, hiddenSize,
        naming: {...STANDARD_NAMING,
          // transformers v5 keeps the statistics under the router; older checkpoints beside it.
          correctionBias: ['gate.moe_statics.e_score_correction_bias', 'moe_statics.e_score_correction_bias']},
        // Selection-only bias, weights renormalised (denominator clamped at 1e-12, which p > 0 never reaches).
        options: {...base, moeIntermediateSize, useCorrectionBias: true,
          sharedExpertIntermediateSize: nShared * moeIntermediateSize}};
    }
  }
}
