/**
 * The one place that decides, per op call, whether a backend kernel of ours runs or the composite path
 * (plain tfjs ops) does: a kernel registered for the active backend wins unless the composite path is forced.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {NamedAttrMap, NamedTensorMap, Tensor} from '@tensorflow/tfjs-core';

import {describeValue} from '../kernels/describe_value.js';
import type {MoeKernelName} from '../kernels/kernel_names.js';

export {ALL_MOE_KERNELS, TRAINING_MOE_KERNELS} from '../kernels/kernel_names.js';

/** 'auto': our kernels where registered for the active backend, else composite. 'composite': always composite. */
export type KernelPath = 'auto' | 'composite';

/** The tfjs flag holding the process-wide kernel path ('auto' | 'composite'; tf.env().set or TFJS_FLAGS). */
export const MOE_KERNEL_PATH = 'MOE_KERNEL_PATH';

export function registerOpFlags(): void {
  tf.env().registerFlag(MOE_KERNEL_PATH, () => 'auto', value => {
    if (value !== 'auto' && value !== 'composite') {
      throw new Error(`${MOE_KERNEL_PATH} must be 'auto' or 'composite', got ${describeValue(value)}`);
    }
  });
}

/** Nesting depth of withCompositeKernels scopes (a scope, not a setting: it ends with its function). */
let compositeScopeDepth = 0;

/** Sets the process-wide kernel path (for tests, debugging, or a backend whose kernels you distrust). */
export function setKernelPath(path: KernelPath): void {
  if (path !== 'auto' && path !== 'composite') {
    throw new Error(`setKernelPath: argument 'path' must be 'auto' or 'composite', got ${describeValue(path)}`);
  }
  tf.env().set(MOE_KERNEL_PATH, path);
}

/** The kernel path the ops take now: 'composite' inside withCompositeKernels or after setKernelPath('composite'), else the global setting. */
export function getKernelPath(): KernelPath {
  return compositeScopeDepth > 0 ? 'composite' : tf.env().get(MOE_KERNEL_PATH) as KernelPath;
}

/** Runs fn (synchronously) with every MoE op on the composite path. */
export function withCompositeKernels<T>(fn: () => T): T {
  compositeScopeDepth++;
  try {
    return fn();
  } finally {
    compositeScopeDepth--;
  }
}

/** Whether a kernel of ours named kernelName is registered for backendName (default: the active backend). */
export function hasMoeKernel(kernelName: MoeKernelName, backendName: string = tf.getBackend()): boolean {
  return tf.getKernel(kernelName, backendName) != null;
}

/** Whether every MoE kernel in kernelNames is registered for backendName. */
export function hasMoeKernels(kernelNames: readonly MoeKernelName[], backendName: string = tf.getBackend()): boolean {
  return kernelNames.every(name => hasMoeKernel(name, backendName));
}

/** Whether an op call now would run our kernel kernelName (else its composite path). */
export function usesMoeKernel(kernelName: MoeKernelName): boolean {
  return getKernelPath() !== 'composite' && hasMoeKernel(kernelName);
}

export function runMoeKernel<R extends Tensor | Tensor[]>(
    kernelName: MoeKernelName, inputs: NamedTensorMap, attrs: NamedAttrMap, composite: () => R): R {
  if (!usesMoeKernel(kernelName)) {
    return composite();
  }
  return tf.engine().runKernel(kernelName, inputs, attrs) as unknown as R;
}
