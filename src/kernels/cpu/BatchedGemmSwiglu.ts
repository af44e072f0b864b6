import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';

import {makeOutput, readFloat32} from '../host_data.js';
import {BatchedGemmSwiglu, BatchedGemmSwigluAttrs, BatchedGemmSwigluInputs} from '../kernel_names.js';
import {batchedGemmHost} from './BatchedGemm.js';
import {fusedSwigluScaleImpl} from './fused_swiglu_scale_impl.js';

/** The two host algorithms back to back: on the host the [R,2I] intermediate costs no extra dispatch. */
export const batchedGemmSwiglu: KernelFunc = ({inputs, backend, attrs}) => {
  const gemmInputs = inputs as unknown as BatchedGemmSwigluInputs;
  const {out: h, width} = batchedGemmHost(gemmInputs, backend, attrs as unknown as BatchedGemmSwigluAttrs);
  const numRows = gemmInputs.lhs.shape[0];
  const scale = gemmInputs.scale;
  const out = fusedSwigluScaleImpl(h, numRows, width / 2, scale == null ? null : readFloat32(backend, scale));
  return makeOutput(backend, [numRows, width / 2], 'float32', out);
};

export const batchedGemmSwigluConfig: KernelConfig =
    {kernelName: BatchedGemmSwiglu, backendName: 'cpu', kernelFunc: batchedGemmSwiglu};
