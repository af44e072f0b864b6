/**
 * The one place that decides which implementation runs a FusedMoE call. Decided per call, because the active
 * tfjs backend can change between calls.
 *
 * - 'auto': our kernels when every one is registered for the active backend, else the composite path.
 * - 'cpu' / 'webgpu': that tfjs backend must be active and our kernels registered there.
 * - 'composite': the stock-tfjs-ops path on whatever backend is active.
 * - anything else ('cuda'): a layer executor registered under that name (executor/layer_executor.ts) by an
 *   optional module (the CUDA addon registers one when the package loads); absent or unavailable, the call fails
 *   naming the reason.
 */
import * as tf from '@tensorflow/tfjs-core';

import {getMoeLayerExecutor, kernelPathLayerForward, MoeDeviceForwardFn, MoeForwardFn, releaseExecutorState} from
    '../executor/layer_executor.js';
import type {MoeLayerBackend} from '../executor/layer_schema.js';
import {ALL_MOE_KERNELS, getKernelPath, hasMoeKernels, withCompositeKernels} from '../ops/dispatch.js';
import {releaseDisposedWeightCopies} from '../ops/weight_caches.js';
import {fusedMoeForwardWithRouting} from './fused_moe_forward.js';

export type {DeviceActivation, MoeDeviceForwardFn, MoeForwardContext, MoeForwardFn, MoeForwardResult, MoeLayerExecutor} from
    '../executor/layer_executor.js';
export {getMoeLayerExecutor, registerMoeLayerExecutor, unregisterMoeLayerExecutor} from '../executor/layer_executor.js';

/** Frees what executors and kernels keep for `owner` (FusedMoE.dispose calls this after disposing its weights). */
export function releaseMoeLayerState(owner: object): void {
  releaseExecutorState(owner);
  releaseDisposedWeightCopies();
}

/** What a call with this backend setting would run now: a label for logs and the function itself. */
export interface MoeForwardSelection {
  /** 'kernels:<tfjs backend>', 'composite:<tfjs backend>' or 'executor:<name>'. */
  path: string;
  forward: MoeForwardFn;
}

// The backend's whole-layer forward where it takes the call (webgpu decode and prefill), else the ops.
const kernels: MoeForwardFn = (x, w, o, context) =>
    (context != null && getKernelPath() !== 'composite' ?
         kernelPathLayerForward(tf.getBackend())?.forward(x, w, o, context,
                                                          () => fusedMoeForwardWithRouting(x, w, o).output) : null) ??
    fusedMoeForwardWithRouting(x, w, o);
const composite: MoeForwardFn = (x, w, o) => withCompositeKernels(() => fusedMoeForwardWithRouting(x, w, o));

/** Chooses the implementation for one call, throwing a clear error when the requested one is unavailable. */
export function selectMoeForward(backend: MoeLayerBackend): MoeForwardSelection {
  const active = tf.getBackend();
  switch (backend) {
    case 'auto':
      // setKernelPath('composite') sends every op to the composite path: report that, not the kernels.
      return hasMoeKernels(ALL_MOE_KERNELS, active) && getKernelPath() !== 'composite' ?
          {path: `kernels:${active}`, forward: kernels} :
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
      return {path: `${getKernelPath() === 'composite' ? 'composite' : 'kernels'}:${backend}`, forward: kernels};
    }
    default: {
      const executor = getMoeLayerExecutor(backend);
      const availability = executor?.availability();
      const reason = executor == null ?
          `no '${backend}' executor is registered (load the module that provides it, e.g. the tfjs-moe CUDA addon)` :
          availability!.available ? null : (availability!.reason ?? 'unavailable, reason unknown');
      if (reason != null) {
        const what = backend === 'cuda' ? 'the CUDA addon' : `the '${backend}' executor`;
        throw new Error(`FusedMoE: backend '${backend}' requested but ${what} is not available: ${reason}`);
      }
      return {path: `executor:${backend}`, forward: executor!.forward};
    }
  }
}

/**
 * The device-resident forward of a backend (FusedMoE.applyDevice): only an executor that keeps activations on its
 * device has one; anything else fails naming the backend.
 */
export function selectMoeDeviceForward(backend: MoeLayerBackend): MoeDeviceForwardFn {
  const selection = selectMoeForward(backend);  // an unavailable executor fails here, with its reason
  const executor = selection.path.startsWith('executor:') ? getMoeLayerExecutor(backend) : undefined;
  if (executor?.forwardDevice == null) {
    throw new Error(`FusedMoE: applyDevice needs a backend whose executor keeps activations on its device ` +
        `(backend 'cuda'); this layer's backend '${backend}' runs '${selection.path}', use apply()`);
  }
  return executor.forwardDevice;
}
