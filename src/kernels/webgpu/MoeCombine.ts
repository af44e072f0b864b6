import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs, MoeCombineInputs} from '../kernel_names.js';
import {MoeCombineProgram} from './moe_combine_webgpu.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export function moeCombineWebGPU(
    args: {inputs: MoeCombineInputs, backend: WebGPUBackendLike, attrs: MoeCombineAttrs}): TensorInfo {
  const {inputs: {y, rowMap, topkWeights, topkIds, downProjBias}, backend, attrs: {weightsApplied}} = args;
  const [numRows, width] = y.shape;
  const [numTokens, topK] = rowMap.shape;
  if (numTokens * width === 0) return backend.makeTensorInfo([numTokens, width], 'float32', new Float32Array(0));
  if (topK === 0 || numRows === 0) {
    return backend.makeTensorInfo([numTokens, width], 'float32', new Float32Array(numTokens * width));
  }
  const hasBias = downProjBias != null;
  const program = new MoeCombineProgram(numTokens, width, topK, hasBias, weightsApplied);
  const vec = program.outputComponent;
  const inputs = hasBias ? [y, rowMap, topkWeights, topkIds, downProjBias] : [y, rowMap, topkWeights];
  const numExperts = hasBias ? downProjBias.shape[0] : 0;
  return backend.runWebGPUProgram(program, inputs, 'float32', [
    {type: 'int32', data: [width / vec]}, {type: 'int32', data: [numRows]}, {type: 'int32', data: [numExperts]},
  ]);
}

export const moeCombineWebGPUConfig: KernelConfig = {
  kernelName: MoeCombine,
  backendName: 'webgpu',
  kernelFunc: moeCombineWebGPU as unknown as KernelFunc,
};
