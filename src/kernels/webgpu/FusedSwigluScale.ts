import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleAttrs, FusedSwigluScaleInputs} from '../kernel_names.js';
import {runSwigluScale} from './grouped_gemm_run.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export function fusedSwigluScaleWebGPU(
    args: {inputs: FusedSwigluScaleInputs, backend: WebGPUBackendLike, attrs: FusedSwigluScaleAttrs}): TensorInfo {
  return runSwigluScale(args.backend, args.inputs.x, args.inputs.scale);
}

export const fusedSwigluScaleWebGPUConfig: KernelConfig = {
  kernelName: FusedSwigluScale,
  backendName: 'webgpu',
  kernelFunc: fusedSwigluScaleWebGPU as unknown as KernelFunc,
};
