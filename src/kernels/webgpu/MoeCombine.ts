import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {MoeCombine, MoeCombineAttrs, MoeCombineInputs} from '../kernel_names.js';
import {MoeCombineProgram} from './moe_combine_webgpu.js';
import type {WebGPUBackendLike} from './webgpu_util.js';

export function moeCombineWebGPU(
    args: {inputs: MoeCombineInputs, backend: WebGPUBackendLike, attrs: MoeCombineAttrs}): TensorInfo {
  const {inputs: {y, rowMap, topkWeights, topkIds, downProjBias, identityInput}, backend, attrs: {weightsApplied}} = args;
  const [numRows, width] = y.shape;
  const [numTokens, topK] = rowMap.shape;
  if (numTokens * width === 0) return backend.makeTensorInfo([numTokens, width], 'float32', new Float32Array(0));
  const hasIdentity = identityInput != null;
  // No rows at all: zeros, unless identity slots add their inputs (every slot is one then).
  if (topK === 0 || (numRows === 0 && !hasIdentity)) {
    return backend.makeTensorInfo([numTokens, width], 'float32', new Float32Array(numTokens * width));
  }
  const hasBias = downProjBias != null;
  const program = new MoeCombineProgram(numTokens, width, topK, hasBias, weightsApplied, hasIdentity);
  const vec = program.outputComponent;
  // An empty y cannot be bound: one zero row stands in (numRows = 0 keeps it unread).
  const rows = numRows === 0 ? backend.makeTensorInfo([1, width], 'float32', new Float32Array(width)) : y;
  const inputs = hasBias ? [rows, rowMap, topkWeights, topkIds, downProjBias] : [rows, rowMap, topkWeights];
  if (hasIdentity) inputs.push(identityInput);
  const numExperts = hasBias ? downProjBias.shape[0] : 0;
  const out = backend.runWebGPUProgram(program, inputs, 'float32', [
    {type: 'int32', data: [width / vec]}, {type: 'int32', data: [numRows]}, {type: 'int32', data: [numExperts]},
  ]);
  if (rows !== y) backend.disposeData(rows.dataId);
  return out;
}

export const moeCombineWebGPUConfig: KernelConfig = {
  kernelName: MoeCombine,
  backendName: 'webgpu',
  kernelFunc: moeCombineWebGPU as unknown as KernelFunc,
};
