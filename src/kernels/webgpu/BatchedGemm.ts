import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';

import {BatchedGemm, BatchedGemmAttrs, BatchedGemmInputs} from '../kernel_names.js';
import {BatchedGemmProgram, chooseGemmConfig, GemmShape} from './batched_gemm_webgpu.js';
import {SegmentOffsetsProgram} from './moe_permute_webgpu.js';
import {batchedGemmByExpertRanges, exceedsBindingLimit} from './oversized_rhs.js';
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
    // With a bias: the same program on a zero product of depth 1, since binding the empty lhs/rhs buffers is a
    // WebGPU validation error (the command buffer is dropped and the output keeps stale data).
    const zeroLhs = backend.makeTensorInfo([numRows, 1], 'float32', new Float32Array(numRows));
    const zeroRhs = backend.makeTensorInfo(transposeRhs ? [numExperts, width, 1] : [numExperts, 1, width], 'float32',
                                           new Float32Array(numExperts * width));
    try {
      return batchedGemmWebGPU({inputs: {lhs: zeroLhs, rhs: zeroRhs, segments, bias}, backend, attrs: args.attrs});
    } finally {
      disposeIntermediate(backend, zeroLhs, zeroRhs);
    }
  }
  // tokensPerExpert segments are packed from row 0: their prefix sums are the offsets.
  const offsets = segmentsAreOffsets ? segments :
      backend.runWebGPUProgram(new SegmentOffsetsProgram(numExperts), [segments], 'int32',
                               [{type: 'int32', data: [1]}]);
  if (exceedsBindingLimit(backend, rhs.shape)) {
    // Weights past one storage binding: expert ranges that fit, one at a time (oversized_rhs.ts).
    try {
      return batchedGemmByExpertRanges(backend, rhs, offsets, bias ?? null, (rhsPart, offsetsPart, biasPart) =>
          batchedGemmWebGPU({inputs: {lhs, rhs: rhsPart, segments: offsetsPart, bias: biasPart ?? undefined}, backend,
            attrs: {transposeRhs, segmentsAreOffsets: true}}));
    } finally {
      if (!segmentsAreOffsets) disposeIntermediate(backend, offsets);
    }
  }
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
