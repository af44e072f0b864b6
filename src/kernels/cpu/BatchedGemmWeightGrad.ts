import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemmWeightGrad, BatchedGemmWeightGradAttrs, BatchedGemmWeightGradInputs} from '../kernel_names.js';
import {segmentOffsets} from './batched_gemm_impl.js';
import {batchedGemmWeightGradImpl} from './batched_gemm_weight_grad_impl.js';
import {makeOutput, readFloat32, readInt32} from '../host_data.js';

export const batchedGemmWeightGrad: KernelFunc = ({inputs, backend, attrs}) => {
  const {lhs, dy, segments} = inputs as unknown as BatchedGemmWeightGradInputs;
  const {numExperts, transposeOut, segmentsAreOffsets} = attrs as unknown as BatchedGemmWeightGradAttrs;
  const [numRows, k] = lhs.shape;
  const n = dy.shape[1];
  let offsets: Int32Array;
  try {
    offsets = segmentOffsets(readInt32(backend, segments), segmentsAreOffsets, numExperts, numRows);
  } catch (e) {
    // The shared segment check names the forward op; this call is its gradient.
    throw new Error((e as Error).message.replace(/^batchedGemm:/, 'batchedGemmWeightGrad:'));
  }
  const out = batchedGemmWeightGradImpl(
      readFloat32(backend, lhs), readFloat32(backend, dy), k, n, offsets, numExperts, transposeOut);
  return makeOutput(backend, transposeOut ? [numExperts, n, k] : [numExperts, k, n], 'float32', out);
};

export const batchedGemmWeightGradConfig: KernelConfig =
    {kernelName: BatchedGemmWeightGrad, backendName: 'cpu', kernelFunc: batchedGemmWeightGrad};
