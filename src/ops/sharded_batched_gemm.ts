/**
 * batchedGemm over a weight the caller keeps split by expert range (shards[i] = rhs[ranges[i].start : end]). The
 * webgpu kernel shards weights past the binding limit by itself (kernels/webgpu/expert_ranges.ts), so batchedGemm on
 * the full weight is the usual call; this op is for callers that hold only the shards (e.g. weights that never
 * existed as one tensor). Each shard sees its experts' slice of the device-side offsets: no readback.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {Tensor1D, Tensor2D, Tensor3D} from '@tensorflow/tfjs-core';

import type {ExpertRange} from '../kernels/webgpu/expert_ranges.js';
import {batchedGemm} from './batched_gemm.js';

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
