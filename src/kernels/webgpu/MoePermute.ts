import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {MoePermute, MoePermuteAttrs, MoePermuteInputs, permutedRowCount} from '../kernel_names.js';
import {ExpertCountProgram, ExpertRowsProgram, GatherRowsProgram, SegmentOffsetsProgram} from './moe_permute_webgpu.js';
import {markValidBounds} from './segment_bounds_webgpu.js';
import {disposeIntermediate, WebGPUBackendLike} from './webgpu_util.js';

/** Outputs [permutedX [R,D], tokensPerExpert int32 [E], expertOffsets int32 [E+1], rowMap int32 [T,k]]. */
export function moePermuteWebGPU(
    args: {inputs: MoePermuteInputs, backend: WebGPUBackendLike, attrs: MoePermuteAttrs}): TensorInfo[] {
  const {inputs: {x, topkIds, weights}, backend, attrs: {numExperts, alignment}} = args;
  const [numTokens, width] = x.shape;
  const topK = topkIds.shape[1];
  const numRows = permutedRowCount(numTokens, topK, numExperts, alignment);
  if (numTokens * topK === 0) {
    // No ids: nothing to place. Zero-filled outputs come from the host; no program can bind an empty buffer.
    const offsets = backend.makeTensorInfo([numExperts + 1], 'int32', new Int32Array(numExperts + 1));
    return [
      backend.makeTensorInfo([numRows, width], 'float32', new Float32Array(numRows * width)),
      backend.makeTensorInfo([numExperts], 'int32', new Int32Array(numExperts)), offsets,
      backend.makeTensorInfo([numTokens, topK], 'int32', new Int32Array(0)),
    ];
  }
  const flatIds: TensorInfo = {dataId: topkIds.dataId, shape: [numTokens * topK], dtype: 'int32'};
  const counts = backend.runWebGPUProgram(new ExpertCountProgram(numExperts), [flatIds], 'int32');
  const offsets = backend.runWebGPUProgram(
      new SegmentOffsetsProgram(numExperts), [counts], 'int32', [{type: 'int32', data: [alignment]}]);
  markValidBounds(offsets, numRows);
  const rowMap = backend.runWebGPUProgram(
      new ExpertRowsProgram('rowMap', numExperts, [numTokens, topK]), [flatIds, offsets], 'int32');
  const rowSource =
      backend.runWebGPUProgram(new ExpertRowsProgram('rowSource', numExperts, [numRows]), [flatIds, offsets], 'int32');
  const vec = width % 4 === 0 ? 4 : 1;
  const permutedX = width === 0 ?
      backend.makeTensorInfo([numRows, 0], 'float32', new Float32Array(0)) :
      backend.runWebGPUProgram(new GatherRowsProgram(numRows, width, weights != null),
                               weights != null ? [x, rowSource, weights] : [x, rowSource], 'float32',
                               [{type: 'int32', data: [topK]}, {type: 'int32', data: [width / vec]}]);
  disposeIntermediate(backend, rowSource);
  return [permutedX, counts, offsets, rowMap];
}

export const moePermuteWebGPUConfig: KernelConfig = {
  kernelName: MoePermute,
  backendName: 'webgpu',
  kernelFunc: moePermuteWebGPU as unknown as KernelFunc,
};
