/**
 * The FusedMoE layer's 'cuda' backend: the whole forward (docs/semantics.md section 7) in one native call, with the
 * expert weights resident on the GPU in the compute dtype. Works under any host-memory tfjs backend (cpu,
 * tensorflow): x is read from the host, the output comes back as a new tensor.
 *
 * The layer's executor (cuda_layer_executor.ts) keeps one CudaFusedMoe per layer and calls apply(x, weightTensors);
 * the weights are uploaded on the first call and again whenever any weight tensor's data changed (tfjs gives a
 * variable a new dataId on assign/setWeights), and dispose() frees the GPU copy.
 */
import * as tf from '@tensorflow/tfjs-core';

import {MOE_COMPUTE_DTYPES, MoeComputeDtype, OPTION_TABLE} from '../../executor/layer_schema.js';
import {getCudaAddon} from './loader.js';

export type CudaComputeDtype = MoeComputeDtype;

/**
 * The layer's config fields the native forward needs, by the layer's option names (executor/layer_schema.ts), plus
 * the hidden size. `intermediateSize` is the older name of moeIntermediateSize (still accepted: the float64
 * reference's RefMoeConfig uses it).
 */
export interface CudaFusedMoeConfig {
  hidden: number;
  numExperts: number;
  topK: number;
  moeIntermediateSize?: number;
  /** @deprecated use moeIntermediateSize */
  intermediateSize?: number;
  topkMethod?: 'greedy' | 'noaux_tc';
  nGroup?: number;
  topkGroup?: number;
  routedScalingFactor?: number;
  renormalize?: boolean;
  useCorrectionBias?: boolean;
  latentSize?: number | null;
  withBias?: boolean;
  probInAdvance?: boolean;
  sharedExpertIntermediateSize?: number;
  sharedExpertGate?: boolean;
  /** Weights are converted once, at upload; activations follow; routing and accumulation stay float32. */
  computeDtype?: CudaComputeDtype;
}

/** Weight names (FastDeploy [in, out] layouts, float32), as in RefMoeWeights. */
export const CUDA_MOE_WEIGHT_NAMES = [
  'gateWeight', 'gateCorrectionBias', 'upGateProjWeight', 'upGateProjBias', 'downProjWeight', 'downProjBias',
  'fc1LatentProjWeight', 'fc2LatentProjWeight', 'sharedUpGateProjWeight', 'sharedDownProjWeight',
  'sharedExpertGateWeight',
] as const;
export type CudaMoeWeightName = typeof CUDA_MOE_WEIGHT_NAMES[number];
export type CudaMoeWeightArrays = Partial<Record<CudaMoeWeightName, Float32Array | null>>;
export type CudaMoeWeightTensors = Partial<Record<CudaMoeWeightName, tf.Tensor | null>>;

const NATIVE_KEYS = ['hidden', ...OPTION_TABLE.filter(o => o.native).map(o => o.name)];

/** The N-API config object: exactly the native keys of the option table (names shared with addon.cc). */
function nativeConfig(config: CudaFusedMoeConfig): Record<string, unknown> {
  const {intermediateSize, ...rest} = config;
  const c: Record<string, unknown> = {...rest, moeIntermediateSize: config.moeIntermediateSize ?? intermediateSize,
    latentSize: config.latentSize ?? 0, computeDtype: config.computeDtype ?? 'float32'};
  if (!MOE_COMPUTE_DTYPES.includes(c.computeDtype as MoeComputeDtype)) {
    throw new Error(`CudaFusedMoe: argument 'config.computeDtype' must be one of ${MOE_COMPUTE_DTYPES.join(', ')}, ` +
                    `got ${JSON.stringify(c.computeDtype)}`);
  }
  return Object.fromEntries(NATIVE_KEYS.filter(k => c[k] !== undefined).map(k => [k, c[k]]));
}

/** Native forward on host arrays: the lowest level, also used by the benchmarks. */
export class CudaMoeRunner {
  private handle: object | null;
  readonly hidden: number;

  constructor(config: CudaFusedMoeConfig, weights: CudaMoeWeightArrays) {
    const native = nativeConfig(config);
    this.handle = getCudaAddon().layerCreate(native, weights as Record<string, Float32Array | null>);
    this.hidden = config.hidden;
  }

  /** x: [T*H] float32 -> [T*H] float32. useGraph replays a CUDA graph captured per T (fewer launch gaps). */
  forward(x: Float32Array, numTokens: number, useGraph = true): Float32Array {
    return getCudaAddon().layerForward(this.live(), x, numTokens, useGraph);
  }

  /** Per-iteration kernel milliseconds (CUDA events) of the forward with x resident on the GPU. */
  benchmark(x: Float32Array, numTokens: number, options: {warmup?: number, iters?: number, useGraph?: boolean} = {}):
      Float32Array {
    return getCudaAddon().layerBenchmark(
        this.live(), x, numTokens, options.warmup ?? 5, options.iters ?? 20, options.useGraph ?? true);
  }

  /** Median kernel milliseconds of each stage of the forward (eager launches, events between stages). */
  profile(x: Float32Array, numTokens: number, iters = 10): Record<string, number> {
    return getCudaAddon().layerProfile(this.live(), x, numTokens, iters);
  }

  residentBytes(): number {
    return getCudaAddon().layerResidentBytes(this.live());
  }

  dispose(): void {
    if (this.handle != null) getCudaAddon().layerDispose(this.handle);
    this.handle = null;
  }

  private live(): object {
    if (this.handle == null) throw new Error('CudaMoeRunner: used after dispose()');
    return this.handle;
  }
}

/** The tensor-level wrapper the FusedMoE layer holds. */
export class CudaFusedMoe {
  private runner: CudaMoeRunner | null = null;
  private uploadedFrom: Map<CudaMoeWeightName, object> = new Map();
  private readonly config: CudaFusedMoeConfig;

  constructor(config: CudaFusedMoeConfig) {
    nativeConfig(config);  // fail early on a bad computeDtype
    this.config = {...config};
  }

  /** x [..., H] float32 -> the layer output, same shape. Uploads the weights first when they changed. */
  apply(x: tf.Tensor, weights: CudaMoeWeightTensors, options: {useGraph?: boolean} = {}): tf.Tensor {
    const H = this.config.hidden;
    if (!(x instanceof tf.Tensor) || x.dtype !== 'float32' || x.rank < 2 || x.shape[x.rank - 1] !== H) {
      const got = x instanceof tf.Tensor ? `a ${x.dtype} tensor of shape [${x.shape}]` : String(x);
      throw new Error(`CudaFusedMoe: argument 'x' must be a float32 tensor [..., ${H}], got ${got}`);
    }
    this.syncWeights(weights);
    const numTokens = x.size / H;
    const out = this.runner!.forward(x.dataSync() as Float32Array, numTokens, options.useGraph ?? true);
    return tf.tensor(out, x.shape, 'float32');
  }

  /** Drops the GPU copy of the weights (the next apply uploads again). */
  dispose(): void {
    this.runner?.dispose();
    this.runner = null;
    this.uploadedFrom.clear();
  }

  private syncWeights(weights: CudaMoeWeightTensors): void {
    const changed = this.runner == null ||
        CUDA_MOE_WEIGHT_NAMES.some(name => (weights[name]?.dataId ?? null) !== (this.uploadedFrom.get(name) ?? null));
    if (!changed) return;
    const arrays: CudaMoeWeightArrays = {};
    for (const name of CUDA_MOE_WEIGHT_NAMES) {
      const t = weights[name];
      if (t != null) arrays[name] = t.dataSync() as Float32Array;
    }
    const next = new CudaMoeRunner(this.config, arrays);  // built before the old one goes: a failure keeps it
    this.runner?.dispose();
    this.runner = next;
    this.uploadedFrom = new Map();
    for (const name of CUDA_MOE_WEIGHT_NAMES) {
      const t = weights[name];
      if (t != null) this.uploadedFrom.set(name, t.dataId);
    }
  }
}

/**
 * The CUDA kernels compute plain SwiGLU only: a clamped_swiglu call is refused before any GPU work (never run as
 * plain SwiGLU). Run it on the cpu, webgpu or composite path.
 */
export function rejectClampedSwiglu(op: string, attrs: {activation?: string}): void {
  if (attrs.activation != null && attrs.activation !== 'swiglu') {
    throw new Error(`${op}: activation '${attrs.activation}' is not implemented by the CUDA kernels (plain 'swiglu' ` +
        'only); run it on the cpu, webgpu or composite backend');
  }
}
