/**
 * Expert weights larger than one storage binding, for the FusedMoE forward on webgpu. The layer's variables stay
 * the source of truth (full [E,D,2I] / [E,I,D], so saving, getWeights/setWeights, HF import and training see the
 * documented names and shapes); this cache keeps, per layer and weight, device-side copies of expert ranges that
 * each fit one binding, and the forward runs the grouped GEMM per range (shardedBatchedGemm).
 *
 * The copies are made once and re-made when the weight changes: a variable's write/assign gives it a new dataId,
 * which is what the cache compares (no readback, no version counters to keep in sync). They are freed when the
 * layer is disposed (releaseExpertShards, through releaseMoeLayerState).
 *
 * While a gradient tape records (training), the forward uses the full weights instead: gradients have to reach
 * the variables, and the optimizer binds the full variable anyway, so sharding could not make training fit.
 */
import * as tf from '@tensorflow/tfjs-core';

import {ExpertRange, maxStorageBindingBytes, planExpertShards, sliceExpertRange} from '../kernels/webgpu/expert_shards.js';

export interface ExpertShards {
  ranges: ExpertRange[];
  shards: tf.Tensor3D[];
}

interface CacheEntry extends ExpertShards {
  /** The dataId of the weight the shards were copied from. */
  source: object;
  limit: number;
}

const cacheByOwner = new WeakMap<object, Map<string, CacheEntry>>();

function tapeIsRecording(): boolean {
  const engine = tf.engine() as unknown as {state: {gradientDepth: number}};
  return engine.state.gradientDepth > 0;
}

/**
 * The expert-range shards of `weight` [E,rows,cols] for `owner`'s weight `name`, or null when the full weight can
 * be bound as it is (not on webgpu, it fits the storage-binding limit, or a tape is recording).
 */
export function expertShardsFor(owner: object, name: string, weight: tf.Tensor3D): ExpertShards | null {
  // The binding limit is a WebGPU notion; other backends take any size.
  if (tf.getBackend() !== 'webgpu') return null;
  const limit = maxStorageBindingBytes();
  const cache = cacheByOwner.get(owner);
  const entry = cache?.get(name);
  const stale = entry != null && (entry.source !== weight.dataId || entry.limit !== limit);
  if (entry != null && (stale || weight.size * 4 <= limit)) {
    tf.dispose(entry.shards);
    cache!.delete(name);
  }
  if (weight.size * 4 <= limit || tapeIsRecording()) return null;
  if (entry != null && !stale) return entry;
  const [numExperts, rows, cols] = weight.shape;
  const ranges = planExpertShards(numExperts, rows * cols * 4, limit);
  // Kept: the forward runs inside the layer's tidy, and the shards must outlive the call.
  const shards = ranges.map(range => tf.keep(sliceExpertRange(weight, range)));
  const fresh: CacheEntry = {ranges, shards, source: weight.dataId, limit};
  if (cache == null) cacheByOwner.set(owner, new Map([[name, fresh]]));
  else cache.set(name, fresh);
  return fresh;
}

/** Frees every shard kept for `owner` (its layer is being disposed). */
export function releaseExpertShards(owner: object): void {
  const cache = cacheByOwner.get(owner);
  if (cache == null) return;
  for (const entry of cache.values()) tf.dispose(entry.shards);
  cacheByOwner.delete(owner);
}

/** How many shard tensors `owner` keeps now (specs and memory accounting). */
export function expertShardCount(owner: object): number {
  let count = 0;
  for (const entry of cacheByOwner.get(owner)?.values() ?? []) count += entry.shards.length;
  return count;
}
