import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemm, BatchedGemmAttrs, BatchedGemmInputs} from '../kernel_names.js';
import {batchedGemmImpl, segmentOffsets} from './batched_gemm_impl.js';
import {makeOutput, readFloat32, readInt32} from './host_data.js';
import {wasmBatchedGemm} from '../wasm/batched_gemm_wasm.js';

export const batchedGemm: KernelFunc = ({inputs, backend, attrs}) => {
  const {lhs, rhs, segments, bias} = inputs as unknown as BatchedGemmInputs;
  const {transposeRhs, segmentsAreOffsets} = attrs as unknown as BatchedGemmAttrs;
  const [numRows, k] = lhs.shape;
  const numExperts = rhs.shape[0];
  const n = transposeRhs ? rhs.shape[1] : rhs.shape[2];
  // Segments first: a bad offset must fail before any work.
  const offsets = segmentOffsets(readInt32(backend, segments), segmentsAreOffsets, numExperts, numRows);
  const lhsValues = readFloat32(backend, lhs), rhsValues = readFloat32(backend, rhs);
  const biasValues = bias == null ? null : readFloat32(backend, bias);
  const out =
      wasmBatchedGemm(backend, lhsValues, numRows, k, rhsValues, rhs.dataId, numExperts, n, offsets, transposeRhs,
                      biasValues) ??
      batchedGemmImpl(lhsValues, numRows, k, rhsValues, numExperts, n, offsets, transposeRhs, biasValues);
  return makeOutput(backend, [numRows, n], 'float32', out);
};

export const batchedGemmConfig: KernelConfig = {kernelName: BatchedGemm, backendName: 'cpu', kernelFunc: batchedGemm};
