/**
 * The FusedMoE layer's schema, below the layer so that executors (e.g. the CUDA addon) can use it without importing
 * the layer: one option table (name, type, default, doc) that feeds resolveOptions, the layer's getConfig, the
 * validation and the native config; and the weight table (names and shapes) that build(), the HF importer and the
 * executors share. Every name here is the one name of its concept in TS, WGSL and C++.
 */
import * as tf from '@tensorflow/tfjs-core';

import {EXPERT_WEIGHT_FORMATS, ExpertWeightFormat, formatOptionsProblem, QuantizedExpertWeights} from './expert_weights.js';

/**
 * How the router picks experts: 'greedy' softmax top-k, DeepSeek-V3's 'noaux_tc' sigmoid + group-limited top-k,
 * DeepSeek-V2's 'group_limited_greedy' softmax top-k within the best groups, or PhiMoE's 'sparsemixer' (two rounds
 * of a masked softmax, always two experts; docs/semantics.md 11.8).
 */
export type TopkMethod = 'greedy' | 'noaux_tc' | 'group_limited_greedy' | 'sparsemixer';
export const TOPK_METHODS: readonly TopkMethod[] = ['greedy', 'noaux_tc', 'group_limited_greedy', 'sparsemixer'];
/**
 * The expert activation (docs/semantics.md 11.2): 'swiglu' = silu(gate) * up; 'clamped_swiglu' (gpt-oss) =
 * (u + 1) * g * sigmoid(swigluAlpha * g) with g = min(gate, swigluLimit), u = clamp(up, -swigluLimit, swigluLimit).
 */
export type SwigluActivation = 'swiglu' | 'clamped_swiglu';
/** Every value of the `activation` option. */
export const SWIGLU_ACTIVATIONS: readonly SwigluActivation[] = ['swiglu', 'clamped_swiglu'];
/** Where the routing weight multiplies (docs/semantics.md 11.6). */
export type RoutingWeightOn = 'output' | 'activation' | 'input';
export const ROUTING_WEIGHT_ON: readonly RoutingWeightOn[] = ['output', 'activation', 'input'];
/** Which path a FusedMoE call takes; 'auto' picks the active backend's kernels or the composite path. */
export type MoeLayerBackend = 'auto' | 'cpu' | 'webgpu' | 'cuda' | 'composite';
export const MOE_LAYER_BACKENDS: readonly MoeLayerBackend[] = ['auto', 'cpu', 'webgpu', 'cuda', 'composite'];
/** The dtype expert weights are converted to once, at upload, by backends that convert (today: 'cuda'). */
export type MoeComputeDtype = 'float32' | 'bfloat16' | 'float16';
export const MOE_COMPUTE_DTYPES: readonly MoeComputeDtype[] = ['float32', 'bfloat16', 'float16'];

/** The MoE options (all serializable scalars), exactly the fields of FusedMoE's config (docs: OPTION_TABLE). */
export interface FusedMoEOptions {
  numExperts: number;
  topK: number;
  moeIntermediateSize: number;
  topkMethod: TopkMethod;
  /** Expert groups (noaux_tc and group_limited_greedy). */
  nGroup: number;
  /** Groups kept per token (noaux_tc and group_limited_greedy). */
  topkGroup: number;
  /** Multiplies the routing weights (every method, after renormalisation). */
  routedScalingFactor: number;
  /** sparsemixer: an expert is masked out of a round when (m - l) / max(|l|, m) > 2 * sparsemixerEpsilon. */
  sparsemixerEpsilon: number;
  /** Divide the k weights by their sum (+ renormalizeEpsilon). */
  renormalize: boolean;
  /** Renormalised weights are w / (sum + this); null: each op's own rule (softmax: max(sum, 1e-12); noaux_tc: + 1e-20). */
  renormalizeEpsilon: number | null;
  /** A non-trainable per-expert bias that affects only which experts are chosen. */
  useCorrectionBias: boolean;
  /** Z identity ("zero-computation") experts after the E real ones: an id in [E, E+Z) adds w * x, no FFN. */
  zeroExperts: number;
  /** Experts run in a latent space of this width (fc1 before, fc2 after); null: in the hidden size. */
  latentSize: number | null;
  /** Per-expert biases on both expert projections. */
  withBias: boolean;
  /** Scale the SwiGLU activations by the routing weight before the down projection (not after it). */
  probInAdvance: boolean;
  /**
   * Where the routing weight multiplies: the expert's output ('output'), its SwiGLU activations ('activation', the
   * same as probInAdvance, which stays its alias) or its input ('input', Llama-4: expert(w * x)).
   */
  routingWeightOn: RoutingWeightOn;
  /** A trainable bias gate_bias [E] added to the router logits before any scoring (gpt-oss). */
  routerBias: boolean;
  /** The routed experts' activation: 'swiglu' or gpt-oss's 'clamped_swiglu' (the shared expert stays SwiGLU). */
  activation: SwigluActivation;
  /** clamped_swiglu: the sigmoid's slope alpha in (u + 1) * g * sigmoid(alpha * g). */
  swigluAlpha: number;
  /** clamped_swiglu: the gate is clamped above at this limit, up to [-limit, limit]. */
  swigluLimit: number;
  /** Width of the shared expert MLP that every token passes through; 0: none. */
  sharedExpertIntermediateSize: number;
  /** Multiply the shared expert's output by sigmoid(x @ shared_expert_gate_weight) (Qwen2-MoE). */
  sharedExpertGate: boolean;
  /** Which implementation runs call(); chosen again on every call. */
  backend: MoeLayerBackend;
  /**
   * Operand dtype of the expert GEMMs on backends that convert weights at upload ('cuda': bf16/f16 tensor cores
   * with float32 accumulation). The cpu, webgpu and composite paths compute in float32 whatever this says.
   */
  computeDtype: MoeComputeDtype;
  /** How the routed experts' weights are stored (docs/formats.md); packed formats are not trained. */
  expertWeightFormat: ExpertWeightFormat;
  /** Scale group along K (int4: 32, 64, 128; int8: any, null = one scale per column; mxfp4: 32); null: default. */
  quantGroupSize: number | null;
  /** int4: a zero point per group and column instead of the symmetric 8. */
  quantZeroPoint: boolean;
}

export type FusedMoEOptionName = keyof FusedMoEOptions;

/** One row of the option table. `required` rows have no default. */
export interface OptionSpec {
  name: FusedMoEOptionName;
  /** int (>= min), number (finite), boolean, enum (one of values), int|null (>= min, or null), number|null. */
  type: 'int' | 'number' | 'boolean' | 'enum' | 'int|null' | 'number|null';
  default?: number | boolean | string | null;
  min?: number;
  /** int / int|null: the largest value (sizes the kernels index with int32; see src/ops/limits.ts). */
  max?: number;
  values?: readonly string[];
  /** Whether the native (CUDA) forward reads it. */
  native: boolean;
  /**
   * Not native, yet run by the CUDA executor: it chooses the implementation (backend) or is handled before the
   * native call (packed expert weights are decoded at upload). Any other non-native option must keep its default
   * there (unsupportedByCuda).
   */
  hostSide?: boolean;
  doc: string;
}

/**
 * Every FusedMoE option with its type, default, bounds and description: the one table that option checking,
 * serialization and the executors read.
 */
export const OPTION_TABLE: readonly OptionSpec[] = [
  // 65536 = MAX_EXPERTS of src/ops/limits.ts (this module imports nothing of ours).
  {name: 'numExperts', type: 'int', min: 1, max: 65536, native: true, doc: 'Routed experts E.'},
  {name: 'topK', type: 'int', min: 1, native: true, doc: 'Experts per token k (<= numExperts).'},
  // 2I columns of up_gate_proj must fit int32.
  {name: 'moeIntermediateSize', type: 'int', min: 1, max: 2 ** 30 - 1, native: true,
    doc: 'Width I of each expert\'s SwiGLU MLP.'},
  {name: 'topkMethod', type: 'enum', values: TOPK_METHODS, default: 'greedy', native: true,
    doc: '\'greedy\': softmax top-k (moeTopkSelect); \'noaux_tc\': DeepSeek-V3 group-limited sigmoid (getMoeScores); ' +
         '\'group_limited_greedy\': DeepSeek-V2 softmax top-k within the topkGroup groups of best probability; ' +
         '\'sparsemixer\': PhiMoE\'s two masked-softmax rounds (topK 2, weights not renormalised unless renormalize).'},
  {name: 'nGroup', type: 'int', min: 1, default: 1, native: true,
    doc: 'Expert groups (noaux_tc and group_limited_greedy).'},
  {name: 'topkGroup', type: 'int', min: 1, default: 1, native: true,
    doc: 'Groups kept per token (noaux_tc and group_limited_greedy).'},
  {name: 'routedScalingFactor', type: 'number', default: 1, native: true,
    doc: 'Multiplies the routing weights, after renormalisation (every method).'},
  // PhiMoE's router_jitter_noise (0.01 in its configs) is the threshold its eval-mode sparsemixer uses.
  {name: 'sparsemixerEpsilon', type: 'number', default: 0.01, native: true,
    doc: 'sparsemixer only: a round masks every logit l with (m - l) / max(|l|, m) > 2 * this (m the round\'s max).'},
  {name: 'renormalize', type: 'boolean', default: true, native: true,
    doc: 'Divide the k routing weights by their sum (+ renormalizeEpsilon).'},
  {name: 'renormalizeEpsilon', type: 'number|null', min: 0, default: null, native: true,
    doc: 'Renormalised weights are w / (sum + this) (softmax methods: the denominator at least 1e-12); null: each ' +
         'op\'s own rule (softmax: w / max(sum, 1e-12); noaux_tc: w / (sum + 1e-20)).'},
  {name: 'useCorrectionBias', type: 'boolean', default: false, native: true,
    doc: 'A non-trainable per-expert bias (gate_correction_bias) that affects only which experts are chosen.'},
  {name: 'zeroExperts', type: 'int', min: 0, max: 65536, default: 0, native: true,
    doc: 'Identity experts Z after the E real ones (LongCat-Flash): the router scores E+Z, an id >= E adds w * x.'},
  {name: 'latentSize', type: 'int|null', min: 1, max: 2 ** 31 - 1, default: null, native: true,
    doc: 'Experts run in a latent space of this width (fc1 before, fc2 after); null: in the hidden size.'},
  {name: 'withBias', type: 'boolean', default: false, native: true, doc: 'Per-expert biases on both expert projections.'},
  {name: 'probInAdvance', type: 'boolean', default: false, native: true,
    doc: 'Scale the SwiGLU activations by the routing weight before the down projection (not after it).'},
  {name: 'routingWeightOn', type: 'enum', values: ROUTING_WEIGHT_ON, default: 'output', native: true,
    doc: 'Where the routing weight multiplies: \'output\' (the expert output), \'activation\' (= probInAdvance), ' +
         '\'input\' (Llama-4: expert(w * x), summed unweighted; not with withBias).'},
  {name: 'routerBias', type: 'boolean', default: false, native: true,
    doc: 'A trainable bias gate_bias [E] added to the router logits before any scoring (gpt-oss).'},
  {name: 'activation', type: 'enum', values: SWIGLU_ACTIVATIONS, default: 'swiglu', native: true,
    doc: 'The routed experts\' activation: \'swiglu\' = silu(gate) * up; \'clamped_swiglu\' (gpt-oss) = ' +
         '(u + 1) * g * sigmoid(swigluAlpha * g), g = min(gate, swigluLimit), u = clamp(up, -swigluLimit, swigluLimit).'},
  {name: 'swigluAlpha', type: 'number', default: 1.702, native: true,
    doc: 'clamped_swiglu: the sigmoid\'s slope alpha.'},
  {name: 'swigluLimit', type: 'number', default: 7, native: true,
    doc: 'clamped_swiglu: the gate\'s upper clamp and up\'s symmetric clamp (> 0).'},
  {name: 'sharedExpertIntermediateSize', type: 'int', min: 0, max: 2 ** 30 - 1, default: 0, native: true,
    doc: 'Width of the shared expert MLP that every token passes through; 0: none.'},
  {name: 'sharedExpertGate', type: 'boolean', default: false, native: true,
    doc: 'Multiply the shared expert\'s output by sigmoid(x @ shared_expert_gate_weight) (Qwen2-MoE).'},
  {name: 'backend', type: 'enum', values: MOE_LAYER_BACKENDS, default: 'auto', native: false, hostSide: true,
    doc: 'Which implementation runs call(); chosen again on every call.'},
  {name: 'computeDtype', type: 'enum', values: MOE_COMPUTE_DTYPES, default: 'float32', native: true,
    doc: 'Operand dtype of the expert GEMMs on backends that convert weights at upload (\'cuda\': bf16/f16 tensor ' +
         'cores with float32 accumulation); the cpu, webgpu and composite paths compute in float32.'},
  {name: 'expertWeightFormat', type: 'enum', values: EXPERT_WEIGHT_FORMATS, default: 'float32', native: false,
    hostSide: true,
    doc: 'Storage of the routed experts\' weights (docs/formats.md): \'float32\', \'float16\', \'bfloat16\', \'int8\', ' +
         '\'int4\', \'mxfp4\'. Packed formats are not trained (router, shared experts, latent projections, biases are).'},
  {name: 'quantGroupSize', type: 'int|null', min: 1, default: null, native: false, hostSide: true,
    doc: 'Scale group along K: int4 32 (default), 64 or 128; int8 any (default: one scale per column); mxfp4 32.'},
  {name: 'quantZeroPoint', type: 'boolean', default: false, native: false, hostSide: true,
    doc: 'int4 only: a zero point per group and column (asymmetric, as GPTQ) instead of the symmetric 8.'},
];

export const OPTION_KEYS: readonly FusedMoEOptionName[] = OPTION_TABLE.map(o => o.name);

export const OPTION_DEFAULTS = Object.fromEntries(
    OPTION_TABLE.filter(o => 'default' in o).map(o => [o.name, o.default])) as
    Omit<FusedMoEOptions, 'numExperts' | 'topK' | 'moeIntermediateSize'>;

const WHO = 'FusedMoE';

function show(value: unknown): string {
  if (value instanceof tf.Tensor) return `a tensor of shape [${value.shape}]`;
  // JSON.stringify prints NaN and Infinity as null, undefined as nothing, and throws on a bigint.
  if (typeof value === 'number') return String(value);
  if (typeof value === 'bigint') return `${value}n (a bigint)`;
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return String(typeof value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

export function optionError(option: string, expected: string, got: unknown): Error {
  return new Error(`${WHO}: option '${option}' must be ${expected}, got ${show(got)}`);
}

function checkOption(spec: OptionSpec, value: unknown): void {
  const {name, type, min = 0} = spec;
  const isInt = typeof value === 'number' && Number.isInteger(value) && value >= min;
  switch (type) {
    case 'int':
    case 'int|null':
      if (type === 'int|null' && value === null) return;
      if (!isInt) throw optionError(name, `an integer >= ${min}`, value);
      if (spec.max != null && (value as number) > spec.max) throw optionError(name, `an integer <= ${spec.max}`, value);
      return;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw optionError(name, 'a finite number', value);
      return;
    case 'number|null':
      if (value !== null && (typeof value !== 'number' || !Number.isFinite(value) || value < min)) {
        throw optionError(name, `null or a finite number >= ${min}`, value);
      }
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw optionError(name, 'a boolean', value);
      return;
    case 'enum': {
      const values = spec.values!;
      if (!values.includes(value as string)) {
        throw optionError(name, values.length === 2 ? `'${values[0]}' or '${values[1]}'` :
            values.map(v => `'${v}'`).join(' | '), value);
      }
    }
  }
}

/** Fills defaults and checks every option (the table) and their combinations, before any tensor exists. */
export function resolveOptions(args: Partial<FusedMoEOptions>): FusedMoEOptions {
  if (args == null || typeof args !== 'object') throw new Error(`${WHO}: expected an options object, got ${show(args)}`);
  const given = Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined)) as Partial<FusedMoEOptions>;
  // probInAdvance is routingWeightOn 'activation' under its older name: either may be given, not in contradiction.
  if (given.routingWeightOn === undefined && given.probInAdvance === true) given.routingWeightOn = 'activation';
  const o = {...OPTION_DEFAULTS, ...given} as FusedMoEOptions;
  const byName = new Map(OPTION_TABLE.map(spec => [spec.name, spec]));
  const check = (name: FusedMoEOptionName) => checkOption(byName.get(name)!, o[name]);
  // Checked in this order so that the first error names the most basic problem.
  check('numExperts');
  check('zeroExperts');
  check('topK');
  // The router scores the identity experts too: every routing rule below sees E + Z experts.
  const numExperts = o.numExperts + o.zeroExperts;
  if (o.topK > numExperts) {
    throw optionError('topK', o.zeroExperts > 0 ? `<= numExperts + zeroExperts (${numExperts})` :
        `<= numExperts (${numExperts})`, o.topK);
  }
  for (const spec of OPTION_TABLE) if (!['numExperts', 'topK', 'zeroExperts'].includes(spec.name)) check(spec.name);
  const {topK, nGroup, topkGroup} = o;
  if (o.topkMethod === 'noaux_tc' || o.topkMethod === 'group_limited_greedy') {
    if (numExperts % nGroup !== 0) {
      throw optionError('nGroup', `a divisor of ${o.zeroExperts > 0 ? 'numExperts + zeroExperts' : 'numExperts'} (${
          numExperts})`, nGroup);
    }
    if (topkGroup > nGroup) throw optionError('topkGroup', `<= nGroup (${nGroup})`, topkGroup);
    const candidates = topkGroup * (numExperts / nGroup);
    // group_limited_greedy scores dropped experts 0, so k may exceed the kept experts (those slots weigh 0).
    if (o.topkMethod === 'noaux_tc' && topK > candidates) {
      throw optionError('topK', `<= topkGroup * numExperts / nGroup (${candidates}) for noaux_tc`, topK);
    }
    if (o.topkMethod === 'group_limited_greedy' && o.useCorrectionBias) {
      throw optionError('useCorrectionBias', 'false with topkMethod \'group_limited_greedy\' (it has no selection bias)',
          true);
    }
  } else if (nGroup !== 1 || topkGroup !== 1) {
    // Greedy (softmax) and sparsemixer routing have no groups: reject rather than ignore them.
    throw optionError(nGroup !== 1 ? 'nGroup' : 'topkGroup',
        `1 with topkMethod '${o.topkMethod}' (groups are a noaux_tc / group_limited_greedy feature)`,
        nGroup !== 1 ? nGroup : topkGroup);
  }
  if (o.topkMethod === 'sparsemixer') {
    if (topK !== 2) throw optionError('topK', '2 with topkMethod \'sparsemixer\' (it always picks two experts)', topK);
    if (o.useCorrectionBias) {
      throw optionError('useCorrectionBias', 'false with topkMethod \'sparsemixer\' (it has no selection bias)', true);
    }
    if (!(o.sparsemixerEpsilon >= 0)) throw optionError('sparsemixerEpsilon', 'a finite number >= 0', o.sparsemixerEpsilon);
  } else if (o.sparsemixerEpsilon !== OPTION_DEFAULTS.sparsemixerEpsilon) {
    throw optionError('sparsemixerEpsilon', `${OPTION_DEFAULTS.sparsemixerEpsilon} (its default) unless topkMethod is ` +
        `'sparsemixer' (got topkMethod '${o.topkMethod}')`, o.sparsemixerEpsilon);
  }
  if (o.zeroExperts > 0 && o.latentSize !== null) {
    throw optionError('zeroExperts', '0 with latentSize (an identity expert in the latent space is not defined)',
        o.zeroExperts);
  }
  if (!(o.swigluLimit > 0)) throw optionError('swigluLimit', 'a finite number > 0', o.swigluLimit);
  if (given.probInAdvance !== undefined && given.probInAdvance !== (o.routingWeightOn === 'activation')) {
    throw optionError('probInAdvance', `${o.routingWeightOn === 'activation'} with routingWeightOn '${o.routingWeightOn}' ` +
        '(probInAdvance is routingWeightOn \'activation\')', given.probInAdvance);
  }
  o.probInAdvance = o.routingWeightOn === 'activation';
  if (o.routingWeightOn === 'input' && o.withBias) {
    throw optionError('routingWeightOn', '\'output\' or \'activation\' with withBias (a weighted input with expert ' +
        'biases has no family and no single meaning)', 'input');
  }
  if (o.sharedExpertGate && o.sharedExpertIntermediateSize === 0) {
    throw optionError('sharedExpertGate', 'false when sharedExpertIntermediateSize is 0 (no shared expert to gate)', true);
  }
  const problem = formatOptionsProblem(o.expertWeightFormat, o.quantGroupSize, o.quantZeroPoint);
  if (problem != null) {
    const option = problem.option === 'groupSize' ? 'quantGroupSize' : 'quantZeroPoint';
    throw optionError(option, `${problem.expected} (expertWeightFormat '${o.expertWeightFormat}')`, o[option]);
  }
  const out = {} as Record<string, unknown>;
  for (const key of OPTION_KEYS) out[key] = o[key];
  return out as unknown as FusedMoEOptions;
}

/**
 * The options the native forward reads, by their table names, plus the hidden size. A null integer is 0 (latentSize:
 * no latent projection); a null number is left out (renormalizeEpsilon: the routing method's own rule).
 */
export function nativeLayerConfig(hidden: number, o: FusedMoEOptions): Record<string, number | boolean | string> {
  const out: Record<string, number | boolean | string> = {hidden};
  for (const spec of OPTION_TABLE) {
    if (!spec.native) continue;
    const value = o[spec.name];
    if (value !== null) out[spec.name] = value;
    else if (spec.type === 'int|null') out[spec.name] = 0;
  }
  return out;
}

/**
 * The values of the native enum options that the CUDA addon implements (src/kernels/cuda/addon_layer.cc reads the
 * same names): a value added to an option's table later is refused by unsupportedByCuda until the addon runs it.
 */
export const CUDA_NATIVE_VALUES: Partial<Record<FusedMoEOptionName, readonly string[]>> = {
  topkMethod: ['greedy', 'noaux_tc', 'group_limited_greedy', 'sparsemixer'],
  activation: ['swiglu', 'clamped_swiglu'],
  routingWeightOn: ['output', 'activation', 'input'],
  computeDtype: MOE_COMPUTE_DTYPES,
};

/**
 * The one check of what the CUDA executor and the CUDA op kernels cannot run (yet), as the Error they throw before
 * any upload or GPU work; null when they run everything asked. `what` lists the settings, e.g. "option 'x' = 3".
 */
export function cudaUnsupportedError(who: string, what: string[]): Error | null {
  if (what.length === 0) return null;
  return new Error(`${who}: ${what.join(', ')} ${what.length === 1 ? 'is' : 'are'} not supported by the CUDA ` +
      'executor yet; use backend \'cpu\', \'webgpu\' or \'composite\'');
}

/**
 * The option settings the CUDA executor cannot run yet (a non-native option away from its default, or a native
 * enum value the addon does not implement), as the Error it throws before any GPU work; null when it runs them all.
 */
export function unsupportedByCuda(o: FusedMoEOptions): Error | null {
  const what: string[] = [];
  for (const spec of OPTION_TABLE) {
    const value = o[spec.name] as unknown;
    const known = CUDA_NATIVE_VALUES[spec.name];
    if (spec.native ? known != null && !known.includes(value as string) : !spec.hostSide && value !== spec.default) {
      what.push(`option '${spec.name}' = ${show(value)}`);
    }
  }
  return cudaUnsupportedError('FusedMoE backend \'cuda\'', what);
}

/** One weight of the layer: its name (saved as `layerName/name`), shape, and role. */
export interface WeightSpec {
  name: FusedMoEWeightName;
  shape: number[];
  kind: 'kernel' | 'bias';
  trainable: boolean;
}

/** The names of a FusedMoE layer's weights (as in its state dict and in `namedWeights()`). */
export type FusedMoEWeightName =
    'gate_weight' | 'gate_bias' | 'gate_correction_bias' | 'up_gate_proj_weight' | 'up_gate_proj_bias' | 'down_proj_weight' |
    'down_proj_bias' | 'fc1_latent_proj_weight' | 'fc2_latent_proj_weight' | 'shared_up_gate_proj_weight' |
    'shared_down_proj_weight' | 'shared_expert_gate_weight';

/** The weights of a layer with these options on inputs of hidden size H, in build() order. */
export function weightSpecs(o: FusedMoEOptions, hiddenSize: number): WeightSpec[] {
  const H = hiddenSize, E = o.numExperts, I = o.moeIntermediateSize, L = o.latentSize;
  const D = L ?? H, S = o.sharedExpertIntermediateSize;
  const specs: WeightSpec[] = [];
  const add = (name: FusedMoEWeightName, shape: number[], kind: 'kernel' | 'bias', trainable = true) =>
      specs.push({name, shape, kind, trainable});
  // The router (and its selection bias) scores the Z identity experts too.
  add('gate_weight', [H, E + o.zeroExperts], 'kernel');
  if (o.routerBias) add('gate_bias', [E + o.zeroExperts], 'bias');
  // The correction bias is a load-balancing statistic updated outside training: never a gradient target.
  if (o.useCorrectionBias) add('gate_correction_bias', [E + o.zeroExperts], 'bias', false);
  add('up_gate_proj_weight', [E, D, 2 * I], 'kernel');
  if (o.withBias) add('up_gate_proj_bias', [E, 2 * I], 'bias');
  add('down_proj_weight', [E, I, D], 'kernel');
  if (o.withBias) add('down_proj_bias', [E, D], 'bias');
  if (L != null) {
    add('fc1_latent_proj_weight', [H, L], 'kernel');
    add('fc2_latent_proj_weight', [L, H], 'kernel');
  }
  if (S > 0) {
    add('shared_up_gate_proj_weight', [H, 2 * S], 'kernel');
    add('shared_down_proj_weight', [S, H], 'kernel');
    if (o.sharedExpertGate) add('shared_expert_gate_weight', [H, 1], 'kernel');
  }
  return specs;
}

/** The routed experts' weights, the ones expertWeightFormat applies to. */
export type ExpertWeightName = 'up_gate_proj_weight' | 'down_proj_weight';
export const EXPERT_WEIGHT_NAMES: readonly ExpertWeightName[] = ['up_gate_proj_weight', 'down_proj_weight'];

/**
 * The layer's weights as tensors, keyed by name; absent options leave their entries undefined. The expert weights
 * are float32 tensors, or QuantizedExpertWeights ([E,K,N] layout) when the layer stores a packed format.
 */
export type FusedMoEWeights = {
  gate_weight: tf.Tensor2D,
  up_gate_proj_weight: tf.Tensor3D | QuantizedExpertWeights,
  down_proj_weight: tf.Tensor3D | QuantizedExpertWeights,
} & Partial<Record<Exclude<FusedMoEWeightName, ExpertWeightName>, tf.Tensor>>;
