import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs, BatchedGemmSwigluInputs, PLAIN_SWIGLU} from '../kernel_names.js';
import {runGroupedGemm} from './grouped_gemm_run.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

/** One program where it can (fewer dispatches per forward: decode is bound by the JS cost of each one). */
export function batchedGemmSwigluWebGPU(
    args: {inputs: BatchedGemmSwigluInputs, backend: WebGPUBackendLike, attrs: BatchedGemmSwigluAttrs}): TensorInfo {
  const act = args.attrs.activation == null ? PLAIN_SWIGLU : args.attrs;
  return runGroupedGemm(args.backend, args.inputs, args.attrs, true, act);
}

export const batchedGemmSwigluWebGPUConfig: KernelConfig = {
  kernelName: BatchedGemmSwiglu,
  backendName: 'webgpu',
  kernelFunc: batchedGemmSwigluWebGPU as unknown as KernelFunc,
};
