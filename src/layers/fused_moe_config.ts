/**
 * FusedMoE's options: their defaults, their validation (every error names the option, what it must be and what
 * came), and the weight table (names and shapes) that build(), the HF importer and the executors share.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

import type {LoadBalancingOptions} from './load_balancing.js';

/** How the router picks experts: 'greedy' softmax top-k, or DeepSeek-V3's 'noaux_tc' sigmoid + group-limited top-k. */
export type TopkMethod = 'greedy' | 'noaux_tc';
/** Which path a FusedMoE call takes; 'auto' picks the active backend's kernels or the composite path. */
export type MoeLayerBackend = 'auto' | 'cpu' | 'webgpu' | 'cuda' | 'composite';
/** The dtype expert weights are converted to once, at upload, by backends that convert (today: 'cuda'). */
export type MoeComputeDtype = 'float32' | 'bfloat16' | 'float16';
export const MOE_COMPUTE_DTYPES: readonly MoeComputeDtype[] = ['float32', 'bfloat16', 'float16'];
export const MOE_LAYER_BACKENDS: readonly MoeLayerBackend[] = ['auto', 'cpu', 'webgpu', 'cuda', 'composite'];

/** A tf.layers weight initializer. */
export type Initializer = ReturnType<typeof tfl.initializers.ones>;
/** An Initializer, the camelCase name of a tfjs initializer ('randomNormal'), or its serialized form. */
export type InitializerSpec = Initializer | string | {className: string, config?: tf.serialization.ConfigDict};

/** The MoE options (all serializable scalars), exactly the fields of FusedMoE's config. */
export interface FusedMoEOptions {
  numExperts: number;
  topK: number;
  moeIntermediateSize: number;
  topkMethod: TopkMethod;
  /** Expert groups (noaux_tc only). */
  nGroup: number;
  /** Groups kept per token (noaux_tc only). */
  topkGroup: number;
  /** Multiplies the routing weights (noaux_tc only, applied inside getMoeScores). */
  routedScalingFactor: number;
  /** greedy: divide the k weights by their sum; noaux_tc: the same, with getMoeScores' epsilon. */
  renormalize: boolean;
  /** A non-trainable per-expert bias that affects only which experts are chosen. */
  useCorrectionBias: boolean;
  /** Experts run in a latent space of this width (fc1 before, fc2 after); null: in the hidden size. */
  latentSize: number | null;
  /** Per-expert biases on both expert projections. */
  withBias: boolean;
  /** Scale the SwiGLU activations by the routing weight before the down projection (not after it). */
  probInAdvance: boolean;
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
}

/**
 * Constructor arguments: the MoE options (most optional), the load-balancing options (load_balancing.ts), plus
 * initializers and the usual LayerArgs.
 */
export interface FusedMoEArgs extends Partial<FusedMoEOptions>, Partial<LoadBalancingOptions> {
  numExperts: number;
  topK: number;
  moeIntermediateSize: number;
  /** Initializer of every weight matrix (gate, experts, latent and shared projections). */
  kernelInitializer?: InitializerSpec;
  /** Initializer of every bias (expert biases and the gate correction bias). */
  biasInitializer?: InitializerSpec;
  // The usual tf.layers LayerArgs:
  inputShape?: tfl.Shape;
  batchInputShape?: tfl.Shape;
  batchSize?: number;
  dtype?: tf.DataType;
  name?: string;
  trainable?: boolean;
  weights?: tf.Tensor[];
}

export const OPTION_DEFAULTS: Omit<FusedMoEOptions, 'numExperts' | 'topK' | 'moeIntermediateSize'> = {
  topkMethod: 'greedy',
  nGroup: 1,
  topkGroup: 1,
  routedScalingFactor: 1,
  renormalize: true,
  useCorrectionBias: false,
  latentSize: null,
  withBias: false,
  probInAdvance: false,
  sharedExpertIntermediateSize: 0,
  sharedExpertGate: false,
  backend: 'auto',
  computeDtype: 'float32',
};

export const OPTION_KEYS = [
  'numExperts', 'topK', 'moeIntermediateSize', 'topkMethod', 'nGroup', 'topkGroup', 'routedScalingFactor',
  'renormalize', 'useCorrectionBias', 'latentSize', 'withBias', 'probInAdvance', 'sharedExpertIntermediateSize',
  'sharedExpertGate', 'backend', 'computeDtype',
] as const;

const WHO = 'FusedMoE';

function show(value: unknown): string {
  if (value instanceof tf.Tensor) return `a tensor of shape [${value.shape}]`;
  return value === undefined ? 'undefined' : JSON.stringify(value) ?? String(value);
}

function optionError(option: string, expected: string, got: unknown): Error {
  return new Error(`${WHO}: option '${option}' must be ${expected}, got ${show(got)}`);
}

function int(option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw optionError(option, `an integer >= ${min}`, value);
  }
  return value;
}

function bool(option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw optionError(option, 'a boolean', value);
  return value;
}

/** Fills defaults and checks every option and their combinations, before any tensor exists. */
export function resolveOptions(args: Partial<FusedMoEOptions>): FusedMoEOptions {
  if (args == null || typeof args !== 'object') throw new Error(`${WHO}: expected an options object, got ${show(args)}`);
  const o = {...OPTION_DEFAULTS, ...stripUndefined(args)} as FusedMoEOptions;
  const numExperts = int('numExperts', o.numExperts, 1);
  const topK = int('topK', o.topK, 1);
  if (topK > numExperts) throw optionError('topK', `<= numExperts (${numExperts})`, topK);
  int('moeIntermediateSize', o.moeIntermediateSize, 1);
  if (o.topkMethod !== 'greedy' && o.topkMethod !== 'noaux_tc') {
    throw optionError('topkMethod', `'greedy' or 'noaux_tc'`, o.topkMethod);
  }
  const nGroup = int('nGroup', o.nGroup, 1);
  const topkGroup = int('topkGroup', o.topkGroup, 1);
  if (typeof o.routedScalingFactor !== 'number' || !Number.isFinite(o.routedScalingFactor)) {
    throw optionError('routedScalingFactor', 'a finite number', o.routedScalingFactor);
  }
  if (o.topkMethod === 'noaux_tc') {
    if (numExperts % nGroup !== 0) throw optionError('nGroup', `a divisor of numExperts (${numExperts})`, nGroup);
    if (topkGroup > nGroup) throw optionError('topkGroup', `<= nGroup (${nGroup})`, topkGroup);
    const candidates = topkGroup * (numExperts / nGroup);
    if (topK > candidates) {
      throw optionError('topK', `<= topkGroup * numExperts / nGroup (${candidates}) for noaux_tc`, topK);
    }
  } else {
    // Greedy (softmax) routing has no groups and no scaling in the semantics: reject rather than ignore them.
    if (nGroup !== 1 || topkGroup !== 1) {
      throw optionError(nGroup !== 1 ? 'nGroup' : 'topkGroup', `1 with topkMethod 'greedy' (groups are a noaux_tc feature)`,
          nGroup !== 1 ? nGroup : topkGroup);
    }
    if (o.routedScalingFactor !== 1) {
      throw optionError('routedScalingFactor', `1 with topkMethod 'greedy' (it applies to noaux_tc routing)`,
          o.routedScalingFactor);
    }
  }
  for (const key of ['renormalize', 'useCorrectionBias', 'withBias', 'probInAdvance', 'sharedExpertGate'] as const) {
    bool(key, o[key]);
  }
  if (o.latentSize !== null) int('latentSize', o.latentSize, 1);
  const shared = int('sharedExpertIntermediateSize', o.sharedExpertIntermediateSize, 0);
  if (o.sharedExpertGate && shared === 0) {
    throw optionError('sharedExpertGate', 'false when sharedExpertIntermediateSize is 0 (no shared expert to gate)', true);
  }
  if (!MOE_LAYER_BACKENDS.includes(o.backend)) {
    throw optionError('backend', MOE_LAYER_BACKENDS.map(b => `'${b}'`).join(' | '), o.backend);
  }
  if (!MOE_COMPUTE_DTYPES.includes(o.computeDtype)) {
    throw optionError('computeDtype', MOE_COMPUTE_DTYPES.map(d => `'${d}'`).join(' | '), o.computeDtype);
  }
  const out = {} as Record<string, unknown>;
  for (const key of OPTION_KEYS) out[key] = o[key];
  return out as unknown as FusedMoEOptions;
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
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
    'gate_weight' | 'gate_correction_bias' | 'up_gate_proj_weight' | 'up_gate_proj_bias' | 'down_proj_weight' |
    'down_proj_bias' | 'fc1_latent_proj_weight' | 'fc2_latent_proj_weight' | 'shared_up_gate_proj_weight' |
    'shared_down_proj_weight' | 'shared_expert_gate_weight';

/** The weights of a layer with these options on inputs of hidden size H, in build() order. */
export function weightSpecs(o: FusedMoEOptions, hiddenSize: number): WeightSpec[] {
  const H = hiddenSize, E = o.numExperts, I = o.moeIntermediateSize, L = o.latentSize;
  const D = L ?? H, S = o.sharedExpertIntermediateSize;
  const specs: WeightSpec[] = [];
  const add = (name: FusedMoEWeightName, shape: number[], kind: 'kernel' | 'bias', trainable = true) =>
      specs.push({name, shape, kind, trainable});
  add('gate_weight', [H, E], 'kernel');
  // The correction bias is a load-balancing statistic updated outside training: never a gradient target.
  if (o.useCorrectionBias) add('gate_correction_bias', [E], 'bias', false);
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

/** The layer's weights as tensors, keyed by name; absent options leave their entries undefined. */
export type FusedMoEWeights = {gate_weight: tf.Tensor2D, up_gate_proj_weight: tf.Tensor3D, down_proj_weight: tf.Tensor3D} &
    Partial<Record<FusedMoEWeightName, tf.Tensor>>;

const INITIALIZER_FACTORIES: Record<string, (args?: never) => Initializer> =
    tfl.initializers as unknown as Record<string, (args?: never) => Initializer>;

/** Resolves an InitializerSpec to an Initializer (tfjs's own classes, looked up by name). */
export function resolveInitializer(option: string, spec: InitializerSpec | undefined, fallback: () => Initializer):
    Initializer {
  if (spec == null) return fallback();
  if (typeof spec === 'object' && typeof (spec as Initializer).apply === 'function' &&
      typeof (spec as Initializer).getClassName === 'function') {
    return spec as Initializer;
  }
  if (typeof spec === 'string') {
    const factory = INITIALIZER_FACTORIES[spec];
    if (typeof factory !== 'function') {
      throw optionError(option, 'an Initializer or the name of one of tf.initializers (e.g. \'randomNormal\')', spec);
    }
    return factory({} as never);
  }
  if (typeof spec === 'object' && typeof (spec as {className?: unknown}).className === 'string') {
    const {className, config} = spec as {className: string, config?: tf.serialization.ConfigDict};
    const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
    if (entry == null) throw optionError(option, 'a registered initializer class', className);
    const [cls, fromConfig] = entry;
    return fromConfig(cls, config ?? {}) as Initializer;
  }
  throw optionError(option, 'an Initializer, an initializer name, or {className, config}', spec);
}

export function serializeInitializer(init: Initializer): tf.serialization.ConfigDict {
  return {className: init.getClassName(), config: init.getConfig()};
}
