/**
 * The whole-layer FusedMoE forward for decode on webgpu: four programs (decode_programs.ts) encoded directly on
 * the tfjs backend's device and command encoder, so a forward costs four dispatches and a handful of JavaScript
 * calls instead of a dozen tfjs ops (each with engine bookkeeping, a uniform buffer and a bind group).
 *
 * - Input and output are ordinary tfjs tensors: x's buffer is read where tfjs keeps it, the output is a fresh
 *   tfjs tensor whose buffer the last program writes. Nothing is read back to JS.
 * - Per layer (the calling layer, `owner`) and T, a plan keeps the intermediate buffers (`work`, `route`, `act`)
 *   and the bind groups of the weights; only the {x, output} bind group (group 1) is made per call. A plan is
 *   rebuilt when a weight's GPU buffer changes (a variable write gives it a new one). Pipelines are shared by
 *   every layer with the same shapes. Everything baked into a shader is in its key; there are no uniforms.
 * - Intermediate buffers are reused across calls: the queue runs a layer's forwards in order, and WebGPU orders
 *   the dispatches of a pass that touch the same storage buffer.
 * - The path runs where it is correct and measured to be faster: webgpu active, our kernels not bypassed, no
 *   gradient tape, T <= the decode limit (setWebGPUDecodeMaxTokens), and the options and shapes listed in
 *   decodeUnsupportedReason; anything else returns null and the caller runs the op chain.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {DataId, Tensor, Tensor2D, TensorInfo} from '@tensorflow/tfjs-core';

import {registerKernelPathLayerForward} from '../../../executor/layer_executor.js';
import {isQuantizedExpertWeights} from '../../../executor/expert_weights.js';
import type {FusedMoEOptions, FusedMoEWeights} from '../../../executor/layer_schema.js';
import {maxStorageBindingBytes} from '../expert_ranges.js';
import {MOE_WEBGPU_DECODE_MAX_TOKENS} from '../flags_webgpu.js';
import {DecodeShape, DecodeTiles, decodeLayout, downBindings, downCode, downDispatch, gemmSharedBytes, routeCode,
  routerDispatch, routerLogitsCode, routeSharedBytes, upGateBindings, upGateCode, upGateDispatch}
  from './decode_programs.js';

// WebGPU objects, typed structurally (this package's tsconfig carries no WebGPU type declarations).
/* eslint-disable @typescript-eslint/no-explicit-any */
type GPUBufferLike = any;
type GPUBindGroupLike = any;
type GPUPipelineLike = any;
type GPULayoutLike = any;
interface GPUDeviceLike {
  limits: {maxComputeWorkgroupStorageSize: number, maxStorageBufferBindingSize: number,
    maxComputeWorkgroupsPerDimension: number};
  createBuffer(d: {size: number, usage: number}): GPUBufferLike;
  createBindGroup(d: unknown): GPUBindGroupLike;
  createBindGroupLayout(d: unknown): GPULayoutLike;
  createPipelineLayout(d: unknown): GPULayoutLike;
  createShaderModule(d: {code: string}): unknown;
  createComputePipeline(d: unknown): GPUPipelineLike;
  createQuerySet(d: unknown): any;
  createCommandEncoder(): any;
  queue: {submit(buffers: unknown[]): void};
}
interface PassLike {
  setPipeline(p: GPUPipelineLike): void;
  setBindGroup(i: number, g: GPUBindGroupLike): void;
  dispatchWorkgroups(x: number): void;
  end(): void;
}
/** The parts of tfjs-backend-webgpu's WebGPUBackend (4.22) this path touches. */
interface WebGPUBackendInternals {
  device: GPUDeviceLike;
  commandEncoder: {beginComputePass(d?: unknown): PassLike} | null;
  computePassEncoder: PassLike | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<DataId>;
  tensorMap: {get(id: DataId): {resource: GPUBufferLike}};
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  uploadToGPU(id: DataId): void;
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo;
}

const STORAGE = 0x80, COPY_SRC = 0x04, COPY_DST = 0x08, QUERY_RESOLVE = 0x200, MAP_READ = 0x01;

/** The most tokens the programs are written for (the crossover itself is the MOE_WEBGPU_DECODE_MAX_TOKENS flag). */
export const DECODE_TOKEN_CAP = 32;
let tilesOverride: DecodeTiles | null = null;

/** Sets the MOE_WEBGPU_DECODE_MAX_TOKENS flag: the largest T that takes the decode path (0 turns it off). */
export function setWebGPUDecodeMaxTokens(n: number): void {
  if (!Number.isInteger(n) || n < 0 || n > DECODE_TOKEN_CAP) {
    throw new Error(`setWebGPUDecodeMaxTokens: argument 'n' must be an integer in [0, ${DECODE_TOKEN_CAP}], got ${n}`);
  }
  tf.env().set(MOE_WEBGPU_DECODE_MAX_TOKENS, n);
}

/** The largest token count that takes the decode path now (the flag, clamped to [0, DECODE_TOKEN_CAP]). */
export function webgpuDecodeMaxTokens(): number {
  return Math.max(0, Math.min(DECODE_TOKEN_CAP, Math.floor(tf.env().getNumber(MOE_WEBGPU_DECODE_MAX_TOKENS))));
}

/** Forces the launch shapes (benchmarks compare them); null restores the default choice. */
export function setWebGPUDecodeTiles(tiles: DecodeTiles | null): void {
  if (tiles != null) {
    for (const [nv, ks, who] of [[tiles.upNv, tiles.upKs, 'up'], [tiles.downNv, tiles.downKs, 'down']] as const) {
      const pairs = who === 'up' ? 2 : 1;  // up tiles hold gate and up columns in pairs
      if (!(nv * ks === 256 && Number.isInteger(Math.log2(ks)) && nv >= pairs && nv % pairs === 0)) {
        throw new Error(`setWebGPUDecodeTiles: ${who}Nv * ${who}Ks must be 256 with ${who}Ks a power of two, got ` +
            `${nv} x ${ks}`);
      }
    }
  }
  tilesOverride = tiles;
}

export function chooseDecodeTiles(T: number): DecodeTiles {
  if (tilesOverride != null) return tilesOverride;
  // Narrow column tiles at T = 1 put more workgroups on the GPU (8 active experts only); wider ones reuse each
  // token row over more columns when T grows.
  return T <= 2 ? {upNv: 8, upKs: 32, downNv: 4, downKs: 64} : {upNv: 16, upKs: 16, downNv: 8, downKs: 32};
}

function sameTiles(a: DecodeTiles, b: DecodeTiles): boolean {
  return a.upNv === b.upNv && a.upKs === b.upKs && a.downNv === b.downNv && a.downKs === b.downKs;
}

/** Why this call cannot take the decode path (null: it can). Cheap: runs on every forward. */
export function decodeUnsupportedReason(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions): string | null {
  const [T, H] = x.shape;
  const maxTokens = webgpuDecodeMaxTokens();
  if (T < 1 || T > maxTokens) return `T = ${T} outside [1, ${maxTokens}]`;
  if (o.latentSize != null) return 'latent projections (the op chain runs them)';
  if (isQuantizedExpertWeights(w.up_gate_proj_weight) || isQuantizedExpertWeights(w.down_proj_weight)) {
    return 'packed expert weights (the op chain runs them)';
  }
  // The routing options of docs/semantics.md section 11 run on the op chain (the decode route program has none).
  if (o.topkMethod === 'group_limited_greedy') return 'group_limited_greedy routing (the op chain runs it)';
  if (o.topkMethod === 'sparsemixer') return 'sparsemixer routing (the op chain runs it)';
  if (o.topkMethod !== 'noaux_tc' && o.routedScalingFactor !== 1) return 'routedScalingFactor on softmax routing';
  if (o.renormalizeEpsilon !== null) return 'renormalizeEpsilon';
  if (o.zeroExperts > 0) return 'zero experts';
  if (o.routerBias) return 'a router bias';
  if (o.activation !== 'swiglu') return `activation '${o.activation}'`;
  if (o.routingWeightOn === 'input') return 'routingWeightOn \'input\'';
  if (o.numExperts > 1024) return 'more than 1024 experts';
  const I = o.moeIntermediateSize, S = o.sharedExpertIntermediateSize;
  if (H % 4 !== 0 || I % 4 !== 0 || S % 4 !== 0) return 'H, I or the shared width not a multiple of 4';
  if (T * o.topK >= 65536) return 'too many rows';
  const device = (tf.backend() as unknown as WebGPUBackendInternals).device;
  const limit = maxStorageBindingBytes();
  for (const name of ['up_gate_proj_weight', 'down_proj_weight', 'shared_up_gate_proj_weight'] as const) {
    const t = w[name] as Tensor | undefined;
    if (t != null && t.size * 4 > limit) return `${name} exceeds one storage binding`;
  }
  const shape = decodeShape(T, H, o);
  const storage = device.limits.maxComputeWorkgroupStorageSize;
  if (routeSharedBytes(shape) > storage || gemmSharedBytes(shape, chooseDecodeTiles(T)) > storage) {
    return 'more workgroup storage than the device has';
  }
  return null;
}

function decodeShape(T: number, H: number, o: FusedMoEOptions): DecodeShape {
  return {T, H, E: o.numExperts, K: o.topK, I: o.moeIntermediateSize, S: o.sharedExpertIntermediateSize,
    sharedGate: o.sharedExpertGate, method: o.topkMethod === 'noaux_tc' ? 'grouped' : 'softmax',
    hasCorrectionBias: o.useCorrectionBias, renormalize: o.renormalize, nGroup: o.nGroup, topkGroup: o.topkGroup,
    routedScalingFactor: o.routedScalingFactor, withBias: o.withBias, probInAdvance: o.probInAdvance};
}

type BindingKind = 'read' | 'rw';
interface CachedPipeline {
  pipeline: GPUPipelineLike;
  layout0: GPULayoutLike;
}
interface DeviceCache {
  pipelines: Map<string, CachedPipeline>;
  /** group(1): x (read-only), output (read-write); shared by all four programs. */
  callLayout: GPULayoutLike;
}
const deviceCaches = new WeakMap<GPUDeviceLike, DeviceCache>();

function deviceCache(device: GPUDeviceLike): DeviceCache {
  let c = deviceCaches.get(device);
  if (c == null) {
    const callLayout = device.createBindGroupLayout({entries: [
      {binding: 0, visibility: 4, buffer: {type: 'read-only-storage'}},
      {binding: 1, visibility: 4, buffer: {type: 'storage'}},
    ]});
    c = {pipelines: new Map(), callLayout};
    deviceCaches.set(device, c);
  }
  return c;
}

function pipelineFor(device: GPUDeviceLike, key: string, code: () => string, kinds: BindingKind[]): CachedPipeline {
  const cache = deviceCache(device);
  let p = cache.pipelines.get(key);
  if (p == null) {
    const layout0 = device.createBindGroupLayout({entries: kinds.map((k, i) => (
      {binding: i, visibility: 4, buffer: {type: k === 'read' ? 'read-only-storage' : 'storage'}}))});
    const pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({bindGroupLayouts: [layout0, cache.callLayout]}),
      compute: {module: device.createShaderModule({code: code()}), entryPoint: 'main'},
    });
    p = {pipeline, layout0};
    cache.pipelines.set(key, p);
  }
  return p;
}

interface Program {
  name: string;
  pipeline: GPUPipelineLike;
  bindGroup: GPUBindGroupLike;
  workgroups: number;
}

interface Plan {
  T: number;
  H: number;
  tiles: DecodeTiles;
  programs: Program[];
  /** The weight tensors' buffers the bind groups hold, to notice a changed weight. */
  weightBuffers: GPUBufferLike[];
  weightIds: DataId[];
  owned: GPUBufferLike[];
}

const WEIGHT_ORDER = ['gate_weight', 'gate_correction_bias', 'up_gate_proj_weight', 'up_gate_proj_bias',
  'down_proj_weight', 'down_proj_bias', 'shared_up_gate_proj_weight', 'shared_down_proj_weight',
  'shared_expert_gate_weight'] as const;

const plansByOwner = new WeakMap<object, Map<number, Plan>>();
let livePlans = 0;

/** How many per-layer plans hold GPU buffers now (specs check that dispose frees them). */
export function decodePlanCount(): number {
  return livePlans;
}

function destroyPlan(plan: Plan): void {
  for (const b of plan.owned) b.destroy();
  plan.owned = [];
  livePlans--;
}

/** Frees what the decode path keeps for a layer (its disposal calls this). */
export function releaseDecodeState(owner: object): void {
  const plans = plansByOwner.get(owner);
  if (plans == null) return;
  for (const plan of plans.values()) destroyPlan(plan);
  plansByOwner.delete(owner);
}

function bufferOf(backend: WebGPUBackendInternals, t: TensorInfo): GPUBufferLike {
  backend.uploadToGPU(t.dataId);
  return backend.tensorMap.get(t.dataId).resource;
}

function buildPlan(backend: WebGPUBackendInternals, s: DecodeShape, w: FusedMoEWeights, buffers: GPUBufferLike[],
                   ids: DataId[]): Plan {
  const device = backend.device;
  const tiles = chooseDecodeTiles(s.T);
  const l = decodeLayout(s);
  const make = (elements: number) =>
      device.createBuffer({size: Math.max(16, elements * 4), usage: STORAGE | COPY_SRC | COPY_DST});
  const work = make(l.workSize), route = make(l.routeSize), act = make(l.actSize * 4);
  const wb = (name: typeof WEIGHT_ORDER[number]) => buffers[WEIGHT_ORDER.indexOf(name)];
  const named: Record<string, GPUBufferLike> = {work, route, act, gate: wb('gate_weight'),
    cbias: wb('gate_correction_bias'), upGate: wb('up_gate_proj_weight'), upBias: wb('up_gate_proj_bias'),
    down: wb('down_proj_weight'), downBias: wb('down_proj_bias'), sharedUpGate: wb('shared_up_gate_proj_weight'),
    sharedDown: wb('shared_down_proj_weight'), sgate: wb('shared_expert_gate_weight')};
  const rw = new Set(['work', 'route', 'act']);
  const key = JSON.stringify(s);
  const tileKey = JSON.stringify(tiles);
  const program = (name: string, code: () => string, bindings: string[], workgroups: number): Program => {
    const kinds = bindings.map(b => rw.has(b) ? 'rw' : 'read') as BindingKind[];
    const p = pipelineFor(device, `${name}|${key}|${name === 'upGate' || name === 'down' ? tileKey : ''}`, code, kinds);
    const bindGroup = device.createBindGroup({layout: p.layout0,
      entries: bindings.map((b, i) => ({binding: i, resource: {buffer: named[b]}}))});
    return {name, pipeline: p.pipeline, bindGroup, workgroups};
  };
  const programs = [
    program('routerLogits', () => routerLogitsCode(s), ['gate', 'work', ...(s.sharedGate ? ['sgate'] : [])],
            routerDispatch(s)),
    program('route', () => routeCode(s), ['work', 'route', ...(s.hasCorrectionBias ? ['cbias'] : [])], 1),
    program('upGate', () => upGateCode(s, tiles), upGateBindings(s), upGateDispatch(s, tiles)),
    program('down', () => downCode(s, tiles), downBindings(s), downDispatch(s, tiles)),
  ];
  const maxWg = device.limits.maxComputeWorkgroupsPerDimension;
  for (const p of programs) {
    if (p.workgroups > maxWg) throw new Error(`webgpu decode: ${p.name} needs ${p.workgroups} workgroups (> ${maxWg})`);
  }
  livePlans++;
  return {T: s.T, H: s.H, tiles, programs, weightBuffers: buffers, weightIds: ids, owned: [work, route, act]};
}

/** Optional per-program GPU timing (benchmarks): each program in its own pass with timestamp writes. */
interface Timing {
  querySet: any;
  names: string[];
  capacity: number;
}
let timing: Timing | null = null;

/**
 * Runs fn with every decode program timed (timestamp queries; needs the 'timestamp-query' feature on the device)
 * and resolves to [program name, ms] in dispatch order. For benchmarks; the forwards inside fn run as usual.
 */
export async function timeDecodePrograms(fn: () => void, capacity = 64): Promise<Array<[string, number]>> {
  const backend = tf.backend() as unknown as WebGPUBackendInternals;
  const device = backend.device;
  timing = {querySet: device.createQuerySet({type: 'timestamp', count: 2 * capacity}), names: [], capacity};
  const t = timing;
  try {
    fn();
  } finally {
    timing = null;
  }
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.submitQueue();
  const n = t.names.length;
  const resolve = device.createBuffer({size: Math.max(16, 16 * n), usage: QUERY_RESOLVE | COPY_SRC});
  const read = device.createBuffer({size: Math.max(16, 16 * n), usage: MAP_READ | COPY_DST});
  const enc = device.createCommandEncoder();
  if (n > 0) {
    enc.resolveQuerySet(t.querySet, 0, 2 * n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * n);
  }
  device.queue.submit([enc.finish()]);
  await read.mapAsync(MAP_READ);
  const stamps = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  [resolve, read].forEach(b => b.destroy());
  t.querySet.destroy();
  return t.names.map((name, i) => [name, Number(stamps[2 * i + 1] - stamps[2 * i]) / 1e6]);
}

let dispatchCounter = 0;
/** Programs this path has dispatched so far (specs count programs per forward with it). */
export function decodeDispatchCount(): number {
  return dispatchCounter;
}

/**
 * y [T,H] for x [T,H] through the decode programs, or null when this call cannot take the path (then nothing was
 * done). `owner` keys the per-layer plan. The result is a new tensor tracked by the caller's tidy scope.
 */
export function webgpuDecodeForward(x: Tensor2D, w: FusedMoEWeights, o: FusedMoEOptions, owner: object):
    Tensor2D | null {
  if (decodeUnsupportedReason(x, w, o) != null) return null;
  const backend = tf.backend() as unknown as WebGPUBackendInternals;
  const [T, H] = x.shape;
  const weights = WEIGHT_ORDER.map(name => w[name] as TensorInfo | undefined);
  const buffers = weights.map(t => t == null ? null : bufferOf(backend, t));
  let plans = plansByOwner.get(owner);
  if (plans == null) plansByOwner.set(owner, plans = new Map());
  let plan = plans.get(T);
  const tiles = chooseDecodeTiles(T);
  if (plan != null && (plan.H !== H || !sameTiles(plan.tiles, tiles) ||
                       buffers.some((b, i) => b !== plan!.weightBuffers[i]))) {
    destroyPlan(plan);
    plan = undefined;
  }
  if (plan == null) {
    plan = buildPlan(backend, decodeShape(T, H, o), w, buffers, weights.map(t => t?.dataId ?? null) as DataId[]);
    plans.set(T, plan);
  }
  const out = backend.makeTensorInfo([T, H], 'float32');
  const outBuffer = bufferOf(backend, out);
  const callGroup = backend.device.createBindGroup({layout: deviceCache(backend.device).callLayout, entries: [
    {binding: 0, resource: {buffer: bufferOf(backend, x), size: T * H * 4}},
    {binding: 1, resource: {buffer: outBuffer, size: T * H * 4}},
  ]});
  backend.ensureCommandEncoderReady();
  const timed = timing;
  if (timed != null) backend.endComputePassEncoder();
  for (const p of plan.programs) {
    let pass: PassLike;
    if (timed != null && timed.names.length < timed.capacity) {
      const i = timed.names.length;
      timed.names.push(p.name);
      pass = backend.commandEncoder!.beginComputePass({timestampWrites: {querySet: timed.querySet,
        beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1}});
    } else {
      pass = backend.computePassEncoder ??= backend.commandEncoder!.beginComputePass();
    }
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, p.bindGroup);
    pass.setBindGroup(1, callGroup);
    pass.dispatchWorkgroups(p.workgroups);
    if (pass !== backend.computePassEncoder) pass.end();
  }
  dispatchCounter += plan.programs.length;
  // As tfjs does for its own programs: buffers in a pending command buffer are not recycled before submission.
  const owned = backend.commandQueueOwnedIds;
  owned.add(x.dataId);
  owned.add(out.dataId);
  for (const id of plan.weightIds) if (id != null) owned.add(id);
  backend.dispatchCountInPass += plan.programs.length;
  if (backend.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  return tf.engine().makeTensorFromTensorInfo(out) as Tensor2D;
}

/** Whether the decode path may run now: webgpu active, no gradient tape (its programs have no gradient). */
function decodeActive(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  return (tf.engine() as unknown as {state: {gradientDepth: number}}).state.gradientDepth === 0;
}

/** Plugs the decode path into the webgpu kernel path of the layer (src/register_all.ts calls this once). */
export function registerWebGPUDecode(): void {
  registerKernelPathLayerForward('webgpu', {
    forward: (x, w, o, context) => decodeActive() ? webgpuDecodeForward(x, w, o, context.owner) : null,
    release: releaseDecodeState,
  });
}
