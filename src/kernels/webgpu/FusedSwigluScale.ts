import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {FusedSwigluScale, FusedSwigluScaleAttrs, FusedSwigluScaleInputs} from '../kernel_names.js';
import {FusedSwigluScaleProgram} from './fused_swiglu_scale_webgpu.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export function fusedSwigluScaleWebGPU(
    args: {inputs: FusedSwigluScaleInputs, backend: WebGPUBackendLike, attrs: FusedSwigluScaleAttrs}): TensorInfo {
  const {inputs: {x, scale}, backend} = args;
  const [numRows, width] = x.shape;
  const half = width / 2;
  const program = new FusedSwigluScaleProgram(numRows, half, scale != null);
  const vec = program.outputComponent;
  if (numRows * half === 0) return backend.makeTensorInfo([numRows, half], 'float32', new Float32Array(0));
  return backend.runWebGPUProgram(
      program, scale != null ? [x, scale] : [x], 'float32', [{type: 'int32', data: [half / vec]}]);
}

export const fusedSwigluScaleWebGPUConfig: KernelConfig = {
  kernelName: FusedSwigluScale,
  backendName: 'webgpu',
  kernelFunc: fusedSwigluScaleWebGPU as unknown as KernelFunc,
};
