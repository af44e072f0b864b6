import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {BatchedGemm, BatchedGemmAttrs, BatchedGemmInputs} from '../kernel_names.js';
import {BatchedGemmProgram, chooseGemmConfig, GemmShape} from './batched_gemm_webgpu.js';
import {SegmentOffsetsProgram} from './moe_permute_webgpu.js';
import {disposeIntermediate, WebGPUBackendLike} from './webgpu_util.js';

export function batchedGemmWebGPU(
    args: {inputs: BatchedGemmInputs, backend: WebGPUBackendLike, attrs: BatchedGemmAttrs}): TensorInfo {
  const {inputs: {lhs, rhs, segments, bias}, backend, attrs: {transposeRhs, segmentsAreOffsets}} = args;
  const [numRows, depth] = lhs.shape;
  const [numExperts, rhsRows, rhsCols] = rhs.shape;
  const width = transposeRhs ? rhsRows : rhsCols;
  if (numRows * width === 0) return backend.makeTensorInfo([numRows, width], 'float32', new Float32Array(0));
  if (depth === 0 || numExperts === 0) {
    // An empty sum: every row is its segment's bias or zero. Rare enough to leave to the host.
    if (bias == null || numExperts === 0) {
      return backend.makeTensorInfo([numRows, width], 'float32', new Float32Array(numRows * width));
    }
  }
  // tokensPerExpert segments are packed from row 0: their prefix sums are the offsets.
  const offsets = segmentsAreOffsets ? segments :
      backend.runWebGPUProgram(new SegmentOffsetsProgram(numExperts), [segments], 'int32',
                               [{type: 'int32', data: [1]}]);
  const shape: GemmShape = {numRows, depth, width, numExperts, transposeRhs, hasBias: bias != null};
  const config = chooseGemmConfig(shape, backend.device.limits.maxComputeWorkgroupStorageSize);
  const program = new BatchedGemmProgram(shape, config);
  const inputs = bias != null ? [lhs, rhs, offsets, bias] : [lhs, rhs, offsets];
  const out = backend.runWebGPUProgram(program, inputs, 'float32', [{type: 'int32', data: [program.colTiles]}]);
  if (!segmentsAreOffsets) disposeIntermediate(backend, offsets);
  return out;
}

export const batchedGemmWebGPUConfig: KernelConfig = {
  kernelName: BatchedGemm,
  backendName: 'webgpu',
  kernelFunc: batchedGemmWebGPU as unknown as KernelFunc,
};
