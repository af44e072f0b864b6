import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs, BatchedGemmSwigluInputs} from '../kernel_names.js';
import {batchedGemmImpl, segmentOffsets} from './batched_gemm_impl.js';
import {fusedSwigluScaleImpl} from './fused_swiglu_scale_impl.js';
import {makeOutput, readFloat32, readInt32} from '../host_data.js';

/** The two host algorithms back to back: on the host the [R,2I] intermediate costs no extra dispatch. */
export const batchedGemmSwiglu: KernelFunc = ({inputs, backend, attrs}) => {
  const {lhs, rhs, segments, bias, scale} = inputs as unknown as BatchedGemmSwigluInputs;
  const {transposeRhs, segmentsAreOffsets} = attrs as unknown as BatchedGemmSwigluAttrs;
  const [numRows, k] = lhs.shape;
  const numExperts = rhs.shape[0];
  const n = transposeRhs ? rhs.shape[1] : rhs.shape[2];
  const offsets = segmentOffsets(readInt32(backend, segments), segmentsAreOffsets, numExperts, numRows);
  const h = batchedGemmImpl(
      readFloat32(backend, lhs), numRows, k, readFloat32(backend, rhs), numExperts, n, offsets, transposeRhs,
      bias == null ? null : readFloat32(backend, bias));
  const out = fusedSwigluScaleImpl(h, numRows, n / 2, scale == null ? null : readFloat32(backend, scale));
  return makeOutput(backend, [numRows, n / 2], 'float32', out);
};

export const batchedGemmSwigluConfig: KernelConfig =
    {kernelName: BatchedGemmSwiglu, backendName: 'cpu', kernelFunc: batchedGemmSwiglu};
