/**
 * The seam through which an implementation of the whole FusedMoE forward that lives outside the core (the CUDA
 * addon) plugs in: it registers a MoeLayerExecutor under a backend name, and the layer consults this registry.
 * It sits below the layer (the layer imports it; executors import it, never the layer).
 */
import type * as tf from '@tensorflow/tfjs-core';

import type {FusedMoEOptions, FusedMoEWeights} from './layer_schema.js';

/** Who is calling: executors that keep per-layer state (e.g. weights resident on a GPU) key it by `owner`. */
export interface MoeForwardContext {
  /** The calling layer (stable across calls; passed to MoeLayerExecutor.release when the layer is disposed). */
  owner: object;
  /** The caller reads the routing (load balancing): return topkIds, at least, in a MoeForwardResult. */
  needsRouting?: boolean;
}

/**
 * What a forward may hand back besides the output, so that the layer's load balancing does not route the batch a
 * second time: the routing ids (int32 [T,k]) and the router logits (float32 [T,E], differentiable when the
 * forward ran on tfjs ops; a native forward may return the ids alone, and the caller computes the logits only if
 * its auxiliary loss needs them). Left in the caller's scope like the output.
 */
export interface MoeForwardResult {
  output: tf.Tensor2D;
  topkIds?: tf.Tensor2D;
  gatingLogits?: tf.Tensor2D;
}

/** Runs the whole layer forward: x [T,H] -> y [T,H] (new tensors; it may create intermediates in the caller's tidy). */
export type MoeForwardFn = (x: tf.Tensor2D, weights: FusedMoEWeights, options: FusedMoEOptions,
                            context?: MoeForwardContext) => tf.Tensor2D | MoeForwardResult;

/**
 * An activation [T, H] float32 that an executor keeps on its device between layers (the CUDA addon's
 * CudaActivation), so that a stack of layers pays one upload and one download. Nothing comes back to the host until
 * read() or toTensor(); dispose() frees the device memory (garbage collection does otherwise).
 */
export interface DeviceActivation {
  readonly shape: [number, number];
  readonly disposed: boolean;
  /** Downloads the values (waits for the work that writes them). */
  read(): Float32Array;
  /** read() as a new tensor of `shape` (default [T, H]). */
  toTensor(shape?: number[]): tf.Tensor;
  /** Frees the device memory now (idempotent); read() and toTensor() throw after it. */
  dispose(): void;
}

/**
 * The forward with the activations on the executor's device: x (a DeviceActivation this executor returned, or a
 * float32 tensor [T,H], uploaded) -> a new DeviceActivation [T,H] that the caller owns (may return before the work
 * is done: reading it waits).
 */
export type MoeDeviceForwardFn = (x: tf.Tensor2D | DeviceActivation, weights: FusedMoEWeights,
                                  options: FusedMoEOptions, context?: MoeForwardContext) => DeviceActivation;

/** An implementation of the whole layer forward that a module outside the core (e.g. the CUDA addon) provides. */
export interface MoeLayerExecutor {
  /** Whether it can run now; `reason` says what is missing when it cannot (shown to the user verbatim). */
  availability(): {available: boolean, reason?: string};
  forward: MoeForwardFn;
  /** Optional: the forward on device-resident activations (FusedMoE.applyDevice). */
  forwardDevice?: MoeDeviceForwardFn;
  /** Frees what the executor keeps for a layer (called when that layer is disposed). */
  release?(owner: object): void;
}

/** Names of the tfjs-kernel paths, which no executor may take. */
export const BUILT_IN_PATHS: readonly string[] = ['auto', 'cpu', 'webgpu', 'composite'];

const executors = new Map<string, MoeLayerExecutor>();

/**
 * Registers the executor that FusedMoE layers with `backend: name` use (replacing an earlier one). Names of
 * tfjs-kernel paths ('auto', 'cpu', 'webgpu', 'composite') are reserved.
 */
export function registerMoeLayerExecutor(name: string, executor: MoeLayerExecutor): void {
  if (BUILT_IN_PATHS.includes(name)) {
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

/**
 * A whole-layer forward that the kernel path of one tfjs backend tries before composing the ops (the webgpu decode
 * path, kernels/webgpu/decode): forward returns null when it does not take the call, having done nothing.
 */
export interface KernelPathLayerForward {
  /**
   * y, or null to let the op chain run. `opChain` runs the layer's op chain (what runs on null): a backend may run it
   * itself (the webgpu prefill path records its programs).
   */
  forward(x: tf.Tensor2D, weights: FusedMoEWeights, options: FusedMoEOptions, context: MoeForwardContext,
          opChain: () => tf.Tensor2D): tf.Tensor2D | null;
  /** Frees what it keeps for a layer (called when that layer is disposed). */
  release?(owner: object): void;
}

const kernelPathForwards = new Map<string, KernelPathLayerForward>();

/** Registers the whole-layer forward that the kernel path of tfjs backend `backendName` tries first. */
export function registerKernelPathLayerForward(backendName: string, entry: KernelPathLayerForward): void {
  kernelPathForwards.set(backendName, entry);
}

export function kernelPathLayerForward(backendName: string): KernelPathLayerForward | undefined {
  return kernelPathForwards.get(backendName);
}

/** Tells every executor that `owner` is gone. */
export function releaseExecutorState(owner: object): void {
  for (const executor of executors.values()) executor.release?.(owner);
  for (const entry of kernelPathForwards.values()) entry.release?.(owner);
}
