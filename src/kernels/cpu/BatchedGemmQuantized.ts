import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemmQuantized, BatchedGemmQuantizedAttrs, BatchedGemmQuantizedInputs} from '../kernel_names_quantized.js';
import {dequantizeExpertWeightsConfig} from './DequantizeExpertWeights.js';
import {segmentOffsets} from './batched_gemm_impl.js';
import {batchedGemmQuantizedImpl} from './batched_gemm_quantized_impl.js';
import {makeOutput, readFloat32, readInt32} from './host_data.js';
import {readExpertWeights} from './host_expert_weights.js';

export const batchedGemmQuantized: KernelFunc = ({inputs, backend, attrs}) => {
  const ins = inputs as unknown as BatchedGemmQuantizedInputs;
  const at = attrs as unknown as BatchedGemmQuantizedAttrs;
  const numRows = ins.lhs.shape[0];
  // Segments first: a bad offset must fail before any work.
  const offsets = segmentOffsets(readInt32(backend, ins.segments), at.segmentsAreOffsets, at.numExperts, numRows);
  const {layout, data} = readExpertWeights(backend, ins, at);
  const out = batchedGemmQuantizedImpl(readFloat32(backend, ins.lhs), numRows, layout, data, offsets,
                                       ins.bias == null ? null : readFloat32(backend, ins.bias));
  return makeOutput(backend, [numRows, at.width], 'float32', out);
};

export const batchedGemmQuantizedConfig: KernelConfig =
    {kernelName: BatchedGemmQuantized, backendName: 'cpu', kernelFunc: batchedGemmQuantized};

/** The host kernels over packed expert weights (phase B appends these to register_all.ts's hostKernelConfigs). */
export const quantizedHostKernelConfigs: readonly KernelConfig[] = [batchedGemmQuantizedConfig, dequantizeExpertWeightsConfig];
