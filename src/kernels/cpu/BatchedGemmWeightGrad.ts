import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemmWeightGrad, BatchedGemmWeightGradAttrs, BatchedGemmWeightGradInputs} from '../kernel_names.js';
import {segmentOffsets} from '../host_index_checks.js';
import {batchedGemmWeightGradImpl} from './batched_gemm_weight_grad_impl.js';
import {makeOutput, readFloat32, readInt32} from '../host_data.js';

export const batchedGemmWeightGrad: KernelFunc = ({inputs, backend, attrs}) => {
  const {lhs, dy, segments} = inputs as unknown as BatchedGemmWeightGradInputs;
  const {numExperts, transposeOut, segmentsAreOffsets} = attrs as unknown as BatchedGemmWeightGradAttrs;
  const [numRows, k] = lhs.shape;
  const n = dy.shape[1];
  const offsets = segmentOffsets('batchedGemmWeightGrad', readInt32(backend, segments), segmentsAreOffsets, numExperts,
                                 numRows);
  const out = batchedGemmWeightGradImpl(
      readFloat32(backend, lhs), readFloat32(backend, dy), k, n, offsets, numExperts, transposeOut);
  return makeOutput(backend, transposeOut ? [numExperts, n, k] : [numExperts, k, n], 'float32', out);
};

export const batchedGemmWeightGradConfig: KernelConfig =
    {kernelName: BatchedGemmWeightGrad, backendName: 'cpu', kernelFunc: batchedGemmWeightGrad};
