/**
 * Expert weights (rhs) larger than one storage binding (maxStorageBufferBindingSize: 128 MiB under WebGPU's default
 * limits, which is what a page gets unless it asks for more; 1-2 GiB on desktop GPUs). Binding such a buffer is a
 * validation error that tfjs only reports as a console warning, with a zero or stale result, so no kernel may do it.
 *
 * The one mechanism, used by the webgpu grouped GEMM kernels: the experts are taken in contiguous ranges that fit
 * (planExpertShards), each range copied out of the rhs buffer with a buffer-to-buffer copy (copies are not
 * bindings: the limit does not apply), and the GEMM runs per range on a slice of the device-side offsets (no
 * readback). A range's product has rows only in its experts' segments (every other row is zero, docs/semantics.md
 * section 4) and every row belongs to one expert, so the range products add up to the full result.
 *
 * The copies of a weight that persists across calls (the data of a tf.Variable, e.g. a FusedMoE layer's expert
 * weights) are kept, so the extra pass over the weights happens once, not per call; they are re-made when the
 * variable is written (it gets a new dataId), and freed once their source is gone (sweepExpertRangeCopies, which
 * the next oversized call and FusedMoE.dispose run). During a gradient computation nothing is kept: the
 * optimizer rewrites the variables every step. lhs and the output must still fit one binding each.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {DataId, Tensor, TensorInfo} from '@tensorflow/tfjs-core';

import {gradientInProgress} from '../tape.js';
import {MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES} from './flags_webgpu.js';
import {disposeIntermediate, FLAT_LAYOUT, flatDispatch, WebGPUBackendLike, WebGPUProgram} from './webgpu_util.js';

export interface ExpertRange {
  start: number;  // first expert
  end: number;    // one past the last expert
}

/** Forces the binding limit the planner uses (tests of the sharded path); null restores the device's. */
export function setMaxStorageBindingBytes(bytes: number | null): void {
  if (bytes != null && !(Number.isInteger(bytes) && bytes > 0)) {
    throw new Error(`setMaxStorageBindingBytes: argument 'bytes' must be a positive integer or null, got ${bytes}`);
  }
  tf.env().set(MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES, bytes ?? 0);
}

/** The binding limit of `device`, unless the flag overrides it. */
function bindingLimit(device: {limits?: {maxStorageBufferBindingSize?: number}} | undefined): number {
  const forced = tf.env().getNumber(MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES);
  if (forced > 0) return forced;
  return device?.limits?.maxStorageBufferBindingSize ?? 128 * 1024 * 1024;
}

/** The largest storage binding of the active backend: the (flag or device) limit on webgpu, unlimited elsewhere. */
export function maxStorageBindingBytes(): number {
  if (tf.env().getNumber(MOE_WEBGPU_MAX_STORAGE_BINDING_BYTES) === 0 && tf.getBackend() !== 'webgpu') {
    return Number.MAX_SAFE_INTEGER;
  }
  return bindingLimit((tf.backend() as unknown as {device?: {limits?: {maxStorageBufferBindingSize?: number}}}).device);
}

/** Contiguous expert ranges whose weights fit in one binding each (at least one expert per range). */
export function planExpertShards(numExperts: number, bytesPerExpert: number, limit = maxStorageBindingBytes()):
    ExpertRange[] {
  if (!(Number.isInteger(numExperts) && numExperts >= 1)) {
    throw new Error(`planExpertShards: argument 'numExperts' must be an integer >= 1, got ${numExperts}`);
  }
  if (bytesPerExpert > limit) {
    throw new Error(`planExpertShards: one expert's weights (${bytesPerExpert} bytes) exceed the storage binding ` +
        `limit (${limit} bytes); argument 'bytesPerExpert' must be <= the limit`);
  }
  const perShard = Math.max(1, Math.floor(limit / Math.max(1, bytesPerExpert)));
  const ranges: ExpertRange[] = [];
  for (let start = 0; start < numExperts; start += perShard) {
    ranges.push({start, end: Math.min(numExperts, start + perShard)});
  }
  return ranges;
}

/** The parts of tfjs-backend-webgpu 4.22's WebGPUBackend a buffer copy needs (public members, no typings here). */
interface WebGPUBackendInternals extends WebGPUBackendLike {
  tensorMap: {get(dataId: DataId): {values: Float32Array | Int32Array | null, resource?: unknown}};
  uploadToGPU(dataId: DataId): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  commandEncoder: {copyBufferToBuffer(src: unknown, srcOffset: number, dst: unknown, dstOffset: number, size: number):
      void};
}

/** Entries [start, end) of t's outermost dimension as new backend data, copied without binding t. */
function copyOuterRange(backend: WebGPUBackendInternals, t: TensorInfo, start: number, end: number): TensorInfo {
  const inner = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const shape = [end - start, ...t.shape.slice(1)];
  const data = backend.tensorMap.get(t.dataId);
  if (data.values != null) {  // not on the GPU yet: slicing on the host is cheaper than uploading it whole
    return backend.makeTensorInfo(shape, t.dtype, data.values.slice(start * inner, end * inner));
  }
  const out = backend.makeTensorInfo(shape, t.dtype);
  backend.uploadToGPU(out.dataId);  // allocates the destination buffer
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();
  backend.commandEncoder.copyBufferToBuffer(data.resource, start * inner * 4,
                                            backend.tensorMap.get(out.dataId).resource, 0, (end - start) * inner * 4);
  // Submitted now, as tfjs's own copyBuffer does, so that disposing either tensor later cannot race the copy.
  backend.submitQueue();
  return out;
}

/** out = a + b for two [R,N] f32 tensors (range products over disjoint rows). */
class AddProgram implements WebGPUProgram {
  variableNames = ['a', 'b'];
  variableComponents: number[];
  outputShape: number[];
  outputComponent: number;
  shaderKey: string;
  dispatchLayout = FLAT_LAYOUT;
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];
  size = true;

  constructor(shape: number[]) {
    const n = shape.reduce((a, b) => a * b, 1);
    const vec = n % 4 === 0 ? 4 : 1;
    this.variableComponents = [vec, vec];
    this.outputComponent = vec;
    this.outputShape = shape;
    this.dispatch = flatDispatch(Math.ceil(n / vec / 256));
    this.shaderKey = `moeAddRanges_v${vec}`;
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          result[index] = a[index] + b[index];
        }
      }`;
  }
}

interface CachedCopies {
  limit: number;
  ranges: ExpertRange[];
  /** Engine tensors (kept), so that tf.memory() accounts for what the cache holds. */
  copies: Tensor[];
}

/** Expert-range copies of persistent weights, by the weight's dataId. */
const cache = new Map<DataId, CachedCopies>();

function engineHas(dataId: DataId): boolean {
  return (tf.engine().state as unknown as {tensorInfo: WeakMap<DataId, unknown>}).tensorInfo.has(dataId);
}

/** Whether dataId holds a tf.Variable's value (a weight that outlives the call). */
function backsVariable(dataId: DataId): boolean {
  return Object.values(tf.engine().registeredVariables).some(v => v.dataId === dataId);
}

/** Frees the copies whose source weight is gone (disposed, or rewritten under a new dataId). */
export function sweepExpertRangeCopies(): void {
  for (const [source, entry] of cache) {
    if (!engineHas(source)) {
      tf.dispose(entry.copies);
      cache.delete(source);
    }
  }
}

/** Drops the copies of one weight (it fits now, e.g. after the limit was raised). */
function forget(source: DataId): void {
  const entry = cache.get(source);
  if (entry != null) {
    tf.dispose(entry.copies);
    cache.delete(source);
  }
}

/** Whether any of the weight tensors (packed values, scales, zero points) exceeds the binding limit. */
export function weightsNeedRanges(backend: WebGPUBackendLike, weights: readonly TensorInfo[]): boolean {
  const limit = bindingLimit(backend.device);
  const needs = weights.some(w => w.shape.reduce((a, b) => a * b, 1) * 4 > limit);
  if (!needs) weights.forEach(w => forget(w.dataId));
  return needs;
}

/** RangeGemm over several weight tensors of one expert set (each with E leading), in the given order. */
export type WeightRangeGemm = (weights: TensorInfo[], offsets: TensorInfo, bias: TensorInfo | null) => TensorInfo;

/**
 * A grouped GEMM with weights [E,*,*] past the binding limit (a float rhs, or packed codes with their scales and
 * zero points: docs/formats.md); offsets is the device-side expertOffsets [E+1]. One expert range of every tensor
 * per GEMM, each range fitting one binding.
 */
export function gemmByWeightRanges(
    backend: WebGPUBackendLike, weights: readonly TensorInfo[], offsets: TensorInfo, bias: TensorInfo | null,
    gemm: WeightRangeGemm): TensorInfo {
  const b = backend as WebGPUBackendInternals;
  const numExperts = weights[0].shape[0];
  const limit = bindingLimit(backend.device);
  const perExpert = weights.map(w => w.shape.slice(1).reduce((x, y) => x * y, 1) * 4);
  const largest = Math.max(...perExpert);
  if (largest > limit) {
    const w = weights[perExpert.indexOf(largest)];
    throw new Error(`batchedGemm on webgpu: one expert's weights [${w.shape.slice(1)}] (${largest} bytes) exceed ` +
        `the device's maxStorageBufferBindingSize (${limit} bytes); create the webgpu device with a larger limit`);
  }
  sweepExpertRangeCopies();
  const keep = !gradientInProgress() && weights.every(w => backsVariable(w.dataId));
  let entries = weights.map(w => cache.get(w.dataId));
  if (entries.some(e => e == null || e.limit !== limit || e.ranges.length !== entries[0]!.ranges.length)) {
    weights.forEach(w => forget(w.dataId));
    entries = weights.map(() => undefined);
  }
  const ranges = entries[0]?.ranges ?? planExpertShards(numExperts, largest, limit);
  if (entries[0] == null && keep) {
    entries = weights.map(w => {
      const copies = ranges.map(({start, end}) =>
          tf.keep(tf.engine().makeTensorFromTensorInfo(copyOuterRange(b, w, start, end), backend as never)));
      const entry = {limit, ranges, copies};
      cache.set(w.dataId, entry);
      return entry;
    });
  }
  let sum: TensorInfo | null = null;
  for (const [i, {start, end}] of ranges.entries()) {
    const cached = entries[0] != null;
    const parts = weights.map((w, j) => cached ? entries[j]!.copies[i] : copyOuterRange(b, w, start, end));
    const offsetsPart = copyOuterRange(b, offsets, start, end + 1);
    const biasPart = bias == null ? null : copyOuterRange(b, bias, start, end);
    const part = gemm(parts, offsetsPart, biasPart);
    if (!cached) disposeIntermediate(backend, ...parts);
    disposeIntermediate(backend, offsetsPart, ...(biasPart != null ? [biasPart] : []));
    if (sum == null) {
      sum = part;
    } else {
      const next = backend.runWebGPUProgram(new AddProgram(part.shape), [sum, part], 'float32');
      disposeIntermediate(backend, sum, part);
      sum = next;
    }
  }
  return sum!;
}
