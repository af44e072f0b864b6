/**
 * The one place that decides which implementation runs a FusedMoE call. Decided per call, because the active
 * tfjs backend can change between calls.
 *
 * - 'auto': our kernels when every one is registered for the active backend, else the composite path.
 * - 'cpu' / 'webgpu': that tfjs backend must be active and our kernels registered there.
 * - 'composite': the stock-tfjs-ops path on whatever backend is active.
 * - anything else ('cuda'): a layer executor registered under that name by an optional module (the CUDA addon
 *   registers one when it loads); absent or unavailable, the call fails naming the reason.
 */
import * as tf from '@tensorflow/tfjs-core';

import {ALL_MOE_KERNELS} from '../kernels/kernel_names.js';
import {hasMoeKernels, withCompositeKernels} from '../ops/dispatch.js';
import type {FusedMoEOptions, FusedMoEWeights, MoeLayerBackend} from './fused_moe_config.js';
import {releaseExpertShards} from './expert_shard_cache.js';
import {fusedMoeForward} from './fused_moe_forward.js';

/** Who is calling: executors that keep per-layer state (e.g. weights resident on a GPU) key it by `owner`. */
export interface MoeForwardContext {
  /** The calling layer (stable across calls; passed to MoeLayerExecutor.release when the layer is disposed). */
  owner: object;
}

/** Runs the whole layer forward: x [T,H] -> y [T,H] (a new tensor; it may create intermediates in the caller's tidy). */
export type MoeForwardFn =
    (x: tf.Tensor2D, weights: FusedMoEWeights, options: FusedMoEOptions, context?: MoeForwardContext) => tf.Tensor2D;

/** An implementation of the whole layer forward that a module outside the core (e.g. the CUDA addon) provides. */
export interface MoeLayerExecutor {
  /** Whether it can run now; `reason` says what is missing when it cannot (shown to the user verbatim). */
  availability(): {available: boolean, reason?: string};
  forward: MoeForwardFn;
  /** Frees what the executor keeps for a layer (called when that layer is disposed). */
  release?(owner: object): void;
}

const executors = new Map<string, MoeLayerExecutor>();

/**
 * Registers the executor that FusedMoE layers with `backend: name` use (replacing an earlier one). Names of
 * tfjs-kernel paths ('auto', 'cpu', 'webgpu', 'composite') are reserved.
 */
export function registerMoeLayerExecutor(name: string, executor: MoeLayerExecutor): void {
  if (['auto', 'cpu', 'webgpu', 'composite'].includes(name)) {
    throw new Error(`registerMoeLayerExecutor: name '${name}' is reserved for the built-in kernel paths`);
  }
  if (executor == null || typeof executor.forward !== 'function' || typeof executor.availability !== 'function') {
    throw new Error(`registerMoeLayerExecutor: executor for '${name}' must have forward() and availability()`);
  }
  executors.set(name, executor);
}

/** Removes the layer executor registered under `name`; returns whether there was one. */
export function unregisterMoeLayerExecutor(name: string): boolean {
  return executors.delete(name);
}

/** The layer executor registered under `name` (e.g. `cuda`), if any. */
export function getMoeLayerExecutor(name: string): MoeLayerExecutor | undefined {
  return executors.get(name);
}

/** Tells every executor that `owner` is gone (FusedMoE.dispose calls this). */
export function releaseMoeLayerState(owner: object): void {
  releaseExpertShards(owner);
  for (const executor of executors.values()) executor.release?.(owner);
}

/** What a call with this backend setting would run now: a label for logs and the function itself. */
export interface MoeForwardSelection {
  /** 'kernels:<tfjs backend>', 'composite:<tfjs backend>' or 'executor:<name>'. */
  path: string;
  forward: MoeForwardFn;
}

const composite: MoeForwardFn = (x, w, o) => withCompositeKernels(() => fusedMoeForward(x, w, o));

/** Chooses the implementation for one call, throwing a clear error when the requested one is unavailable. */
export function selectMoeForward(backend: MoeLayerBackend): MoeForwardSelection {
  const active = tf.getBackend();
  switch (backend) {
    case 'auto':
      return hasMoeKernels(ALL_MOE_KERNELS, active) ? {path: `kernels:${active}`, forward: fusedMoeForward} :
                                                      {path: `composite:${active}`, forward: composite};
    case 'composite':
      return {path: `composite:${active}`, forward: composite};
    case 'cpu':
    case 'webgpu': {
      if (active !== backend) {
        throw new Error(`FusedMoE: backend '${backend}' requested but the active tfjs backend is '${active}' ` +
            `(call tf.setBackend('${backend}') first, or use backend 'auto')`);
      }
      const missing = ALL_MOE_KERNELS.filter(name => !hasMoeKernels([name], backend));
      if (missing.length > 0) {
        throw new Error(`FusedMoE: backend '${backend}' requested but tfjs-moe kernels are not registered for ` +
            `'${backend}': missing ${missing.join(', ')}`);
      }
      return {path: `kernels:${backend}`, forward: fusedMoeForward};
    }
    default: {
      const executor = executors.get(backend);
      const reason = executor == null ?
          `no '${backend}' executor is registered (load the module that provides it, e.g. the tfjs-moe CUDA addon)` :
          executor.availability().available ? null : (executor.availability().reason ?? 'unavailable, reason unknown');
      if (reason != null) {
        const what = backend === 'cuda' ? 'the CUDA addon' : `the '${backend}' executor`;
        throw new Error(`FusedMoE: backend '${backend}' requested but ${what} is not available: ${reason}`);
      }
      return {path: `executor:${backend}`, forward: executor!.forward};
    }
  }
}
