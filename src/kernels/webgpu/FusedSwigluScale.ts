import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleAttrs, FusedSwigluScaleInputs, PLAIN_SWIGLU} from '../kernel_names.js';
import {runSwigluScale} from './grouped_gemm_run.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export function fusedSwigluScaleWebGPU(
    args: {inputs: FusedSwigluScaleInputs, backend: WebGPUBackendLike, attrs: FusedSwigluScaleAttrs}): TensorInfo {
  return runSwigluScale(args.backend, args.inputs.x, args.inputs.scale,
                        args.attrs.activation == null ? PLAIN_SWIGLU : args.attrs);
}

export const fusedSwigluScaleWebGPUConfig: KernelConfig = {
  kernelName: FusedSwigluScale,
  backendName: 'webgpu',
  kernelFunc: fusedSwigluScaleWebGPU as unknown as KernelFunc,
};
