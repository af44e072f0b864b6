/**
 * What the webgpu whole-layer forwards (decode/: the four decode programs; prefill/: the op chain's programs as
 * recorded once) share: a per-layer, per-T plan of programs with their pipelines and bind groups built once, encoded
 * straight into the tfjs backend's open compute pass, so that a forward costs a few JavaScript calls per program
 * instead of tfjs's per-program work (engine bookkeeping, shader key, uniform buffer and writeBuffer, bind group).
 *
 * - Input and output are ordinary tfjs tensors: x's buffer is read where tfjs keeps it, the output is a fresh tfjs
 *   tensor whose buffer the plan's programs write (no copy). Nothing is read back to JS.
 * - Bind groups that hold x or the output (`CallBindGroups`) are cached by those two buffers: tfjs's buffer manager
 *   hands out the same few buffers again and again, so after the first calls every call finds its group; a destroyed
 *   buffer is never handed out again, so its entries are only unreachable (weak keys).
 * - A plan's own buffers (intermediates, uniforms) are reused across calls: the queue runs a layer's forwards in
 *   order, and WebGPU orders the dispatches of a pass that touch the same storage buffer.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {DataId, Tensor2D, TensorInfo} from '@tensorflow/tfjs-core';

import {isQuantizedExpertWeights} from '../../executor/expert_weights.js';
import type {FusedMoEWeights} from '../../executor/layer_schema.js';
import {MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES} from './flags_webgpu.js';

// WebGPU objects, typed structurally (this package's tsconfig carries no WebGPU type declarations).
/* eslint-disable @typescript-eslint/no-explicit-any */
export type GPUBufferLike = any;
export type GPUBindGroupLike = any;
export type GPUPipelineLike = any;
export type GPULayoutLike = any;
export interface GPUDeviceLike {
  features?: {has(name: string): boolean};
  adapterInfo?: {subgroupMinSize?: number};
  limits: {maxComputeWorkgroupStorageSize: number, maxStorageBufferBindingSize: number,
    maxComputeWorkgroupsPerDimension: number, maxStorageBuffersPerShaderStage: number};
  createBuffer(d: {size: number, usage: number}): GPUBufferLike;
  createBindGroup(d: unknown): GPUBindGroupLike;
  createBindGroupLayout(d: unknown): GPULayoutLike;
  createPipelineLayout(d: unknown): GPULayoutLike;
  createShaderModule(d: {code: string}): unknown;
  createComputePipeline(d: unknown): GPUPipelineLike;
  createQuerySet(d: unknown): any;
  createCommandEncoder(): any;
  queue: GPUQueueLike;
}
export interface GPUQueueLike {
  submit(buffers: unknown[]): void;
  writeBuffer(buffer: GPUBufferLike, offset: number, data: ArrayBuffer | ArrayBufferView, dataOffset?: number,
              size?: number): void;
  onSubmittedWorkDone(): Promise<void>;
}
export interface PassLike {
  setPipeline(p: GPUPipelineLike): void;
  setBindGroup(i: number, g: GPUBindGroupLike): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
/** The parts of tfjs-backend-webgpu's WebGPUBackend (4.22) these paths touch. */
export interface WebGPUBackendInternals {
  device: GPUDeviceLike;
  queue: GPUQueueLike;
  commandEncoder: {beginComputePass(d?: unknown): PassLike} | null;
  computePassEncoder: PassLike | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<DataId>;
  tensorMap: {get(id: DataId): {resource: GPUBufferLike, dtype: string} | undefined};
  /** Non-null while tf.time / tf.profile collect tfjs's own per-program timings. */
  activeTimers: unknown[] | null;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  uploadToGPU(id: DataId): void;
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo;
}

export const STORAGE = 0x80, UNIFORM = 0x40, COPY_SRC = 0x04, COPY_DST = 0x08, QUERY_RESOLVE = 0x200,
  MAP_READ = 0x01;

export function bufferOf(backend: WebGPUBackendInternals, t: TensorInfo): GPUBufferLike {
  backend.uploadToGPU(t.dataId);
  return backend.tensorMap.get(t.dataId)!.resource;
}

/**
 * A bind group holding x's or the output's buffer (or both), made on first use for each pair of buffers. `entries`
 * builds its entries for a pair.
 */
export class CallBindGroups {
  private readonly byX = new WeakMap<GPUBufferLike, WeakMap<GPUBufferLike, GPUBindGroupLike>>();

  constructor(private readonly device: GPUDeviceLike, private readonly layout: GPULayoutLike,
              private readonly entries: (x: GPUBufferLike, output: GPUBufferLike) => unknown[]) {}

  // The last pair asked for: the programs of one forward that share this group ask for the same pair.
  private lastX: GPUBufferLike = null;
  private lastOutput: GPUBufferLike = null;
  private lastGroup: GPUBindGroupLike = null;

  get(x: GPUBufferLike, output: GPUBufferLike): GPUBindGroupLike {
    if (x === this.lastX && output === this.lastOutput) return this.lastGroup;
    this.lastGroup = this.lookUp(x, output);
    this.lastX = x;
    this.lastOutput = output;
    return this.lastGroup;
  }

  private lookUp(x: GPUBufferLike, output: GPUBufferLike): GPUBindGroupLike {
    let byOut = this.byX.get(x);
    if (byOut == null) this.byX.set(x, byOut = new WeakMap());
    let group = byOut.get(output);
    if (group == null) {
      group = this.device.createBindGroup({layout: this.layout, entries: this.entries(x, output)});
      byOut.set(output, group);
    }
    return group;
  }
}

export interface EncodedProgram {
  name: string;
  pipeline: GPUPipelineLike;
  /** Bind groups by group index: built with the plan, or per (x, output) pair. */
  groups: ReadonlyArray<GPUBindGroupLike | CallBindGroups>;
  workgroups: readonly [number, number, number];
}

export interface EncodedPlan {
  T: number;
  /** The output's shape ([T, H]). */
  outShape: [number, number];
  programs: EncodedProgram[];
  /** The weights' dataIds when built (null: absent): a variable write gives its tensor a new one. */
  weightIds: Array<DataId | null>;
  /** Buffers the plan alone holds, destroyed with it. */
  owned: GPUBufferLike[];
  /** More to free with the plan (a shared workspace's reference). */
  onDestroy?: () => void;
}

/**
 * Plans of one kind by layer (`owner`) and T. A plan is destroyed when replaced, when its layer is released, or when
 * the layer keeps more than `maxPerOwner` token counts (the least recently used goes).
 */
export class EncodedPlans<P extends EncodedPlan> {
  private readonly byOwner = new WeakMap<object, Map<number, P>>();
  private live = 0;
  /** Programs dispatched so far through these plans (specs count programs per forward). */
  dispatches = 0;

  constructor(private readonly maxPerOwner = Infinity) {}

  get(owner: object, T: number): P | undefined {
    return this.byOwner.get(owner)?.get(T);
  }

  set(owner: object, T: number, plan: P): void {
    let plans = this.byOwner.get(owner);
    if (plans == null) this.byOwner.set(owner, plans = new Map());
    this.delete(owner, T);
    plans.set(T, plan);
    this.live++;
    while (plans.size > this.maxPerOwner) this.delete(owner, plans.keys().next().value as number);
  }

  /** Marks T as the owner's most recently used token count. */
  touch(owner: object, T: number): void {
    const plans = this.byOwner.get(owner)!;
    const plan = plans.get(T)!;
    plans.delete(T);
    plans.set(T, plan);
  }

  delete(owner: object, T: number): void {
    const plans = this.byOwner.get(owner);
    const plan = plans?.get(T);
    if (plan == null) return;
    destroyPlan(plan);
    plans!.delete(T);
    this.live--;
  }

  release(owner: object): void {
    const plans = this.byOwner.get(owner);
    if (plans == null) return;
    for (const T of [...plans.keys()]) this.delete(owner, T);
    this.byOwner.delete(owner);
  }

  /** How many plans hold GPU buffers now (specs check that dispose frees them). */
  count(): number {
    return this.live;
  }
}

function destroyPlan(plan: EncodedPlan): void {
  // A forward of this plan may still sit in tfjs's open command encoder: a buffer destroyed before its submission
  // makes the submit invalid (seen when the bench switched tiles right after an unread forward). Submit it first.
  const backend = tf.findBackend('webgpu') as unknown as WebGPUBackendInternals | undefined;
  if (backend?.commandEncoder != null) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  for (const b of plan.owned) b.destroy();
  plan.owned = [];
  plan.onDestroy?.();
  plan.onDestroy = undefined;
}

/** Every tensor of the layer's weights in a fixed order (the object's; packed experts as codes, scales, zeros). */
export function weightTensors(w: FusedMoEWeights): TensorInfo[] {
  const out: TensorInfo[] = [];
  for (const name in w) {
    const v = (w as Record<string, unknown>)[name];
    if (v == null) continue;
    if (isQuantizedExpertWeights(v)) {
      out.push(v.values);
      if (v.scales != null) out.push(v.scales);
      if (v.zeroPoints != null) out.push(v.zeroPoints);
    } else {
      out.push(v as TensorInfo);
    }
  }
  return out;
}

/** Optional per-program GPU timing (benchmarks): each program in its own pass with timestamp writes. */
interface Timing {
  querySet: any;
  names: string[];
  capacity: number;
  /** One pass (and one timing) per forward holding all its programs, instead of one per program. */
  wholeForward: boolean;
  /** Programs not dispatched (a benchmark's marginal costs; the next ones read the buffers of an earlier forward). */
  skip: readonly string[];
}
let timing: Timing | null = null;

/**
 * Runs fn with every program of these paths timed (timestamp queries; needs the 'timestamp-query' feature on the
 * device) and resolves to [program name, ms] in dispatch order; with wholeForward, each forward's programs share one
 * timed pass (named 'forward'). For benchmarks; the forwards inside fn run as usual, except that the programs named in
 * `skip` are left out (what the others cost without them; their results then come from an earlier forward's buffers).
 */
export async function timeEncodedPrograms(fn: () => void, capacity = 64, wholeForward = false,
                                          skip: readonly string[] = []): Promise<Array<[string, number]>> {
  const backend = tf.backend() as unknown as WebGPUBackendInternals;
  const device = backend.device;
  timing = {querySet: device.createQuerySet({type: 'timestamp', count: 2 * capacity}), names: [], capacity,
    wholeForward, skip};
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

/**
 * y for x through the plan's programs, encoded into the backend's open pass: a new tensor tracked by the caller's
 * scope. `counter` counts the dispatches.
 */
export function encodeForward(backend: WebGPUBackendInternals, plan: EncodedPlan, x: TensorInfo,
                              counter: {dispatches: number}): Tensor2D {
  const out = backend.makeTensorInfo(plan.outShape, 'float32');
  const xBuffer = bufferOf(backend, x), outBuffer = bufferOf(backend, out);
  backend.ensureCommandEncoderReady();
  const timed = timing;
  if (timed != null) backend.endComputePassEncoder();
  // A pass keeps its bind groups across pipelines: a group already set on this pass at its index is not set again.
  let setOn: PassLike | null = null;
  const set: Array<GPUBindGroupLike | undefined> = [];
  const timedPass = (name: string): PassLike => {
    const i = timed!.names.length;
    timed!.names.push(name);
    return backend.commandEncoder!.beginComputePass({timestampWrites: {querySet: timed!.querySet,
      beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1}});
  };
  const whole = timed != null && timed.wholeForward && timed.names.length < timed.capacity ? timedPass('forward') : null;
  let dispatched = 0;
  for (const p of plan.programs) {
    if (timed != null && timed.skip.includes(p.name)) continue;
    let pass: PassLike;
    if (whole != null) {
      pass = whole;
    } else if (timed != null && timed.names.length < timed.capacity) {
      pass = timedPass(p.name);
    } else {
      pass = backend.computePassEncoder ??= backend.commandEncoder!.beginComputePass();
    }
    if (setOn !== pass) {
      set.length = 0;
      setOn = pass;
    }
    pass.setPipeline(p.pipeline);
    for (let i = 0; i < p.groups.length; i++) {
      const g = p.groups[i];
      const group = g instanceof CallBindGroups ? g.get(xBuffer, outBuffer) : g;
      if (set[i] !== group) {
        pass.setBindGroup(i, group);
        set[i] = group;
      }
    }
    pass.dispatchWorkgroups(p.workgroups[0], p.workgroups[1], p.workgroups[2]);
    dispatched++;
    if (pass !== backend.computePassEncoder && pass !== whole) pass.end();
  }
  whole?.end();
  counter.dispatches += dispatched;
  // As tfjs does for its own programs: buffers in a pending command buffer are not recycled before submission.
  const owned = backend.commandQueueOwnedIds;
  owned.add(x.dataId);
  owned.add(out.dataId);
  for (const id of plan.weightIds) if (id != null) owned.add(id);
  backend.dispatchCountInPass += dispatched;
  const env = tf.env();
  const submitAt = env.getNumber(MOE_WEBGPU_DECODE_SUBMIT_DISPATCHES) ||
      env.getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE');
  if (backend.dispatchCountInPass >= submitAt) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  return tf.engine().makeTensorFromTensorInfo(out) as Tensor2D;
}

/** Whether a whole-layer forward may run now: webgpu active, no gradient tape (its programs have no gradient). */
export function encodedForwardActive(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  return (tf.engine() as unknown as {state: {gradientDepth: number}}).state.gradientDepth === 0;
}
