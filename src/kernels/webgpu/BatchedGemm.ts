import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {BatchedGemm, BatchedGemmAttrs, BatchedGemmInputs} from '../kernel_names.js';
import {runGroupedGemm} from './grouped_gemm_run.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export function batchedGemmWebGPU(
    args: {inputs: BatchedGemmInputs, backend: WebGPUBackendLike, attrs: BatchedGemmAttrs}): TensorInfo {
  return runGroupedGemm(args.backend, args.inputs, args.attrs, false);
}

export const batchedGemmWebGPUConfig: KernelConfig = {
  kernelName: BatchedGemm,
  backendName: 'webgpu',
  kernelFunc: batchedGemmWebGPU as unknown as KernelFunc,
};
