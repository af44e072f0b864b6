/**
 * Expert weights larger than one storage-buffer binding (maxStorageBufferBindingSize: 128 MiB in Chromium's
 * default limits, 1-2 GiB on desktop GPUs) are kept as expert-range shards, each its own tensor, and the grouped
 * GEMM runs once per shard. A shard sees only its experts' segments (a slice of the device-side offsets, so still
 * no readback); rows of other experts come out zero, and the shard outputs add up to the full product because every
 * row belongs to exactly one expert.
 *
 * Hook for the FusedMoE layer: in build(), `planExpertShards(E, bytesPerExpert)` gives the expert ranges; keep one
 * weight per range (e.g. upGateProj_0..n-1, each [end-start, D, 2I]); in call(), `shardedBatchedGemm(lhs,
 * shards, ranges, expertOffsets, {bias})` instead of batchedGemm. One range means no sharding and the plain call.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import {batchedGemm} from '../../ops/batched_gemm.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export interface ExpertRange {
  start: number;  // first expert
  end: number;    // one past the last expert
}

let bindingLimitOverride: number | null = null;

/** Forces the binding limit the planner uses (tests of the sharded path); null restores the device's. */
export function setMaxStorageBindingBytes(bytes: number | null): void {
  if (bytes != null && !(Number.isInteger(bytes) && bytes > 0)) {
    throw new Error(`setMaxStorageBindingBytes: argument 'bytes' must be a positive integer or null, got ${bytes}`);
  }
  bindingLimitOverride = bytes;
}

/** The largest storage binding of the active backend: the device limit on webgpu, unlimited elsewhere. */
export function maxStorageBindingBytes(): number {
  if (bindingLimitOverride != null) return bindingLimitOverride;
  if (tf.getBackend() !== 'webgpu') return Number.MAX_SAFE_INTEGER;
  const device = (tf.backend() as unknown as {device?: {limits?: {maxStorageBufferBindingSize?: number}}}).device;
  return device?.limits?.maxStorageBufferBindingSize ?? 128 * 1024 * 1024;
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

/**
 * batchedGemm over weights split by expert range: shards[i] is rhs[ranges[i].start : ranges[i].end] and
 * expertOffsets the full [E+1] offsets; bias (optional) is the full [E,N] bias.
 */
export function shardedBatchedGemm(
    lhs: Tensor2D, shards: Tensor3D[], ranges: ExpertRange[], expertOffsets: Tensor1D,
    options: {transposeRhs?: boolean, bias?: Tensor2D | null} = {}): Tensor2D {
  if (shards.length !== ranges.length || shards.length === 0) {
    throw new Error(`shardedBatchedGemm: argument 'shards' must have one tensor per range (${ranges.length}), ` +
        `got ${shards.length}`);
  }
  shards.forEach((s, i) => {
    if (!(s instanceof tf.Tensor) || s.rank !== 3 || s.shape[0] !== ranges[i].end - ranges[i].start) {
      throw new Error(`shardedBatchedGemm: argument 'shards[${i}]' must be a rank-3 tensor of ` +
          `${ranges[i].end - ranges[i].start} experts, got shape ${s instanceof tf.Tensor ? `[${s.shape}]` : typeof s}`);
    }
  });
  if (shards.length === 1) return batchedGemm(lhs, shards[0], expertOffsets, options);
  return tf.tidy(() => {
    let out: Tensor2D | null = null;
    for (const [i, {start, end}] of ranges.entries()) {
      const offsets = tf.slice(expertOffsets, [start], [end - start + 1]) as Tensor1D;
      const bias = options.bias == null ? null : tf.slice(options.bias, [start, 0], [end - start, -1]) as Tensor2D;
      const part = batchedGemm(lhs, shards[i], offsets, {transposeRhs: options.transposeRhs, bias});
      out = out == null ? part : tf.add(out, part) as Tensor2D;
    }
    return out!;
  });
}

/** The parts of tfjs's WebGPUBackend a buffer-to-buffer copy needs (4.22; not in its public typings). */
interface CopyCapableBackend extends WebGPUBackendLike {
  tensorMap: {get(dataId: object): {resource: unknown} | undefined};
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  commandEncoder: {copyBufferToBuffer(src: unknown, srcOffset: number, dst: unknown, dstOffset: number,
                                      size: number): void};
  commandQueueOwnedIds: WeakSet<object>;
}

/**
 * weight[range.start : range.end] as a new tensor. On webgpu a buffer-to-buffer copy: a shader slice would bind the
 * whole weight, which is exactly what does not fit when we shard. Elsewhere tf.slice. Not differentiable on webgpu
 * (callers use it for inference caches only).
 */
export function sliceExpertRange(weight: Tensor3D, range: ExpertRange): Tensor3D {
  const [E, rows, cols] = weight.shape;
  if (!(Number.isInteger(range.start) && Number.isInteger(range.end) && 0 <= range.start && range.start < range.end &&
        range.end <= E)) {
    throw new Error(`sliceExpertRange: argument 'range' must satisfy 0 <= start < end <= ${E}, got ` +
        `[${range.start}, ${range.end})`);
  }
  const shape: [number, number, number] = [range.end - range.start, rows, cols];
  if (tf.getBackend() !== 'webgpu' || weight.dtype !== 'float32') {
    return tf.slice(weight, [range.start, 0, 0], shape);
  }
  const backend = tf.backend() as unknown as CopyCapableBackend;
  const bytesPerExpert = rows * cols * 4;
  backend.uploadToGPU(weight.dataId);
  const out = backend.makeTensorInfo(shape, 'float32');
  backend.uploadToGPU(out.dataId);
  const src = backend.tensorMap.get(weight.dataId)?.resource;
  const dst = backend.tensorMap.get(out.dataId)?.resource;
  if (src == null || dst == null) throw new Error('sliceExpertRange: the webgpu backend has no buffer for a tensor');
  backend.ensureCommandEncoderReady();
  backend.endComputePassEncoder();  // copies are encoded between passes, in order with the programs around them
  if (shape[0] * bytesPerExpert > 0) {
    backend.commandEncoder.copyBufferToBuffer(src, range.start * bytesPerExpert, dst, 0, shape[0] * bytesPerExpert);
  }
  // Both stay alive until the queue is submitted even if disposed meanwhile (the backend defers their release).
  backend.commandQueueOwnedIds.add(weight.dataId);
  backend.commandQueueOwnedIds.add(out.dataId);
  return tf.engine().makeTensorFromTensorInfo(out) as Tensor3D;
}
