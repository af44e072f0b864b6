/**
 * The FusedMoE layer's 'cuda' backend: the whole forward (docs/semantics.md section 7) in one native call, with the
 * expert weights resident on the GPU in the compute dtype. Works under any host-memory tfjs backend (cpu,
 * tensorflow): x is read from the host, the output comes back as a new tensor.
 *
 * Host copies go through pinned staging buffers (threaded copies; pinned memory is copied directly), and
 * applyDevice() keeps the activations on the GPU between consecutive layers
 * (CudaActivation: one upload and one download for a stack of layers).
 *
 * The layer's executor (cuda_layer_executor.ts) keeps one CudaFusedMoe per layer and calls apply(x, weightTensors);
 * the weights are uploaded on the first call and again whenever any weight tensor's data changed (tfjs gives a
 * variable a new dataId on assign/setWeights), and dispose() frees the GPU copy.
 */
import * as tf from '@tensorflow/tfjs-core';

import {isQuantizedExpertWeights, QuantizedExpertWeights} from '../../executor/expert_weights.js';
import type {DeviceActivation} from '../../executor/layer_executor.js';
import {MOE_COMPUTE_DTYPES, MoeComputeDtype, OPTION_TABLE, RoutingWeightOn, SwigluActivation, TopkMethod} from
  '../../executor/layer_schema.js';
import {dequantizeExpertWeightsImpl} from '../cpu/dequantize_expert_weights_impl.js';
import {describeValue} from '../describe_value.js';
import {MOE_CUDA_SPLIT_FORWARD, syncCudaTuning} from './flags_cuda.js';
import {getCudaAddon, pooledOutputMarker} from './loader.js';

/** The CUDA GEMMs' operand type: exact 'float32' FMA, or 'bfloat16' / 'float16' tensor cores, float32 accumulation. */
export type CudaComputeDtype = MoeComputeDtype;

/**
 * The layer's config fields the native forward needs, by the layer's option names (executor/layer_schema.ts), plus
 * the hidden size. `intermediateSize` is the older name of moeIntermediateSize (still accepted: the float64
 * reference's RefMoeConfig uses it).
 */
export interface CudaFusedMoeConfig {
  hidden: number;
  numExperts: number;
  /** Identity experts after the E real ones (the router, its biases and gateWeight cover E + Z). */
  zeroExperts?: number;
  topK: number;
  moeIntermediateSize?: number;
  /** @deprecated use moeIntermediateSize */
  intermediateSize?: number;
  topkMethod?: TopkMethod | 'sparsemixer';
  nGroup?: number;
  topkGroup?: number;
  routedScalingFactor?: number;
  renormalize?: boolean;
  /** null / absent: the method's own rule (softmax: max(sum, 1e-12); noaux_tc: sum + 1e-20). */
  renormalizeEpsilon?: number | null;
  sparsemixerEpsilon?: number;
  useCorrectionBias?: boolean;
  /** gateBias [E+Z] added to the router logits. */
  routerBias?: boolean;
  latentSize?: number | null;
  withBias?: boolean;
  probInAdvance?: boolean;
  routingWeightOn?: RoutingWeightOn;
  activation?: SwigluActivation;
  swigluAlpha?: number;
  swigluLimit?: number;
  sharedExpertIntermediateSize?: number;
  sharedExpertGate?: boolean;
  /** Weights are converted once, at upload; activations follow; routing and accumulation stay float32. */
  computeDtype?: CudaComputeDtype;
}

/** Weight names (FastDeploy [in, out] layouts, float32), as in RefMoeWeights. */
export const CUDA_MOE_WEIGHT_NAMES = [
  'gateWeight', 'gateBias', 'gateCorrectionBias', 'upGateProjWeight', 'upGateProjBias', 'downProjWeight', 'downProjBias',
  'fc1LatentProjWeight', 'fc2LatentProjWeight', 'sharedUpGateProjWeight', 'sharedDownProjWeight',
  'sharedExpertGateWeight',
] as const;
export type CudaMoeWeightName = typeof CUDA_MOE_WEIGHT_NAMES[number];
/**
 * An int4 expert weight's host arrays in the [E, K, N] layout of docs/formats.md (codes int32 [E, ceil(K/8), N],
 * scales float32 [E, G, N], zero points float32 or null): the native layer keeps them for its decode GEMMs, which
 * dequantize in the mainloop (W4A16), next to the dequantized copy the tensor-core paths read.
 */
export interface CudaInt4Arrays {
  codes: Int32Array;
  scales: Float32Array;
  zeroPoints: Float32Array | null;
  groupSize: number;
}
/**
 * An int8 expert weight's host arrays in the [E, K, N] layout of docs/formats.md (codes int32 [E, ceil(K/4), N], four
 * two's complement codes per word; scales float32 [E, G, N]): the native layer keeps them for its tensor-core GEMMs at
 * decode and mid sizes, which dequantize in the mainloop (W8A16), next to the dequantized copy the prefill tiles read.
 */
export interface CudaInt8Arrays {
  codes: Int32Array;
  scales: Float32Array;
  groupSize: number;
}
/**
 * An mxfp4 expert weight's host arrays in the [E, K, N] layout of docs/formats.md (E2M1 codes int32 [E, ceil(K/8), N],
 * E8M0 block scales int32 [E, ceil(K/32), ceil(N/4)], four bytes per word): kept as the int8 arrays are.
 */
export interface CudaMxfp4Arrays {
  codes: Int32Array;
  scales: Int32Array;
}
export type CudaMoeWeightArrays = Partial<Record<CudaMoeWeightName, Float32Array | null>> &
    {upGateProjInt4?: CudaInt4Arrays | null, downProjInt4?: CudaInt4Arrays | null,
      upGateProjInt8?: CudaInt8Arrays | null, downProjInt8?: CudaInt8Arrays | null,
      upGateProjMxfp4?: CudaMxfp4Arrays | null, downProjMxfp4?: CudaMxfp4Arrays | null};
/** Expert weights may be packed (docs/formats.md): they are decoded to float32 once, at upload. */
export type CudaMoeWeightTensors = Partial<Record<CudaMoeWeightName, tf.Tensor | QuantizedExpertWeights | null>>;

/** The tensor whose data identifies a weight's upload (a packed weight's codes; its scales change with them). */
function uploadKey(w: tf.Tensor | QuantizedExpertWeights | null | undefined): object | null {
  return w == null ? null : isQuantizedExpertWeights(w) ? w.values.dataId : w.dataId;
}

/** The float32 host data of a weight; a packed one decoded exactly as dequantizeExpertWeights defines it. */
function hostWeight(w: tf.Tensor | QuantizedExpertWeights): Float32Array {
  if (!isQuantizedExpertWeights(w)) return w.dataSync() as Float32Array;
  const [numExperts, rows, cols] = w.shape;
  const [depth, width] = w.transposed ? [cols, rows] : [rows, cols];
  if (w.transposed) throw new Error('CudaFusedMoe: packed expert weights must be in the layer\'s [E,K,N] layout');
  const layout = {format: w.format, numExperts, depth, width, transposed: false, groupSize: w.groupSize,
                  zeroPoint: w.zeroPoint};
  if (w.format === 'float32') return w.values.dataSync() as Float32Array;
  return dequantizeExpertWeightsImpl(layout, {
    values: w.values.dataSync() as Int32Array,
    scales: w.scales == null ? null : w.scales.dataSync() as Float32Array | Int32Array,
    zeroPoints: w.zeroPoints == null ? null : w.zeroPoints.dataSync() as Float32Array,
  });
}

/**
 * A Float32Array of n elements over memory nobody has written (N-API's napi_create_buffer zero-fills): the native
 * forward faults its pages in on helper threads while the GPU runs, then copies y in. Buffer is Node's; without
 * it, a plain (zeroed) array.
 */
function uninitializedFloat32(n: number): Float32Array {
  const B = (globalThis as {Buffer?: {allocUnsafeSlow(size: number): Uint8Array}}).Buffer;
  if (B == null || n === 0) return new Float32Array(n);
  const bytes = B.allocUnsafeSlow(n * 4);
  return new Float32Array(bytes.buffer, bytes.byteOffset, n);
}

/**
 * With the output pool on (opt-in, TFJS_MOE_CUDA_OUTPUT_POOL_MIB), outputs of at least this many bytes come from
 * the addon's pool of pinned arrays (addon_napi.h OutputPool): the GPU writes them directly and their memory is
 * reused once they are collected. Smaller ones, and all without the pool, are new arrays.
 * TFJS_MOE_CUDA_OUTPUT_POOL_MIN_KIB (A/B, read per call, at least 64) moves the threshold.
 */
const POOLED_OUTPUT_MIN_BYTES = 1 << 20;
const NEVER_POOLED_BELOW_BYTES = 64 << 10;

/**
 * The output array argument for a native call: null (the addon takes a pooled array) when the output is large and
 * pooling is safe here, else a new uninitialized array.
 */
function outputArgument(n: number): Float32Array | null {
  const bytes = n * 4;
  // No environment read on small calls, one without the pool.
  if (bytes < NEVER_POOLED_BELOW_BYTES || pooledOutputMarker() == null) return uninitializedFloat32(n);
  const kib = (globalThis as {process?: {env?: Record<string, string | undefined>}}).process?.env
      ?.TFJS_MOE_CUDA_OUTPUT_POOL_MIN_KIB;
  const min = kib ? Math.max(NEVER_POOLED_BELOW_BYTES, Number(kib) * 1024) : POOLED_OUTPUT_MIN_BYTES;
  return bytes >= min ? null : uninitializedFloat32(n);
}

/** Marks an array the addon handed out over pooled memory (see pooledOutputMarker). */
function markPooled(a: Float32Array): Float32Array {
  pooledOutputMarker()?.(a.buffer as ArrayBuffer);
  return a;
}

/** The int4 arrays of a packed expert weight in the layer's [E,K,N] layout, or null for any other weight. */
function int4Arrays(w: tf.Tensor | QuantizedExpertWeights | null | undefined): CudaInt4Arrays | null {
  if (w == null || !isQuantizedExpertWeights(w) || w.format !== 'int4' || w.transposed || w.scales == null) return null;
  return {codes: w.values.dataSync() as Int32Array, scales: w.scales.dataSync() as Float32Array,
    zeroPoints: w.zeroPoints == null ? null : w.zeroPoints.dataSync() as Float32Array, groupSize: w.groupSize};
}

/** The int8 arrays of a packed expert weight in the layer's [E,K,N] layout, or null for any other weight. */
function int8Arrays(w: tf.Tensor | QuantizedExpertWeights | null | undefined): CudaInt8Arrays | null {
  if (w == null || !isQuantizedExpertWeights(w) || w.format !== 'int8' || w.transposed || w.scales == null) return null;
  return {codes: w.values.dataSync() as Int32Array, scales: w.scales.dataSync() as Float32Array, groupSize: w.groupSize};
}

/** The mxfp4 arrays of a packed expert weight in the layer's [E,K,N] layout, or null for any other weight. */
function mxfp4Arrays(w: tf.Tensor | QuantizedExpertWeights | null | undefined): CudaMxfp4Arrays | null {
  if (w == null || !isQuantizedExpertWeights(w) || w.format !== 'mxfp4' || w.transposed || w.scales == null) return null;
  return {codes: w.values.dataSync() as Int32Array, scales: w.scales.dataSync() as Int32Array};
}

const NATIVE_KEYS = ['hidden', ...OPTION_TABLE.filter(o => o.native).map(o => o.name)];

/** The N-API config object: exactly the native keys of the option table (names shared with addon.cc). */
function nativeConfig(config: CudaFusedMoeConfig): Record<string, unknown> {
  const {intermediateSize, ...rest} = config;
  const c: Record<string, unknown> = {...rest, moeIntermediateSize: config.moeIntermediateSize ?? intermediateSize,
    latentSize: config.latentSize ?? 0, computeDtype: config.computeDtype ?? 'float32'};
  if (!MOE_COMPUTE_DTYPES.includes(c.computeDtype as MoeComputeDtype)) {
    throw new Error(`CudaFusedMoe: argument 'config.computeDtype' must be one of ${MOE_COMPUTE_DTYPES.join(', ')}, ` +
                    `got ${describeValue(c.computeDtype)}`);
  }
  return Object.fromEntries(NATIVE_KEYS.filter(k => c[k] !== undefined).map(k => [k, c[k]]));
}

/**
 * An activation [rows, cols] float32 resident on the GPU: what applyDevice/forwardDevice take and return, so that
 * consecutive layers pass it without a host round trip. Work on it is ordered on the addon's one stream; read()
 * waits for it. dispose() frees the GPU memory (stream-ordered; garbage collection frees it otherwise).
 */
export class CudaActivation implements DeviceActivation {
  private handle: object | null;

  private constructor(handle: object, readonly shape: [number, number]) {
    this.handle = handle;
  }

  /** Uploads `rows * cols` float32 values, row-major, as a [rows, cols] activation on the GPU. */
  static fromHost(x: Float32Array, rows: number, cols: number): CudaActivation {
    return new CudaActivation(getCudaAddon().activationUpload(x, rows, cols), [rows, cols]);
  }

  /** Uploads a float32 tensor [..., cols] as [size / cols, cols] (reads the tensor's data: host backends only). */
  static fromTensor(x: tf.Tensor): CudaActivation {
    if (!(x instanceof tf.Tensor) || x.dtype !== 'float32' || x.rank < 1) {
      const got = x instanceof tf.Tensor ? `a ${x.dtype} tensor of shape [${x.shape}]` : String(x);
      throw new Error(`CudaActivation.fromTensor: argument 'x' must be a float32 tensor, got ${got}`);
    }
    const cols = x.shape[x.rank - 1];
    return CudaActivation.fromHost(x.dataSync() as Float32Array, cols === 0 ? 0 : x.size / cols, cols);
  }

  /** @internal wraps a handle the addon returned */
  static wrap(handle: object, shape: [number, number]): CudaActivation {
    return new CudaActivation(handle, shape);
  }

  /** Downloads the values (waits for the work that writes them). */
  read(): Float32Array {
    const out = outputArgument(this.shape[0] * this.shape[1]);
    const y = getCudaAddon().activationDownload(this.live(), out);
    return out == null ? markPooled(y) : y;
  }

  /** read() as a new tensor of `shape` (default [rows, cols]). */
  toTensor(shape: number[] = this.shape): tf.Tensor {
    return tf.tensor(this.read(), shape, 'float32');
  }

  get disposed(): boolean {
    return this.handle == null;
  }

  /** Frees the GPU memory now (idempotent; stream-ordered after the work that reads it). */
  dispose(): void {
    if (this.handle != null) getCudaAddon().activationDispose(this.handle);
    this.handle = null;
  }

  /** @internal */
  live(): object {
    if (this.handle == null) throw new Error('CudaActivation: used after dispose()');
    return this.handle;
  }
}

/**
 * How a host forward's output reaches the host: 'staged' (the default: downloaded into pinned staging, then copied
 * by several threads into a new array; with TFJS_MOE_CUDA_OUTPUT_POOL_MIB set, an output of 1 MiB or more is a
 * pooled pinned array the GPU writes directly, reused by a later call once the array is collected, and marked
 * untransferable), 'pinned' (a new array over a pinned block, downloaded into directly; the
 * block returns to a pool only when the array is garbage collected, so a synchronous loop page-locks new memory
 * each call), 'pageable' (the path from before pinned staging, for x too; benchmark A/B only).
 */
export type CudaHostOutput = 'staged' | 'pinned' | 'pageable';

/** What a forward returns: the output and, when asked for, the routing ids int32 [T*k] it used. */
export interface CudaForwardResult<Out> {
  output: Out;
  topkIds?: Int32Array;
}

/**
 * Host milliseconds of the last host forward (benchmarks): until x's copy was enqueued (uploadHostMs), then until y
 * was in its array (waitMs, which holds launchMs, the graph launch); allocMs the native output arrays; prefaultMs
 * the output array's page faults taken on helper threads meanwhile, prefaultWaitMs how long the download waited
 * for them. With TFJS_MOE_CUDA_TRACE=1 the GPU milliseconds of the upload, kernels and download (else -1).
 */
export interface CudaForwardTimings {
  uploadHostMs: number;
  waitMs: number;
  copyOutMs: number;
  allocMs: number;
  launchMs: number;
  prefaultMs: number;
  prefaultWaitMs: number;
  /** TFJS_MOE_CUDA_REGISTER (A/B): page-locking the caller's arrays for the call. */
  registerMs: number;
  gpuUploadMs: number;
  gpuKernelMs: number;
  gpuDownloadMs: number;
}

/** Native forward on host arrays: the lowest level, also used by the benchmarks. */
export class CudaMoeRunner {
  private handle: object | null;
  readonly hidden: number;

  constructor(config: CudaFusedMoeConfig, weights: CudaMoeWeightArrays) {
    const native = nativeConfig(config);
    this.handle = getCudaAddon().layerCreate(native, weights);
    this.hidden = config.hidden;
  }

  /** x: [T*H] float32 -> [T*H] float32. useGraph replays a CUDA graph captured per T (fewer launch gaps). */
  forward(x: Float32Array, numTokens: number, useGraph = true): Float32Array {
    return this.forwardWithRouting(x, numTokens, {useGraph}).output;
  }

  /**
   * forward() that can also return the routing ids [T*k] (wantIds); output: see CudaHostOutput.
   */
  forwardWithRouting(x: Float32Array, numTokens: number,
                     options: {useGraph?: boolean, wantIds?: boolean, output?: CudaHostOutput} = {}):
      CudaForwardResult<Float32Array> {
    const addon = getCudaAddon();
    syncCudaTuning(addon);
    const output = options.output ?? 'staged';
    const r = addon.layerForward(this.live(), x, numTokens, options.useGraph ?? true, options.wantIds ?? false, output,
                                 output === 'staged' ? outputArgument(numTokens * this.hidden) : null);
    if (r.pooled) markPooled(r.output);
    return r;
  }

  /**
   * forwardWithRouting in two halves, so that host work overlaps the GPU: the returned arrays are not written until
   * forwardFinish() returns (read or write them only after it). The forward is enqueued and x may be reused on
   * return. Another call on this runner finishes an open forward first. null when the addon predates the split
   * (then call forwardWithRouting).
   */
  forwardStart(x: Float32Array, numTokens: number,
               options: {useGraph?: boolean, wantIds?: boolean, output?: CudaHostOutput} = {}):
      CudaForwardResult<Float32Array> | null {
    const addon = getCudaAddon();
    if (addon.layerForwardStart == null) return null;
    syncCudaTuning(addon);
    const output = options.output ?? 'staged';
    const r = addon.layerForwardStart(this.live(), x, numTokens, options.useGraph ?? true, options.wantIds ?? false,
                                      output, output === 'staged' ? outputArgument(numTokens * this.hidden) : null);
    if (r.pooled) markPooled(r.output);
    return r;
  }

  /** Waits for the forward forwardStart began and fills its arrays (nothing when none is open). */
  forwardFinish(): void {
    getCudaAddon().layerForwardFinish!(this.live());
  }

  /** The forward on a device-resident activation [T, H] -> a new one (enqueued; not waited for unless wantIds). */
  forwardDevice(x: CudaActivation, options: {useGraph?: boolean, wantIds?: boolean} = {}):
      CudaForwardResult<CudaActivation> {
    if (!(x instanceof CudaActivation)) throw new Error(`CudaMoeRunner.forwardDevice: argument 'x' must be a CudaActivation, got ${String(x)}`);
    if (x.shape[1] !== this.hidden) {
      throw new Error(`CudaMoeRunner.forwardDevice: argument 'x' must be [T, ${this.hidden}], got [${x.shape}]`);
    }
    const addon = getCudaAddon();
    syncCudaTuning(addon);
    const r = addon.layerForwardDevice(this.live(), x.live(), options.useGraph ?? true, options.wantIds ?? false);
    return {output: CudaActivation.wrap(r.output, [x.shape[0], x.shape[1]]), topkIds: r.topkIds};
  }

  /** The host<->device link: median GB/s of pinned and pageable copies of `bytes` each way (benchmarks). */
  static hostCopyBandwidth(bytes: number, iters = 10):
      {pinnedH2D: number, pinnedD2H: number, pageableH2D: number, pageableD2H: number} {
    return getCudaAddon().hostCopyBandwidth(bytes, iters);
  }

  /** The pool of large output arrays on this thread: blocks allocated, reused, requests declined, bytes held. */
  static outputPoolStats(): {allocated: number, reused: number, declined: number, heldBytes: number} {
    return getCudaAddon().outputPoolStats();
  }

  /** Host milliseconds of the last host forward: until x's copy was enqueued, then until y was on the host. */
  lastTimings(): CudaForwardTimings {
    return getCudaAddon().layerLastTimings(this.live());
  }

  /** Per-iteration kernel milliseconds (CUDA events) of the forward with x resident on the GPU. */
  benchmark(x: Float32Array, numTokens: number, options: {warmup?: number, iters?: number, useGraph?: boolean} = {}):
      Float32Array {
    const addon = getCudaAddon();
    syncCudaTuning(addon);
    return addon.layerBenchmark(
        this.live(), x, numTokens, options.warmup ?? 5, options.iters ?? 20, options.useGraph ?? true);
  }

  /** Median kernel milliseconds of each stage of the forward (eager launches, events between stages). */
  profile(x: Float32Array, numTokens: number, iters = 10): Record<string, number> {
    const addon = getCudaAddon();
    syncCudaTuning(addon);
    return addon.layerProfile(this.live(), x, numTokens, iters);
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
    return this.applyWithRouting(x, weights, options).output;
  }

  /** apply() that can also return the routing ids the forward used (wantIds: int32 [T, k], T = x.size / H). */
  applyWithRouting(x: tf.Tensor, weights: CudaMoeWeightTensors, options: {useGraph?: boolean, wantIds?: boolean} = {}):
      {output: tf.Tensor, topkIds?: tf.Tensor2D} {
    const H = this.config.hidden;
    if (!(x instanceof tf.Tensor) || x.dtype !== 'float32' || x.rank < 2 || x.shape[x.rank - 1] !== H) {
      const got = x instanceof tf.Tensor ? `a ${x.dtype} tensor of shape [${x.shape}]` : String(x);
      throw new Error(`CudaFusedMoe: argument 'x' must be a float32 tensor [..., ${H}], got ${got}`);
    }
    this.syncWeights(weights);
    const numTokens = x.size / H;
    const runner = this.runner!;
    const data = x.dataSync() as Float32Array;
    // Split (MOE_CUDA_SPLIT_FORWARD, default): the tensors are made over the arrays while the GPU runs (tfjs's cpu
    // backend keeps a float32 array without copying it), and returned only once the finish has filled them. Only on
    // the cpu backend (wasm copies the values into its heap at tensor(), webgpu may upload them early), and not under
    // tfjs's DEBUG flag, whose tensor() reads the values (they are not there yet).
    const env = tf.env();
    const started = env.getBool(MOE_CUDA_SPLIT_FORWARD) && !env.getBool('DEBUG') && tf.getBackend() === 'cpu' ?
        runner.forwardStart(data, numTokens, options) : null;
    const r = started ?? runner.forwardWithRouting(data, numTokens, options);
    let made: {output: tf.Tensor, topkIds?: tf.Tensor2D} | undefined;
    try {
      const output = tf.tensor(r.output, x.shape, 'float32');
      made = {output};
      if (r.topkIds != null) made.topkIds = tf.tensor2d(r.topkIds, [numTokens, this.config.topK], 'int32');
      if (started != null) runner.forwardFinish();
    } catch (e) {
      if (started != null) runner.forwardFinish();  // no-op after a finish that threw; else the GPU completes first
      if (made != null) tf.dispose([made.output, made.topkIds].filter(t => t != null) as tf.Tensor[]);
      throw e;
    }
    return made;
  }

  /**
   * The forward with the activation on the GPU: x (a CudaActivation [T, H], e.g. the previous layer's output, or
   * a float32 tensor [..., H], uploaded) -> a new CudaActivation [T, H] (the caller disposes it, or passes it on).
   */
  applyDevice(x: tf.Tensor | CudaActivation, weights: CudaMoeWeightTensors, options: {useGraph?: boolean} = {}):
      CudaActivation {
    const H = this.config.hidden;
    if (x instanceof tf.Tensor) {
      if (x.dtype !== 'float32' || x.rank < 2 || x.shape[x.rank - 1] !== H) {
        throw new Error(`CudaFusedMoe.applyDevice: argument 'x' must be a float32 tensor [..., ${H}] or a ` +
                        `CudaActivation, got a ${x.dtype} tensor of shape [${x.shape}]`);
      }
      const up = CudaActivation.fromTensor(x);
      try {
        return this.applyDevice(up, weights, options);
      } finally {
        up.dispose();  // stream-ordered: freed after the forward that reads it
      }
    }
    if (!(x instanceof CudaActivation) || x.shape[1] !== H) {
      const got = x instanceof CudaActivation ? `[${x.shape}]` : String(x);
      throw new Error(`CudaFusedMoe.applyDevice: argument 'x' must be a CudaActivation [T, ${H}], got ${got}`);
    }
    this.syncWeights(weights);
    return this.runner!.forwardDevice(x, options).output;
  }

  /** Drops the GPU copy of the weights (the next apply uploads again). */
  dispose(): void {
    this.runner?.dispose();
    this.runner = null;
    this.uploadedFrom.clear();
  }

  private syncWeights(weights: CudaMoeWeightTensors): void {
    const changed = this.runner == null ||
        CUDA_MOE_WEIGHT_NAMES.some(name => uploadKey(weights[name]) !== (this.uploadedFrom.get(name) ?? null));
    if (!changed) return;
    const arrays: CudaMoeWeightArrays = {};
    for (const name of CUDA_MOE_WEIGHT_NAMES) {
      const t = weights[name];
      if (t != null) arrays[name] = hostWeight(t);
    }
    if ((this.config.computeDtype ?? 'float32') !== 'float32') {
      arrays.upGateProjInt4 = int4Arrays(weights.upGateProjWeight);
      arrays.downProjInt4 = int4Arrays(weights.downProjWeight);
      arrays.upGateProjInt8 = int8Arrays(weights.upGateProjWeight);
      arrays.downProjInt8 = int8Arrays(weights.downProjWeight);
      arrays.upGateProjMxfp4 = mxfp4Arrays(weights.upGateProjWeight);
      arrays.downProjMxfp4 = mxfp4Arrays(weights.downProjWeight);
    }
    const next = new CudaMoeRunner(this.config, arrays);  // built before the old one goes: a failure keeps it
    this.runner?.dispose();
    this.runner = next;
    this.uploadedFrom = new Map();
    for (const name of CUDA_MOE_WEIGHT_NAMES) {
      const t = weights[name];
      if (t != null) this.uploadedFrom.set(name, uploadKey(t)!);
    }
  }
}
